"""The emulated gateway: WebSocket sessions, as Discord's documentation describes them.

HELLO and heartbeats (a connection that stops heartbeating is closed with 4009 and stays
resumable), IDENTIFY with its checks (4004 token, 4010 shard, 4011 sharding required,
4013/4014 intents), the identify limit of one per ``shard_id % max_concurrency`` bucket per
5 s (answered with INVALID_SESSION, as Discord does, and recorded), the session start limit,
READY then GUILD_CREATE for exactly the guilds of the shard, per-session ``seq``, RESUME with
replay then RESUMED, 120 commands a minute (4008), and both transport compressions Discord
offers: zlib-stream (one deflate stream, each message ending in a sync flush) and zstd-stream
(one zstd stream, each message a flushed block).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import secrets
import sys
import time
import typing
import zlib

import aiohttp
import orjson
from aiohttp import web

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from playground.discord import protocol, records, world
from shared import sharding

_LOGGER = logging.getLogger("playground.discord.gateway")
Json = dict[str, typing.Any]
_CLOSE: typing.Final = object()


@dataclasses.dataclass(slots=True, kw_only=True)
class GatewayOptions:
    """How the emulated gateway behaves; defaults are Discord's."""

    heartbeat_interval: float = 41.25
    """Seconds, sent in HELLO as milliseconds."""
    heartbeat_tolerance: float = 1.5
    """A connection with no heartbeat for ``interval * tolerance`` is closed (4009)."""
    max_concurrency: int = 1
    identify_window: float = 5.0
    session_start_total: int = 1000
    session_start_remaining: int = 1000
    session_start_reset_after: float = 24 * 3600.0
    recommended_shards: int = 1
    commands_per_minute: int = 120
    command_window: float = 60.0
    session_timeout: float = 120.0
    """How long a disconnected session stays resumable."""
    replay_buffer: int = 100_000
    """Dispatches kept per session for replay on RESUME."""
    max_guilds_per_shard: int = 2500
    privileged_intents: int = protocol.PRIVILEGED_INTENTS
    """Privileged intents enabled in the 'developer portal'."""


class Session:
    """A Discord session: outlives connections until invalidated or timed out."""

    __slots__ = (
        "buffer",
        "connection",
        "disconnected_at",
        "intents",
        "invalid",
        "seq",
        "session_id",
        "shard_count",
        "shard_id",
    )

    def __init__(self, shard_id: int, shard_count: int, intents: int, buffer_size: int) -> None:
        self.session_id = secrets.token_hex(16)
        self.shard_id = shard_id
        self.shard_count = shard_count
        self.intents = intents
        self.seq = 0
        self.buffer: collections.deque[Json] = collections.deque(maxlen=buffer_size)
        self.connection: Connection | None = None
        self.disconnected_at: float | None = None
        self.invalid = False


