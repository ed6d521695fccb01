"""A plugin for the command sync tests (WORKER_PLUGINS=tests.worker.plugin_commands)."""

from __future__ import annotations

import typing

import hikari

from worker.commands import Context, option

if typing.TYPE_CHECKING:
    from worker import bot as bot_module


def setup(bot: bot_module.Bot) -> None:
    @bot.command(description="Says it again")
    async def echo(
        ctx: Context,
        times: int = option("how many times", 1, min=1, max=3),
        text: str = option("what to say", "nothing", max=100),
        mood: typing.Literal["calm", "loud"] = option("how", "calm"),
    ) -> None:
        await ctx.respond(" ".join([text] * times))

    @bot.command(description="Bans", user_permissions=hikari.Permissions.BAN_MEMBERS)
    async def ban(ctx: Context, member: hikari.Member) -> None:
        await ctx.respond(f"banned {member.id}")

    config = bot.group("config", description="Server configuration", guild_only=True)

    @bot.command(description="Shows the configuration", group=config)
    async def show(ctx: Context) -> None:
        await ctx.respond("shown")

    @bot.command("set", description="Sets a value", group=config)
    async def set_(ctx: Context, key: str, value: str = option("the value", "")) -> None:
        await ctx.respond(f"{key}={value}")
