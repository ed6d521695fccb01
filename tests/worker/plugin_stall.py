"""A plugin for the crash test: its handler takes the message and never finishes."""

from __future__ import annotations

import asyncio
import os
import typing

import hikari

if typing.TYPE_CHECKING:
    from worker import bot as bot_module


def setup(bot: bot_module.Bot) -> None:
    @bot.listen(hikari.GuildMessageCreateEvent)
    async def stall(event: hikari.GuildMessageCreateEvent) -> None:
        del event
        # Tells the test it holds the message: a queue's message count cannot (a quorum
        # queue's declare-ok counts unacknowledged messages too).
        if mark := os.environ.get("STALL_MARK"):
            os.close(os.open(mark, os.O_CREAT | os.O_WRONLY, 0o644))
        await asyncio.Event().wait()
