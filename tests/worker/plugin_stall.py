"""A plugin for the crash test: its handler takes the message and never finishes."""

from __future__ import annotations

import asyncio
import typing

import hikari

if typing.TYPE_CHECKING:
    from worker import bot as bot_module


def setup(bot: bot_module.Bot) -> None:
    @bot.listen(hikari.GuildMessageCreateEvent)
    async def stall(event: hikari.GuildMessageCreateEvent) -> None:
        del event
        await asyncio.Event().wait()