class Connection:
    """One WebSocket. Frames go out through a queue, so order (and zlib state) is kept."""

    __slots__ = (
        "_compressor",
        "_outbox",
        "_writer",
        "closed",
        "host",
        "last_heartbeat",
        "path",
        "received",
        "session",
        "ws",
    )

    def __init__(
        self, ws: web.WebSocketResponse, *, compress: str | None, path: str, host: str
    ) -> None:
        self.ws = ws
        self.path = path
        self.host = host
        """The host (and port) the client reached the emulator by: READY's resume URL uses it."""
        self._compressor: typing.Callable[[bytes], bytes] | None = None
        if compress == "zlib-stream":
            deflate = zlib.compressobj()
            self._compressor = lambda data: (
                deflate.compress(data) + deflate.flush(zlib.Z_SYNC_FLUSH)
            )
        elif compress == "zstd-stream":
            zstd_stream = zstd.ZstdCompressor()
            self._compressor = lambda data: zstd_stream.compress(
                data, mode=zstd.ZstdCompressor.FLUSH_BLOCK
            )
        self._outbox: asyncio.Queue[typing.Any] = asyncio.Queue()
        self.session: Session | None = None
        self.last_heartbeat = time.monotonic()
        self.received: collections.deque[float] = collections.deque()
        self.closed = False
        self._writer = asyncio.get_running_loop().create_task(self._write_loop())

    @property
    def backlog(self) -> int:
        return self._outbox.qsize()

    def send(self, payload: Json) -> None:
        if not self.closed:
            self._outbox.put_nowait(payload)

    def close(self, code: int, reason: str | None = None) -> None:
        """Queue a close frame after whatever is already queued."""
        if not self.closed:
            self.closed = True
            self._outbox.put_nowait((_CLOSE, code, reason or protocol.CLOSE_REASONS.get(code, "")))

    async def _write_loop(self) -> None:
        try:
            while True:
                item = await self._outbox.get()
                if isinstance(item, tuple) and item and item[0] is _CLOSE:
                    _, code, reason = item
                    await self.ws.close(code=code, message=reason.encode())
                    return
                data = orjson.dumps(item)
                if self._compressor is not None:
                    await self.ws.send_bytes(self._compressor(data))
                else:
                    await self.ws.send_str(data.decode())
        except (ConnectionError, RuntimeError, aiohttp.ClientError):
            self.closed = True

    async def wait_closed(self, timeout: float = 5.0) -> None:
        """Let a queued close frame go out (bounded), then stop writing."""
        if not self.closed:
            self.closed = True
            self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError, TimeoutError):
            await asyncio.wait_for(self._writer, timeout)


def gateway_url(host: str) -> str:
    """The URL ``GET /gateway/bot`` hands out, on the host the client reached us by (so it
    works on loopback and between containers alike)."""
    return f"ws://{host}/gateway"


def resume_url(host: str) -> str:
    """READY's ``resume_gateway_url``: another path, so tests see that clients use it."""
    return f"ws://{host}/resume"


