"""The next release of plugin_commands: echo reworded, ban gone, ping new."""

from __future__ import annotations

import typing

from worker.commands import Context, option

if typing.TYPE_CHECKING:
    from worker import bot as bot_module


def setup(bot: bot_module.Bot) -> None:
    @bot.command(description="Repeats what you say")
    async def echo(
        ctx: Context,
        times: int = option("how many times", 1, min=1, max=3),
        text: str = option("what to say", "nothing", max=100),
        mood: typing.Literal["calm", "loud"] = option("how", "calm"),
    ) -> None:
        await ctx.respond(" ".join([text] * times))

    @bot.command(description="Pong")
    async def ping(ctx: Context) -> None:
        await ctx.respond("Pong")
