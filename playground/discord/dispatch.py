"""Where a dispatch goes: to the session of each shard layout that owns its guild, filtered by
the session's intents, with message content withheld without the MESSAGE_CONTENT intent."""

from __future__ import annotations

import typing

from playground.discord import protocol, world
from shared import sharding

if typing.TYPE_CHECKING:
    from playground.discord import sessions as sessions_module

Json = dict[str, typing.Any]


class DispatchRouter:
    """Sends dispatches to the sessions that should get them."""

    def __init__(self, world_: world.World, sessions: sessions_module.GatewaySessions) -> None:
        self.world = world_
        self.sessions = sessions

    def dispatch(
        self,
        event: str,
        data: Json,
        *,
        guild_id: int | None = None,
        shard_id: int | None = None,
    ) -> int:
        """Send a dispatch to the session of the shard that owns ``guild_id`` (or ``shard_id``).

        Returns how many sessions took it (buffered for replay when disconnected).
        """
        targets: typing.Iterable[sessions_module.Session]
        if guild_id is not None:
            targets = [
                s
                for s in self.sessions.layouts.values()
                if sharding.shard_for_guild(guild_id, s.shard_count) == s.shard_id
            ]
        elif shard_id is not None:
            session = self.sessions.shards.get(shard_id)
            targets = [session] if session is not None else []
        else:
            # Gateway > Sharding: events not tied to a guild, DMs among them, go to shard 0
            # only ("DMs will only be sent to shard_id 0"), of each running shard layout.
            targets = [s for s in self.sessions.layouts.values() if s.shard_id == 0]
        taken = 0
        for session in targets:
            needed = protocol.required_intent(event, in_guild=guild_id is not None)
            if needed is not None and not session.intents & needed:
                continue
            payload = data
            if (
                event in protocol.CONTENT_EVENTS
                and guild_id is not None
                and not session.intents & protocol.Intent.MESSAGE_CONTENT
                and not _mentions(data, self.world.bot_id)
            ):
                payload = {**data, "content": "", "embeds": [], "attachments": [], "components": []}
            self.sessions.dispatch_to(session, event, payload)
            taken += 1
        return taken


def _mentions(message: Json, user_id: int) -> bool:
    return any(m.get("id") == str(user_id) for m in message.get("mentions", ()))
