"""``playground.demo``: a worker plugin the playground loads beside ``core`` and ``music``.

Commands that show what only a multi-replica platform has to get right: ``vote`` asks with
buttons and waits for a click that any replica may receive; ``pick`` does the same with a
select menu and answers with an embed. Each answer names the worker process (pid) that asked,
so the page shows a prompt outliving its replica's intake (stop it gracefully, then click).
"""

from __future__ import annotations

import os
import secrets
import typing

import hikari

from worker.commands import option
from worker.commands.prompts import PromptTimeoutError

if typing.TYPE_CHECKING:
    from worker import bot as bot_module
    from worker.commands import Context

COLOURS: typing.Final = {"red": 0xED4245, "green": 0x57F287, "blue": 0x5865F2, "yellow": 0xFEE75C}
FLAVOURS: typing.Final = (
    "vanilla", "chocolate", "strawberry", "pistachio", "mango", "mint", "hazelnut", "lemon",
)  # fmt: skip


def setup(bot: bot_module.Bot) -> None:
    @bot.command(description="Asks a yes/no question with buttons; any replica may get the click")
    async def vote(ctx: Context, question: str = option("what to vote on", "Ship it?")) -> None:
        nonce = secrets.token_hex(4)
        yes, no = f"vote:{nonce}:yes", f"vote:{nonce}:no"
        row = (
            ctx.bot.rest.build_message_action_row()
            .add_interactive_button(hikari.ButtonStyle.SUCCESS, yes, label="Yes")
            .add_interactive_button(hikari.ButtonStyle.DANGER, no, label="No")
        )
        await ctx.respond(
            f"**{question}** (asked on worker pid {os.getpid()})",
            component=row,
            mentions_everyone=False,
            user_mentions=False,
            role_mentions=False,
        )
        try:
            click = await ctx.wait_for_component([yes, no], timeout=120)
        except PromptTimeoutError:
            await ctx.respond("Nobody voted within two minutes.")
            return
        verdict = "Yes" if click.custom_id == yes else "No"
        await ctx.respond(
            f"<@{click.user_id}> voted **{verdict}** (answered by worker pid {os.getpid()})",
            user_mentions=False,
        )

    @bot.command(description="Pick a colour from a select menu; the answer is an embed")
    async def pick(ctx: Context) -> None:
        custom_id = f"pick:{secrets.token_hex(4)}"
        row = ctx.bot.rest.build_message_action_row().add_text_menu(
            custom_id, placeholder="Choose a colour"
        )
        for name in COLOURS:
            row.add_option(name.title(), name)
        await ctx.respond("Which colour?", component=row)
        try:
            choice = await ctx.wait_for_component([custom_id], timeout=120)
        except PromptTimeoutError:
            await ctx.respond("No colour was picked within two minutes.")
            return
        name = choice.values[0] if choice.values else "blue"
        embed = hikari.Embed(
            title=f"You picked {name}",
            description=f"Picked by <@{choice.user_id}>.",
            colour=COLOURS.get(name, 0x5865F2),
        )
        embed.add_field("Hex", f"#{COLOURS.get(name, 0):06X}", inline=True)
        embed.add_field("Worker pid", str(os.getpid()), inline=True)
        embed.set_footer("Rendered by the playground from Discord's embed JSON")
        await ctx.respond(embed=embed)

    async def flavours(interaction: hikari.AutocompleteInteraction, typed: str) -> list[str]:
        del interaction
        return [f for f in FLAVOURS if typed.lower() in f][:25]

    @bot.command(description="Ice cream flavours, with autocomplete")
    async def flavour(ctx: Context, name: str = option("a flavour", autocomplete=flavours)) -> None:
        if name.lower() not in FLAVOURS:
            await ctx.respond(f"Sorry, no {name[:40]!r} today. Try one of the suggestions.")
            return
        await ctx.respond(f"One scoop of {name.lower()}, coming up.")
