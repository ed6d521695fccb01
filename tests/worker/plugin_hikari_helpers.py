"""A listener module as written for a hikari ``GatewayBot``: nothing in it is Shardline's
(WORKER_PLUGINS=tests.worker.plugin_hikari_helpers). It answers ``!whoami`` from hikari's
cache helpers alone."""

from __future__ import annotations

import hikari


def setup(bot: hikari.GatewayBot) -> None:
    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        if event.is_bot or event.content != "!whoami":
            return
        guild = event.get_guild()
        member = event.get_member()
        channel = event.get_channel()
        if guild is None or member is None or channel is None:
            await event.message.respond("I do not know this place")
            return
        roles = ", ".join(sorted(role.name for role in member.get_roles()))
        await event.message.respond(
            f"{member.display_name} in #{channel.name} of {guild.name}, roles: {roles}"
        )
