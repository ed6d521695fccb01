"""Gateway sessions and the WebSockets they run on, as Discord's documentation describes them.

A session outlives its connections until it is invalidated or times out; each shard layout
(``shard_id``, ``shard_count``) has at most one live session. Frames go out through a queue in
order, in either transport compression Discord offers: zlib-stream (one deflate stream, each
message ending in a sync flush) and zstd-stream (one zstd stream, each message a flushed block).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
import sys
import time
import typing
import zlib

import aiohttp
import orjson

if sys.version_info >= (3, 14):
    from compression import zstd
else:
    from backports import zstd

from playground.discord import protocol, records

if typing.TYPE_CHECKING:
    from aiohttp import web

    from playground.discord import gateway_options

Json = dict[str, typing.Any]
_CLOSE: typing.Final = object()


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


class GatewaySessions:
    """Every live session (by id, by shard, by layout) and open connection of the gateway; how
    a connection is closed (and recorded) and a session ended."""

    def __init__(self, records_: records.Records, options: gateway_options.GatewayOptions) -> None:
        self.records = records_
        self.options = options
        self.by_id: dict[str, Session] = {}
        self.shards: dict[int, Session] = {}
        """The live session of each shard id (of the layout identified last)."""
        self.layouts: dict[tuple[int, int], Session] = {}
        """Every live session by ``(shard_id, shard_count)``: Discord lets two shard layouts run
        side by side (zero-downtime re-sharding), each getting its own guilds' events."""
        self.connections: set[Connection] = set()

    def close(self, connection: Connection, code: int, reason: str | None = None) -> None:
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
        self.detach(connection)

    def detach(self, connection: Connection) -> None:
        session = connection.session
        if session is not None and session.connection is connection:
            session.connection = None
            session.disconnected_at = time.monotonic()

    def invalidate(self, session: Session) -> None:
        session.invalid = True
        self.by_id.pop(session.session_id, None)
        layout = (session.shard_id, session.shard_count)
        if self.layouts.get(layout) is session:
            del self.layouts[layout]
        if self.shards.get(session.shard_id) is session:
            del self.shards[session.shard_id]
            others = [s for (sid, _), s in self.layouts.items() if sid == session.shard_id]
            if others:
                self.shards[session.shard_id] = others[-1]

    def open(self, shard_id: int, shard_count: int, intents: int) -> Session:
        """A session for ``[shard_id, shard_count]``, replacing that layout's previous one."""
        previous = self.layouts.get((shard_id, shard_count))
        if previous is not None:
            if previous.connection is not None:
                self.close(previous.connection, protocol.Close.UNKNOWN_ERROR, "replaced")
            self.invalidate(previous)
        session = Session(shard_id, shard_count, intents, self.options.replay_buffer)
        self.by_id[session.session_id] = session
        self.shards[shard_id] = session
        self.layouts[(shard_id, shard_count)] = session
        return session

    def dispatch_to(self, session: Session, event: str, data: Json) -> None:
        """Number a dispatch in the session's ``seq``, keep it for replay, send if connected."""
        session.seq += 1
        payload = {"op": protocol.Op.DISPATCH, "t": event, "s": session.seq, "d": data}
        session.buffer.append(payload)
        if session.connection is not None:
            session.connection.send(payload)

    def send_resumed(self, session: Session) -> None:
        """RESUMED, numbered in the session's ``seq`` but not kept for replay: it ends this
        connection's replay (discord-api-docs, Gateway, "Resuming": "the Gateway will send the
        missed events in order, finishing with a Resumed event to signal event replay has
        finished and that all subsequent events will be new"). A later RESUME, by another
        connection from an earlier seq, must not find it among the missed events: a client
        would take the rest of its replay for new events (soak seed 555678: two gateways
        resuming one session in turn published a replay as new, and it ran twice)."""
        session.seq += 1
        payload = {
            "op": protocol.Op.DISPATCH, "t": "RESUMED", "s": session.seq,
            "d": {"_trace": ["emulator"]},
        }  # fmt: skip
        if session.connection is not None:
            session.connection.send(payload)

    def connection_of(self, shard_id: int) -> Connection:
        session = self.shards.get(shard_id)
        if session is None or session.connection is None:
            raise LookupError(f"shard {shard_id} is not connected")
        return session.connection
