"""A plugin with what a discord.py or arc user expects beyond slash commands: context menus,
attachment, channel, role and mentionable options, localisations, error handlers, stateless
component and modal routes (WORKER_PLUGINS=tests.worker.plugin_commands_routes)."""

from __future__ import annotations

import asyncio
import typing

import hikari

from worker.commands import ComponentContext, Context, TextInput, option

if typing.TYPE_CHECKING:
    from worker import bot as bot_module


class ExpectedError(RuntimeError):
    """What ``fragile`` raises: its own handler answers it."""


def setup(bot: bot_module.Bot) -> None:  # noqa: C901 - one plugin, every feature once
    @bot.command(
        description="Describes what you picked",
        name_localizations={"fr": "inspecter", "de": "untersuchen"},
        description_localizations={"fr": "Décrit ce que vous avez choisi"},
    )
    async def inspect(
        ctx: Context,
        where: hikari.GuildTextChannel = option(  # noqa: B008 - read once, at declaration
            "a text channel", name_localizations={"fr": "salon"}
        ),
        someone: hikari.User | hikari.Role = option("a user or a role"),  # noqa: B008
        role: hikari.Role | None = option("a role", None),  # noqa: B008
        file: hikari.Attachment | None = option("a file", None),  # noqa: B008
    ) -> None:
        kind = "role" if isinstance(someone, hikari.Role) else "user"
        parts = [f"channel {where.name}", f"{kind} {someone.id}"]
        if role is not None:
            parts.append(f"role {role.name}")
        if file is not None:
            parts.append(f"file {file.filename} {file.size}")
        await ctx.respond("; ".join(parts))

    tools = bot.group(
        "tools", description="Tools", name_localizations={"fr": "outils"},
        description_localizations={"fr": "Des outils"},
    )  # fmt: skip

    @bot.command(description="Shows the time", group=tools, name_localizations={"fr": "heure"})
    async def clock(ctx: Context) -> None:
        await ctx.respond("it is now")

    @bot.user_command("Report user", name_localizations={"fr": "Signaler"})
    async def report(ctx: Context, target: hikari.User) -> None:
        await ctx.respond(f"reported {target.username}", ephemeral=True)

    @bot.message_command("Quote")
    async def quote(ctx: Context, message: hikari.Message) -> None:
        await ctx.respond(f"> {message.content}")

    @bot.command(description="Starts a vote")
    async def poll(ctx: Context, topic: str) -> None:
        row = ctx.bot.rest.build_message_action_row()
        row.add_interactive_button(hikari.ButtonStyle.SUCCESS, f"vote:{topic}:yes", label="Yes")
        row.add_interactive_button(hikari.ButtonStyle.DANGER, f"vote:{topic}:no", label="No")
        row.add_interactive_button(hikari.ButtonStyle.SECONDARY, f"rate:{topic}", label="Rate")
        await ctx.respond(f"Vote: {topic}", component=row)

    @bot.component("vote:*")
    async def vote(ctx: ComponentContext) -> None:
        _, topic, choice = ctx.parts
        await ctx.update(f"Vote: {topic} (last: {ctx.author.username} said {choice})")

    @bot.component("rate:*", opens_modal=True)
    async def rate(ctx: ComponentContext) -> None:
        await ctx.respond_with_modal(
            "Rate it", f"feedback:{ctx.captures[0]}",
            TextInput("rating", "From 1 to 5", max_length=1),
        )  # fmt: skip

    @bot.command(description="Asks for feedback", opens_modal=True)
    async def feedback(ctx: Context) -> None:
        await ctx.respond_with_modal(
            "Feedback", "feedback:general",
            TextInput("rating", "From 1 to 5", max_length=1),
            TextInput("text", "Anything else?", long=True, required=False),
        )  # fmt: skip

    @bot.modal("feedback:*")
    async def got_feedback(
        ctx: ComponentContext, rating: int = option("1-5", min=1, max=5), text: str = ""
    ) -> None:
        await ctx.respond(f"thanks: {ctx.captures[0]} rated {rating} {text}".strip())

    @bot.command(description="A form answered slowly", opens_modal=True)
    async def survey(ctx: Context) -> None:
        await ctx.respond_with_modal("Survey", "survey:1", TextInput("answer", "Your answer"))

    @bot.modal("survey:*")
    async def got_survey(ctx: ComponentContext, answer: str) -> None:
        await asyncio.sleep(2.5)  # past the worker's 2 s: it defers for this handler
        await ctx.respond(f"noted: {answer}")

    async def own_handler(ctx: Context, exc: Exception) -> None:
        if not isinstance(exc, ExpectedError):
            raise exc
        await ctx.respond(f"handled here: {exc}", ephemeral=True)

    @bot.command(description="Fails in a way it handles", on_error=own_handler)
    async def fragile(ctx: Context, handled: bool = True) -> None:
        del ctx
        if handled:
            raise ExpectedError("expected")
        raise KeyError("unexpected")

    @bot.error_handler
    async def everywhere(ctx: Context | ComponentContext, exc: Exception) -> None:
        if isinstance(exc, KeyError):
            await ctx.respond(f"the bot's handler saw {type(exc).__name__}", ephemeral=True)
            return
        raise exc
