"""Gateway commands a session sends after READY, as Discord's documentation describes them:
REQUEST_GUILD_MEMBERS (answered in GUILD_MEMBERS_CHUNKs) and VOICE_STATE_UPDATE (answered with
VOICE_STATE_UPDATE and, on joining, VOICE_SERVER_UPDATE)."""

from __future__ import annotations

import secrets
import time
import typing

from playground.discord import protocol, records, world
from shared import sharding

if typing.TYPE_CHECKING:
    from playground.discord import dispatch, sessions

Json = dict[str, typing.Any]


class GatewayCommands:
    """What the gateway does with the commands of an identified session."""

    def __init__(
        self,
        world_: world.World,
        records_: records.Records,
        sessions_: sessions.GatewaySessions,
        router: dispatch.DispatchRouter,
    ) -> None:
        self.world = world_
        self.records = records_
        self.sessions = sessions_
        self.router = router
        #: guild -> the last VOICE_SERVER_UPDATE sent to the bot (what Lavalink must be given).
        self.voice_servers: dict[int, Json] = {}

    def command(
        self, connection: sessions.Connection, session: sessions.Session, op: int, d: typing.Any
    ) -> None:
        if not isinstance(d, dict):
            self.sessions.close(connection, protocol.Close.DECODE_ERROR)
            return
        self.records.commands.append(
            records.GatewayCommandRecord(time.time(), session.shard_id, op, d)
        )
        if op == protocol.Op.REQUEST_GUILD_MEMBERS:
            self._request_guild_members(connection, session, d)
        elif op == protocol.Op.VOICE_STATE_UPDATE:
            self._voice_state_update(session, d)

    def _guild_on_session(self, session: sessions.Session, raw_id: typing.Any) -> int | None:
        try:
            guild_id = int(raw_id)
        except (TypeError, ValueError):
            return None
        if guild_id not in self.world.guilds:
            return None
        if sharding.shard_for_guild(guild_id, session.shard_count) != session.shard_id:
            return None
        return guild_id

    def _request_guild_members(
        self, connection: sessions.Connection, session: sessions.Session, d: Json
    ) -> None:
        guild_id = self._guild_on_session(session, d.get("guild_id"))
        if guild_id is None:
            self.sessions.close(connection, protocol.Close.DECODE_ERROR, "guild not on this shard")
            return
        members = list(self.world.members[guild_id].values())
        query = d.get("query")
        user_ids = d.get("user_ids")
        if user_ids is not None:
            wanted = {str(u) for u in (user_ids if isinstance(user_ids, list) else [user_ids])}
            members = [m for m in members if m["user"]["id"] in wanted]
        elif isinstance(query, str) and query:
            members = [m for m in members if m["user"]["username"].startswith(query)]
            limit = d.get("limit", 0)
            if isinstance(limit, int) and limit > 0:
                members = members[:limit]
        elif not session.intents & protocol.Intent.GUILD_MEMBERS:
            self.sessions.close(connection, protocol.Close.DISALLOWED_INTENTS)
            return
        chunks = [members[i : i + 1000] for i in range(0, len(members), 1000)] or [[]]
        for index, chunk in enumerate(chunks):
            payload: Json = {
                "guild_id": str(guild_id),
                "members": chunk,
                "chunk_index": index,
                "chunk_count": len(chunks),
            }
            if "nonce" in d:
                payload["nonce"] = d["nonce"]
            # Gateway "Request Guild Members" / "Guild Members Chunk": presences only when
            # asked for (``presences: true``), which needs the GUILD_PRESENCES intent.
            if d.get("presences") is True and session.intents & protocol.Intent.GUILD_PRESENCES:
                payload["presences"] = []
            if user_ids is not None and index == len(chunks) - 1:
                found = {m["user"]["id"] for m in members}
                payload["not_found"] = [
                    u
                    for u in (user_ids if isinstance(user_ids, list) else [user_ids])
                    if str(u) not in found
                ]
            self.sessions.dispatch_to(session, "GUILD_MEMBERS_CHUNK", payload)

    def _voice_state_update(self, session: sessions.Session, d: Json) -> None:
        guild_id = self._guild_on_session(session, d.get("guild_id"))
        if guild_id is None:
            return
        channel_id = d.get("channel_id")
        state = self.world.set_voice_state(
            guild_id,
            self.world.bot_id,
            None if channel_id is None else int(channel_id),
            session.session_id,
            self_deaf=bool(d.get("self_deaf")),
            self_mute=bool(d.get("self_mute")),
        )
        self.sessions.dispatch_to(session, "VOICE_STATE_UPDATE", state)
        if channel_id is not None:
            self.voice_server_update(guild_id)

    def voice_server_update(self, guild_id: int) -> Json | None:
        """Send the bot a (new) voice server for ``guild_id``, as Discord does on joining and
        when it moves the call to another voice server; returns what was sent."""
        if self.world.bot_id not in self.world.voice_states.get(guild_id, {}):
            return None
        payload = {
            "token": secrets.token_hex(8),
            "guild_id": str(guild_id),
            "endpoint": f"{secrets.choice(('rotterdam', 'us-east', 'japan'))}"
            f"{secrets.randbelow(9000) + 1000}.discord.media:443",
        }
        self.voice_servers[guild_id] = payload
        self.router.dispatch("VOICE_SERVER_UPDATE", payload, guild_id=guild_id)
        return payload
