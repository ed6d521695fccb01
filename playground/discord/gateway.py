"""The emulated gateway: WebSocket sessions, as Discord's documentation describes them.

HELLO and heartbeats (a connection that stops heartbeating is closed with 4009 and stays
resumable), IDENTIFY and RESUME (:mod:`~playground.discord.handshakes`), 120 commands a minute
(4008), the commands of an identified session (:mod:`~playground.discord.gateway_commands`),
dispatches (:mod:`~playground.discord.dispatch`) numbered per session and kept for replay
(:mod:`~playground.discord.sessions`, with both transport compressions Discord offers).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing

import aiohttp
import orjson
from aiohttp import web

from playground.discord import (
    dispatch,
    gateway_commands,
    handshakes,
    protocol,
    records,
    sessions,
    world,
)
from playground.discord.gateway_options import GatewayOptions
from playground.discord.handshakes import gateway_url, resume_url

__all__: typing.Sequence[str] = ("GatewayOptions", "GatewayServer", "gateway_url", "resume_url")

Json = dict[str, typing.Any]


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
        self.sessions = sessions.GatewaySessions(records_, options)
        self.handshakes = handshakes.Handshakes(world_, records_, self.sessions, token=token)
        self.router = dispatch.DispatchRouter(world_, self.sessions)
        self.commands = gateway_commands.GatewayCommands(
            world_, records_, self.sessions, self.router
        )
        # What the emulator, REST and tests call, answered by the part that knows.
        self.dispatch = self.router.dispatch
        self.voice_server_update = self.commands.voice_server_update
        self.session_start_limit = self.handshakes.session_start_limit
        self.base_url = ""
        """The URL ``GET /gateway/bot`` hands out on the emulator's own address."""
        self.resume_url = ""
        """READY's ``resume_gateway_url`` on the emulator's own address (see :func:`resume_url`)."""
        self._sweeper: asyncio.Task[None] | None = None

    @property
    def shards(self) -> dict[int, sessions.Session]:
        """The live session of each shard id (of the layout identified last)."""
        return self.sessions.shards

    @property
    def voice_servers(self) -> dict[int, Json]:
        """Guild -> the last VOICE_SERVER_UPDATE sent to the bot (what Lavalink must be given)."""
        return self.commands.voice_servers

    # --- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_loop())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for connection in list(self.sessions.connections):
            connection.close(protocol.Close.UNKNOWN_ERROR, "emulator shutting down")
        await asyncio.sleep(0)
        for connection in list(self.sessions.connections):
            await connection.wait_closed()

    async def _sweep_loop(self) -> None:
        interval = min(self.options.heartbeat_interval / 4, 1.0)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            deadline = self.options.heartbeat_interval * self.options.heartbeat_tolerance
            for connection in list(self.sessions.connections):
                if not connection.closed and now - connection.last_heartbeat > deadline:
                    self.sessions.close(connection, protocol.Close.SESSION_TIMED_OUT)
            for session in list(self.sessions.by_id.values()):
                if (
                    session.disconnected_at is not None
                    and now - session.disconnected_at > self.options.session_timeout
                ):
                    self.sessions.invalidate(session)

    # --- connections ------------------------------------------------------------------------

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        # autoclose off: a client's close is acted on (session detached) before it is answered.
        ws = web.WebSocketResponse(autoping=True, autoclose=False, max_msg_size=4096 * 1024)
        await ws.prepare(request)
        version = request.query.get("v", str(protocol.API_VERSION))
        compress = request.query.get("compress")
        supported = compress in (None, "zlib-stream", "zstd-stream")
        connection = sessions.Connection(
            ws, compress=compress if supported else None, path=request.path, host=request.host
        )
        self.sessions.connections.add(connection)
        try:
            if version != str(protocol.API_VERSION):
                self.sessions.close(connection, protocol.Close.INVALID_API_VERSION)
            elif request.query.get("encoding", "json") != "json":
                self.sessions.close(
                    connection, protocol.Close.DECODE_ERROR, "only json encoding here"
                )
            elif not supported:
                self.sessions.close(
                    connection, protocol.Close.DECODE_ERROR, f"unsupported {compress}"
                )
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
            self.sessions.detach(connection)
            self.sessions.connections.discard(connection)
            await connection.wait_closed()
            if not ws.closed:
                await ws.close()
        return ws

    async def _read_loop(self, connection: sessions.Connection) -> None:
        while not connection.closed:
            message = await connection.ws.receive()
            if message.type is aiohttp.WSMsgType.TEXT or message.type is aiohttp.WSMsgType.BINARY:
                self._receive(connection, message.data)
            elif message.type is aiohttp.WSMsgType.CLOSE:
                self._client_closed(connection, int(message.data))
                return
            else:
                return

    def _client_closed(self, connection: sessions.Connection, code: int) -> None:
        session = connection.session
        self.records.closes.append(
            records.CloseRecord(
                time.time(), session.shard_id if session else None, code, True, "client"
            )
        )
        self.sessions.detach(connection)
        if code in (1000, 1001) and session is not None:
            # Documented: closing with 1000 or 1001 invalidates the session.
            self.sessions.invalidate(session)

    def _receive(self, connection: sessions.Connection, data: str | bytes) -> None:
        now = time.monotonic()
        window = connection.received
        window.append(now)
        while window and now - window[0] > self.options.command_window:
            window.popleft()
        if len(window) > self.options.commands_per_minute:
            self.sessions.close(connection, protocol.Close.RATE_LIMITED)
            return
        try:
            payload = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.sessions.close(connection, protocol.Close.DECODE_ERROR)
            return
        if not isinstance(payload, dict) or "op" not in payload:
            self.sessions.close(connection, protocol.Close.DECODE_ERROR)
            return
        op = payload["op"]
        d = payload.get("d")
        if op not in protocol.CLIENT_OPS:
            self.sessions.close(connection, protocol.Close.UNKNOWN_OPCODE)
        elif op == protocol.Op.HEARTBEAT:
            connection.last_heartbeat = now
            connection.send({"op": protocol.Op.HEARTBEAT_ACK})
        elif op == protocol.Op.IDENTIFY:
            self.handshakes.identify(connection, d)
        elif op == protocol.Op.RESUME:
            self.handshakes.resume(connection, d)
        elif connection.session is None:
            self.sessions.close(connection, protocol.Close.NOT_AUTHENTICATED)
        else:
            self.commands.command(connection, connection.session, op, d)

    # --- control ----------------------------------------------------------------------------

    def session_of(self, shard_id: int) -> sessions.Session | None:
        return self.sessions.shards.get(shard_id)

    def force_reconnect(self, shard_id: int) -> None:
        connection = self.sessions.connection_of(shard_id)
        connection.send({"op": protocol.Op.RECONNECT, "d": None, "s": None, "t": None})

    def force_invalid_session(self, shard_id: int, *, resumable: bool) -> None:
        session = self.sessions.shards[shard_id]
        connection = self.sessions.connection_of(shard_id)
        if not resumable:
            self.sessions.invalidate(session)
        connection.send({"op": protocol.Op.INVALID_SESSION, "d": resumable, "s": None, "t": None})

    def force_close(self, shard_id: int, code: int, reason: str | None = None) -> None:
        self.sessions.close(self.sessions.connection_of(shard_id), code, reason)

    def request_heartbeat(self, shard_id: int) -> None:
        self.sessions.connection_of(shard_id).send({"op": protocol.Op.HEARTBEAT, "d": None})
