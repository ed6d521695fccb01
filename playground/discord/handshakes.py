"""IDENTIFY and RESUME, as Discord's documentation describes them.

IDENTIFY with its checks (4004 token, 4010 shard, 4011 sharding required, 4013/4014 intents),
the identify limit of one per ``shard_id % max_concurrency`` bucket per 5 s (answered with
INVALID_SESSION, as Discord does, and recorded), the session start limit, READY then
GUILD_CREATE for exactly the guilds of the shard; RESUME with replay then RESUMED.
"""

from __future__ import annotations

import time
import typing

from playground.discord import protocol, records, world
from shared import sharding

if typing.TYPE_CHECKING:
    from playground.discord import sessions as sessions_module

Json = dict[str, typing.Any]


def gateway_url(host: str) -> str:
    """The URL ``GET /gateway/bot`` hands out, on the host the client reached us by (so it
    works on loopback and between containers alike)."""
    return f"ws://{host}/gateway"


def resume_url(host: str) -> str:
    """READY's ``resume_gateway_url``: another path, so tests see that clients use it."""
    return f"ws://{host}/resume"


class Handshakes:
    """How a connection becomes a session's: IDENTIFY (a new one) or RESUME (an old one)."""

    def __init__(
        self,
        world_: world.World,
        records_: records.Records,
        sessions: sessions_module.GatewaySessions,
        *,
        token: str,
    ) -> None:
        self.world = world_
        self.records = records_
        self.sessions = sessions
        self.options = sessions.options
        self.token = token
        self._bucket_last_identify: dict[int, float] = {}
        self.session_start_remaining = self.options.session_start_remaining
        self._session_start_reset_at = time.monotonic() + self.options.session_start_reset_after

    def session_start_limit(self) -> Json:
        """``session_start_limit`` of ``GET /gateway/bot`` (discord-api-docs, Gateway, "Get
        Gateway Bot" / "Session Start Limit Object"): ``reset_after`` is in milliseconds, and
        ``remaining`` goes back to ``total`` once the window ends."""
        now = time.monotonic()
        if now >= self._session_start_reset_at:
            self.session_start_remaining = self.options.session_start_total
            self._session_start_reset_at = now + self.options.session_start_reset_after
        return {
            "total": self.options.session_start_total,
            "remaining": self.session_start_remaining,
            "reset_after": int((self._session_start_reset_at - now) * 1000),
            "max_concurrency": self.options.max_concurrency,
        }

    def identify(self, connection: sessions_module.Connection, d: typing.Any) -> None:  # noqa: PLR0911
        if connection.session is not None:
            self.sessions.close(connection, protocol.Close.ALREADY_AUTHENTICATED)
            return
        if not isinstance(d, dict) or not isinstance(d.get("properties"), dict):
            self.sessions.close(connection, protocol.Close.DECODE_ERROR)
            return
        if d.get("token") != self.token:
            self.sessions.close(connection, protocol.Close.AUTHENTICATION_FAILED)
            return
        shard = d.get("shard", [0, 1])
        if (
            not isinstance(shard, list)
            or len(shard) != 2
            or not all(type(x) is int for x in shard)
            or not 0 <= shard[0] < shard[1]
        ):
            self.sessions.close(connection, protocol.Close.INVALID_SHARD)
            return
        shard_id, shard_count = shard
        intents = d.get("intents")
        if type(intents) is not int or intents < 0 or intents & ~protocol.ALL_INTENTS:
            self.sessions.close(connection, protocol.Close.INVALID_INTENTS)
            return
        if intents & protocol.PRIVILEGED_INTENTS & ~self.options.privileged_intents:
            self.sessions.close(connection, protocol.Close.DISALLOWED_INTENTS)
            return
        if len(self.world.guilds) / shard_count > self.options.max_guilds_per_shard:
            self.sessions.close(connection, protocol.Close.SHARDING_REQUIRED)
            return
        now = time.monotonic()
        bucket = sharding.identify_bucket(shard_id, self.options.max_concurrency)
        last = self._bucket_last_identify.get(bucket)
        limits = self.session_start_limit()

        def record(accepted: bool, reason: str, session_id: str | None = None) -> None:
            entry = records.IdentifyRecord(
                time.time(), shard_id, shard_count, bucket, intents, accepted, reason, session_id
            )
            self.records.identifies.append(entry)
            if reason == "identify rate limit":
                self.records.identify_violations.append(entry)

        if last is not None and now - last < self.options.identify_window:
            # Documented: exceeding max_concurrency is answered with INVALID_SESSION.
            record(False, "identify rate limit")
            connection.send({"op": protocol.Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if limits["remaining"] <= 0:
            # Discord resets the token of a bot that exhausts its session starts.
            self.records.token_resets += 1
            record(False, "session start limit exhausted: token reset")
            self.sessions.close(connection, protocol.Close.AUTHENTICATION_FAILED)
            return
        self._bucket_last_identify[bucket] = now
        self.session_start_remaining -= 1
        session = self.sessions.open(shard_id, shard_count, intents)
        session.connection = connection
        connection.session = session
        record(True, "ok", session.session_id)
        guild_ids = self.world.guilds_of_shard(shard_id, shard_count)
        self.sessions.dispatch_to(
            session,
            "READY",
            {
                "v": protocol.API_VERSION,
                "user": self.world.bot_user,
                "guilds": [{"id": str(gid), "unavailable": True} for gid in guild_ids],
                "session_id": session.session_id,
                "resume_gateway_url": resume_url(connection.host),
                "shard": [shard_id, shard_count],
                "application": {"id": str(self.world.application_id), "flags": 0},
                "private_channels": [],
                "presences": [],
                "relationships": [],
                "guild_join_requests": [],
                "user_settings": {},
                "geo_ordered_rtc_regions": ["local"],
                "_trace": ["emulator"],
            },
        )
        if intents & protocol.Intent.GUILDS:
            # Gateway "Identify Structure": large_threshold defaults to 50 (50..250).
            threshold = d.get("large_threshold")
            threshold = threshold if type(threshold) is int else 50
            presences = bool(intents & protocol.Intent.GUILD_PRESENCES)
            for gid in guild_ids:
                payload = self.world.guild_create_payload(
                    gid, presences=presences, large_threshold=threshold
                )
                self.sessions.dispatch_to(session, "GUILD_CREATE", payload)

    def resume(self, connection: sessions_module.Connection, d: typing.Any) -> None:
        if connection.session is not None:
            self.sessions.close(connection, protocol.Close.ALREADY_AUTHENTICATED)
            return
        if not isinstance(d, dict) or not isinstance(d.get("session_id"), str):
            self.sessions.close(connection, protocol.Close.DECODE_ERROR)
            return
        if d.get("token") != self.token:
            self.sessions.close(connection, protocol.Close.AUTHENTICATION_FAILED)
            return
        session_id = d["session_id"]
        seq = d.get("seq")
        session = self.sessions.by_id.get(session_id)

        def record(accepted: bool, reason: str, replayed: int = 0) -> None:
            self.records.resumes.append(
                records.ResumeRecord(
                    time.time(),
                    session_id,
                    seq if isinstance(seq, int) else -1,
                    session.shard_id if session else None,
                    accepted,
                    replayed,
                    reason,
                    connection.path,
                )
            )

        if session is None or session.invalid:
            record(False, "unknown or invalidated session")
            connection.send({"op": protocol.Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if type(seq) is not int or seq < 0 or seq > session.seq:
            record(False, "invalid seq")
            self.sessions.close(connection, protocol.Close.INVALID_SEQ)
            return
        oldest = session.buffer[0]["s"] if session.buffer else session.seq + 1
        if oldest > seq + 1:
            record(False, "replay buffer no longer reaches seq")
            self.sessions.invalidate(session)
            connection.send({"op": protocol.Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.connection is not None:
            self.sessions.close(
                session.connection, protocol.Close.UNKNOWN_ERROR, "session resumed elsewhere"
            )
        missed = [payload for payload in session.buffer if payload["s"] > seq]
        session.connection = connection
        session.disconnected_at = None
        connection.session = session
        for payload in missed:
            connection.send(payload)
        record(True, "ok", len(missed))
        self.sessions.send_resumed(session)

    # --- gateway commands -------------------------------------------------------------------
