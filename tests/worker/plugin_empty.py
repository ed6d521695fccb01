"""A plugin whose setup registers nothing: its listener is defined and never registered."""

from __future__ import annotations

import typing

if typing.TYPE_CHECKING:
    import hikari

    from worker import bot as bot_module


def setup(bot: bot_module.Bot) -> None:
    del bot

    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:  # never registered
        del event