class GatewayServer:
    """Sessions and connections of the emulated gateway."""

    def __init__(
        self,
        world_: world.World,
        records_: records.Records,
        options: GatewayOptions,
        *,
        token: str,
    ) -> None:
        self.world = world_
        self.records = records_
        self.options = options
        self.token = token
        self.sessions: dict[str, Session] = {}
        self.shards: dict[int, Session] = {}
        """The live session of each shard id (of the layout identified last)."""
        self.layouts: dict[tuple[int, int], Session] = {}
        """Every live session by ``(shard_id, shard_count)``: Discord lets two shard layouts run
        side by side (zero-downtime re-sharding), each getting its own guilds' events."""
        self.connections: set[Connection] = set()
        self._bucket_last_identify: dict[int, float] = {}
        self.session_start_remaining = options.session_start_remaining
        self._session_start_reset_at = time.monotonic() + options.session_start_reset_after
        self.base_url = ""
        """The URL ``GET /gateway/bot`` hands out on the emulator's own address."""
        self.resume_url = ""
        """READY's ``resume_gateway_url`` on the emulator's own address (see :func:`resume_url`)."""
        self._sweeper: asyncio.Task[None] | None = None
        #: guild -> the last VOICE_SERVER_UPDATE sent to the bot (what Lavalink must be given).
        self.voice_servers: dict[int, Json] = {}

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for connection in list(self.connections):
            connection.close(protocol.Close.UNKNOWN_ERROR, "emulator shutting down")
        await asyncio.sleep(0)
        for connection in list(self.connections):
            await connection.wait_closed()

    def session_start_limit(self) -> Json:
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

    async def _sweep_loop(self) -> None:
        interval = min(self.options.heartbeat_interval / 4, 1.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            deadline = self.options.heartbeat_interval * self.options.heartbeat_tolerance
            for connection in list(self.connections):
                if not connection.closed and now - connection.last_heartbeat > deadline:
                    self._close(connection, protocol.Close.SESSION_TIMED_OUT)
            for session in list(self.sessions.values()):
                if (
                    session.disconnected_at is not None
                    and now - session.disconnected_at > self.options.session_timeout
                ):
                    self._invalidate(session)

    # --- connections ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # autoclose off: a client's close is acted on (session detached) before it is answered.
        ws = web.WebSocketResponse(autoping=True, autoclose=False, max_msg_size=4096 * 1024)
        await ws.prepare(request)
        version = request.query.get("v", str(protocol.API_VERSION))
        compress = request.query.get("compress")
        supported = compress in (None, "zlib-stream", "zstd-stream")
        connection = Connection(
            ws, compress=compress if supported else None, path=request.path, host=request.host
        )
        self.connections.add(connection)
        try:
            if version != str(protocol.API_VERSION):
                self._close(connection, protocol.Close.INVALID_API_VERSION)
            elif request.query.get("encoding", "json") != "json":
                self._close(connection, protocol.Close.DECODE_ERROR, "only json encoding here")
            elif not supported:
                self._close(connection, protocol.Close.DECODE_ERROR, f"unsupported {compress}")
            else:
                connection.send(
                    {
                        "op": protocol.Op.HELLO,
                        "d": {"heartbeat_interval": int(self.options.heartbeat_interval * 1000)},
                        "s": None,
                        "t": None,
                    }
                )
                await self._read_loop(connection)
        finally:
            self._detach(connection)
            self.connections.discard(connection)
            await connection.wait_closed()
            if not ws.closed:
                await ws.close()
        return ws

    async def _read_loop(self, connection: Connection) -> None:
        while not connection.closed:
            message = await connection.ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT or message.type is aiohttp.WSMsgType.BINARY:
                self._receive(connection, message.data)
            elif message.type is aiohttp.WSMsgType.CLOSE:
                self._client_closed(connection, int(message.data))
                return
            else:
                return

    def _client_closed(self, connection: Connection, code: int) -> None:
        session = connection.session
        self.records.closes.append(
            records.CloseRecord(
                time.time(), session.shard_id if session else None, code, True, "client"
            )
        )
        self._detach(connection)
        if code in (1000, 1001) and session is not None:
            # Documented: closing with 1000 or 1001 invalidates the session.
            self._invalidate(session)

    def _receive(self, connection: Connection, data: str | bytes) -> None:
        now = time.monotonic()
        window = connection.received
        window.append(now)
        while window and now - window[0] > self.options.command_window:
            window.popleft()
        if len(window) > self.options.commands_per_minute:
            self._close(connection, protocol.Close.RATE_LIMITED)
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self._close(connection, protocol.Close.DECODE_ERROR)
            return
        if not isinstance(payload, dict) or "op" not in payload:
            self._close(connection, protocol.Close.DECODE_ERROR)
            return
        op = payload["op"]
        d = payload.get("d")
        if op not in protocol.CLIENT_OPS:
            self._close(connection, protocol.Close.UNKNOWN_OPCODE)
        elif op == protocol.Op.HEARTBEAT:
            connection.last_heartbeat = now
            connection.send({"op": protocol.Op.HEARTBEAT_ACK})
        elif op == protocol.Op.IDENTIFY:
            self._identify(connection, d)
        elif op == protocol.Op.RESUME:
            self._resume(connection, d)
        elif connection.session is None:
            self._close(connection, protocol.Close.NOT_AUTHENTICATED)
        else:
            self._command(connection, connection.session, op, d)

    def _close(self, connection: Connection, code: int, reason: str | None = None) -> None:
        session = connection.session
        self.records.closes.append(
            records.CloseRecord(
                time.time(),
                session.shard_id if session else None,
                code,
                False,
                reason or protocol.CLOSE_REASONS.get(code, ""),
            )
        )
        connection.close(code, reason)
        self._detach(connection)

    def _detach(self, connection: Connection) -> None:
        session = connection.session
        if session is not None and session.connection is connection:
            session.connection = None
            session.disconnected_at = time.monotonic()

    def _invalidate(self, session: Session) -> None:
        session.invalid = True
        self.sessions.pop(session.session_id, None)
        layout = (session.shard_id, session.shard_count)
        if self.layouts.get(layout) is session:
            del self.layouts[layout]
        if self.shards.get(session.shard_id) is session:
            del self.shards[session.shard_id]
            others = [s for (sid, _), s in self.layouts.items() if sid == session.shard_id]
            if others:
                self.shards[session.shard_id] = others[-1]

    # --- handshakes -------------------------------------------------------------------------

    def _new_session(self, shard_id: int, shard_count: int, intents: int) -> Session:
        """A session for ``[shard_id, shard_count]``, replacing that layout's previous one."""
        previous = self.layouts.get((shard_id, shard_count))
        if previous is not None:
            if previous.connection is not None:
                self._close(previous.connection, protocol.Close.UNKNOWN_ERROR, "replaced")
            self._invalidate(previous)
        session = Session(shard_id, shard_count, intents, self.options.replay_buffer)
        self.sessions[session.session_id] = session
        self.shards[shard_id] = session
        self.layouts[(shard_id, shard_count)] = session
        return session

    def _identify(self, connection: Connection, d: typing.Any) -> None:  # noqa: PLR0911
        if connection.session is not None:
            self._close(connection, protocol.Close.ALREADY_AUTHENTICATED)
            return
        if not isinstance(d, dict) or not isinstance(d.get("properties"), dict):
            self._close(connection, protocol.Close.DECODE_ERROR)
            return
        if d.get("token") != self.token:
            self._close(connection, protocol.Close.AUTHENTICATION_FAILED)
            return
        shard = d.get("shard", [0, 1])
        if (
            not isinstance(shard, list)
            or len(shard) != 2
            or not all(type(x) is int for x in shard)
            or not 0 <= shard[0] < shard[1]
        ):
            self._close(connection, protocol.Close.INVALID_SHARD)
            return
        shard_id, shard_count = shard
        intents = d.get("intents")
        if type(intents) is not int or intents < 0 or intents & ~protocol.ALL_INTENTS:
            self._close(connection, protocol.Close.INVALID_INTENTS)
            return
        if intents & protocol.PRIVILEGED_INTENTS & ~self.options.privileged_intents:
            self._close(connection, protocol.Close.DISALLOWED_INTENTS)
            return
        if len(self.world.guilds) / shard_count > self.options.max_guilds_per_shard:
            self._close(connection, protocol.Close.SHARDING_REQUIRED)
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
            self._close(connection, protocol.Close.AUTHENTICATION_FAILED)
            return
        self._bucket_last_identify[bucket] = now
        self.session_start_remaining -= 1
        session = self._new_session(shard_id, shard_count, intents)
        session.connection = connection
        connection.session = session
        record(True, "ok", session.session_id)
        guild_ids = self.world.guilds_of_shard(shard_id, shard_count)
        self._dispatch(
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
            for gid in guild_ids:
                self._dispatch(session, "GUILD_CREATE", self.world.guild_create_payload(gid))

    def _resume(self, connection: Connection, d: typing.Any) -> None:
        if connection.session is not None:
            self._close(connection, protocol.Close.ALREADY_AUTHENTICATED)
            return
        if not isinstance(d, dict) or not isinstance(d.get("session_id"), str):
            self._close(connection, protocol.Close.DECODE_ERROR)
            return
        if d.get("token") != self.token:
            self._close(connection, protocol.Close.AUTHENTICATION_FAILED)
            return
        session_id = d["session_id"]
        seq = d.get("seq")
        session = self.sessions.get(session_id)

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
            self._close(connection, protocol.Close.INVALID_SEQ)
            return
        oldest = session.buffer[0]["s"] if session.buffer else session.seq + 1
        if oldest > seq + 1:
            record(False, "replay buffer no longer reaches seq")
            self._invalidate(session)
            connection.send({"op": protocol.Op.INVALID_SESSION, "d": False, "s": None, "t": None})
            return
        if session.connection is not None:
            self._close(
                session.connection, protocol.Close.UNKNOWN_ERROR, "session resumed elsewhere"
            )
        missed = [payload for payload in session.buffer if payload["s"] > seq]
        session.connection = connection
        session.disconnected_at = None
        connection.session = session
        for payload in missed:
            connection.send(payload)
        record(True, "ok", len(missed))
        self._dispatch(session, "RESUMED", {"_trace": ["emulator"]})

    # --- gateway commands -------------------------------------------------------------------

    def _command(self, connection: Connection, session: Session, op: int, d: typing.Any) -> None:
        if not isinstance(d, dict):
            self._close(connection, protocol.Close.DECODE_ERROR)
            return
        self.records.commands.append(
            records.GatewayCommandRecord(time.time(), session.shard_id, op, d)
        )
        if op == protocol.Op.REQUEST_GUILD_MEMBERS:
            self._request_guild_members(connection, session, d)
        elif op == protocol.Op.VOICE_STATE_UPDATE:
            self._voice_state_update(session, d)

    def _guild_on_session(self, session: Session, raw_id: typing.Any) -> int | None:
        try:
            guild_id = int(raw_id)
        except (TypeError, ValueError):
            return None
        if guild_id not in self.world.guilds:
            return None
        if sharding.shard_for_guild(guild_id, session.shard_count) != session.shard_id:
            return None
        return guild_id

    def _request_guild_members(self, connection: Connection, session: Session, d: Json) -> None:
        guild_id = self._guild_on_session(session, d.get("guild_id"))
        if guild_id is None:
            self._close(connection, protocol.Close.DECODE_ERROR, "guild not on this shard")
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
            self._close(connection, protocol.Close.DISALLOWED_INTENTS)
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
            if user_ids is not None and index == len(chunks) - 1:
                found = {m["user"]["id"] for m in members}
                payload["not_found"] = [
                    u
                    for u in (user_ids if isinstance(user_ids, list) else [user_ids])
                    if str(u) not in found
                ]
            self._dispatch(session, "GUILD_MEMBERS_CHUNK", payload)

    def _voice_state_update(self, session: Session, d: Json) -> None:
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
        self._dispatch(session, "VOICE_STATE_UPDATE", state)
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
        self.dispatch("VOICE_SERVER_UPDATE", payload, guild_id=guild_id)
        return payload

    # --- dispatch ---------------------------------------------------------------------------

    def _dispatch(self, session: Session, event: str, data: Json) -> None:
        session.seq += 1
        payload = {"op": protocol.Op.DISPATCH, "t": event, "s": session.seq, "d": data}
        session.buffer.append(payload)
        if session.connection is not None:
            session.connection.send(payload)

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
        targets: typing.Iterable[Session]
        if guild_id is not None:
            targets = [
                s
                for s in self.layouts.values()
                if sharding.shard_for_guild(guild_id, s.shard_count) == s.shard_id
            ]
        elif shard_id is not None:
            session = self.shards.get(shard_id)
            targets = [session] if session is not None else []
        else:
            targets = list(self.layouts.values())
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
            self._dispatch(session, event, payload)
            taken += 1
        return taken

    # --- control ----------------------------------------------------------------------------

    def session_of(self, shard_id: int) -> Session | None:
        return self.shards.get(shard_id)

    def force_reconnect(self, shard_id: int) -> None:
        connection = self._connection_of(shard_id)
        connection.send({"op": protocol.Op.RECONNECT, "d": None, "s": None, "t": None})

    def force_invalid_session(self, shard_id: int, *, resumable: bool) -> None:
        session = self.shards[shard_id]
        connection = self._connection_of(shard_id)
        if not resumable:
            self._invalidate(session)
        connection.send({"op": protocol.Op.INVALID_SESSION, "d": resumable, "s": None, "t": None})

    def force_close(self, shard_id: int, code: int, reason: str | None = None) -> None:
        self._close(self._connection_of(shard_id), code, reason)

    def request_heartbeat(self, shard_id: int) -> None:
        self._connection_of(shard_id).send({"op": protocol.Op.HEARTBEAT, "d": None})

    def _connection_of(self, shard_id: int) -> Connection:
        session = self.shards.get(shard_id)
        if session is None or session.connection is None:
            raise LookupError(f"shard {shard_id} is not connected")
        return session.connection


def _mentions(message: Json, user_id: int) -> bool:
    return any(m.get("id") == str(user_id) for m in message.get("mentions", ()))
