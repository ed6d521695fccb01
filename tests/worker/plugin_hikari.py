"""A plugin written as for a hikari ``GatewayBot``: an async setup that calls REST, listeners
typed by their annotation only, ``event.message.respond``."""

from __future__ import annotations

import typing

import hikari  # noqa: TC002 - listeners typed by their annotation need it at runtime

if typing.TYPE_CHECKING:
    from worker import bot as bot_module


async def setup(bot: bot_module.Bot) -> None:
    me = await bot.rest.fetch_my_user()  # REST exists when setup runs

    @bot.listen()
    async def on_message(
        event: hikari.GuildMessageCreateEvent | hikari.DMMessageCreateEvent,
    ) -> None:
        if event.author_id != me.id and event.content == "!whoami":
            await event.message.respond(f"I am {me.username}")
