"""A Lavalink v4 node on 127.0.0.1, written from Lavalink's documentation (docs/api).

REST (``/v4/info``, ``/version``, ``/v4/stats``, ``/v4/loadtracks``, ``/v4/decodetrack(s)``,
``/v4/sessions/{id}`` and its players) and the WebSocket (``/v4/websocket``: ``ready``,
``stats``, ``playerUpdate``, ``event``), with Lavalink's checks and answers: the password
(401 missing, 403 wrong on REST; 401 on the handshake), ``User-Id`` (400), Spring-style error
bodies, ``Lavalink-Api-Version: 4`` on every response, voice fields all required (400), 404
``Session not found`` while a session is paused for resuming. Playback is simulated in real
time: a track's position advances unless paused, it ends with ``TrackEndEvent`` (``finished``,
``replaced``, ``stopped``, ``loadFailed``), and players report ``playerUpdate`` every
``player_update_interval`` seconds. Session resuming: a client that set ``resuming`` may
reconnect with ``Session-Id`` within ``timeout`` and finds its players still playing; the
events of the gap are replayed. :meth:`restart` is a node restart: every session and player
is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import secrets
import string
import time
import typing

import aiohttp
from aiohttp import web

from playground.lavalink import tracks

__all__: typing.Sequence[str] = ("LavalinkEmulator",)

_LOGGER = logging.getLogger("playground.lavalink")
Json = dict[str, typing.Any]
_FRIENDLY = "com.sedmelluq.discord.lavaplayer.tools.FriendlyException"
_SESSION_ALPHABET = string.ascii_lowercase + string.digits
_VOICE_FIELDS = ("token", "endpoint", "sessionId", "channelId")
_FILTERS = (
    "volume",
    "equalizer",
    "karaoke",
    "timescale",
    "tremolo",
    "vibrato",
    "distortion",
    "rotation",
    "channelMix",
    "lowPass",
)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclasses.dataclass(eq=False)
class Player:
    guild_id: int
    session: Session
    encoded: str | None = None
    info: tracks.TrackInfo | None = None
    user_data: Json = dataclasses.field(default_factory=dict)
    base_position: int = 0
    started_at: float = 0.0
    paused: bool = False
    volume: int = 100
    filters: Json = dataclasses.field(default_factory=dict)
    voice: Json = dataclasses.field(
        default_factory=lambda: {"token": "", "endpoint": "", "sessionId": "", "channelId": None}
    )
    end_time: int | None = None
    connected: bool = False
    _end: asyncio.TimerHandle | None = None

    @property
    def position(self) -> int:
        if self.info is None:
            return 0
        if self.paused:
            return self.base_position
        elapsed = int((time.monotonic() - self.started_at) * 1000)
        return min(self.base_position + elapsed, self.info.length)

    def state(self) -> Json:
        return {
            "time": int(time.time() * 1000),
            "position": self.position,
            "connected": self.connected,
            "ping": 12 if self.connected else -1,
        }

    def track(self) -> Json | None:
        if self.encoded is None or self.info is None:
            return None
        info = dataclasses.replace(self.info, position=self.position)
        return tracks.track_json(self.encoded, info, self.user_data)

    def json(self) -> Json:
        return {
            "guildId": str(self.guild_id),
            "track": self.track(),
            "volume": self.volume,
            "paused": self.paused,
            "state": self.state(),
            "voice": dict(self.voice),
            "filters": self.filters,
        }


@dataclasses.dataclass(eq=False)
class Session:
    session_id: str
    user_id: int
    ws: web.WebSocketResponse | None = None
    resuming: bool = False
    timeout: int = 60
    players: dict[int, Player] = dataclasses.field(default_factory=dict)
    pending: list[Json] = dataclasses.field(default_factory=list)
    expiry: asyncio.TimerHandle | None = None
    client_name: str = ""


class LavalinkEmulator:
    """One Lavalink node. Tests add tracks, then point clients at :attr:`url`."""

    def __init__(
        self,
        *,
        password: str = "youshallnotpass",  # noqa: S107 - Lavalink's documented example
        player_update_interval: float = 5.0,
        stats_interval: float = 60.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.password = password
        self.player_update_interval = player_update_interval
        self.stats_interval = stats_interval
        self.host = host
        self.port = port
        self.catalog: dict[str, tracks.TrackInfo] = {}
        self.sessions: dict[str, Session] = {}
        #: Every REST call: (method, path, body) — what clients did, for assertions.
        self.requests: list[tuple[str, str, Json | None]] = []
        self.connects = 0
        self.resumes = 0
        self.started_at = time.monotonic()
        self._runner: web.AppRunner | None = None
        self._loops: list[asyncio.Task[None]] = []
        self._ids = itertools.count(1)

    # --- the test's side ------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def add_track(
        self,
        title: str,
        length: int = 180_000,
        *,
        identifier: str | None = None,
        author: str = "Shardline",
        stream: bool = False,
    ) -> tracks.TrackInfo:
        """A track that ``loadtracks`` finds by identifier, URL, or a search for its title."""
        identifier = identifier or f"track{next(self._ids)}"
        info = tracks.TrackInfo(
            identifier=identifier,
            title=title,
            author=author,
            length=length,
            uri=f"https://media.example/{identifier}.mp3",
            is_stream=stream,
        )
        self.catalog[identifier] = info
        return info

    def player(self, guild_id: int) -> Player | None:
        for session in self.sessions.values():
            if guild_id in session.players:
                return session.players[guild_id]
        return None

    def live_sessions(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.ws is not None]

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_get("/v4/websocket", self._websocket)
        app.router.add_get("/version", self._version)
        app.router.add_get("/v4/info", self._info)
        app.router.add_get("/v4/stats", self._stats_route)
        app.router.add_get("/v4/loadtracks", self._loadtracks)
        app.router.add_get("/v4/decodetrack", self._decodetrack)
        app.router.add_post("/v4/decodetracks", self._decodetracks)
        app.router.add_patch("/v4/sessions/{session}", self._update_session)
        app.router.add_get("/v4/sessions/{session}/players", self._players)
        app.router.add_get("/v4/sessions/{session}/players/{guild}", self._get_player)
        app.router.add_patch("/v4/sessions/{session}/players/{guild}", self._update_player)
        app.router.add_delete("/v4/sessions/{session}/players/{guild}", self._destroy_player)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # noqa: SLF001 - the bound port when 0 was asked
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.started_at = time.monotonic()
        self._loops = [asyncio.get_running_loop().create_task(self._periodic())]

    async def close(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for session in list(self.sessions.values()):
            self._destroy_session(session)
            if session.ws is not None:
                await session.ws.close(code=aiohttp.WSCloseCode.GOING_AWAY)
        self.sessions.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def restart(self, downtime: float = 0.5) -> None:
        """What a Lavalink process restart does: every session and player is gone."""
        await self.close()
        await asyncio.sleep(downtime)
        await self.start()

    # --- HTTP plumbing ----------------------------------------------------------------------

    @web.middleware
    async def _middleware(
        self,
        request: web.Request,
        handler: typing.Callable[[web.Request], typing.Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.path != "/v4/websocket":
            given = request.headers.get("Authorization")
            if given is None:
                return self._stamp(web.Response(status=401))
            if given != self.password:
                return self._stamp(web.Response(status=403))
        try:
            response = await handler(request)
        except _HTTPError as exc:
            response = web.json_response(
                {
                    "timestamp": int(time.time() * 1000),
                    "status": exc.status,
                    "error": _REASONS.get(exc.status, "Error"),
                    "message": exc.message,
                    "path": request.path,
                },
                status=exc.status,
            )
        return self._stamp(response)

    @staticmethod
    def _stamp(response: web.StreamResponse) -> web.StreamResponse:
        response.headers["Lavalink-Api-Version"] = "4"
        return response

    async def _body(self, request: web.Request) -> Json:
        try:
            body = await request.json()
        except ValueError:
            raise _HTTPError(400, "Malformed JSON request body") from None
        if not isinstance(body, dict):
            raise _HTTPError(400, "Expected a JSON object")
        self.requests.append((request.method, request.path, body))
        return body

    def _session(self, request: web.Request) -> Session:
        session = self.sessions.get(request.match_info["session"])
        if session is None or session.ws is None:
            raise _HTTPError(404, "Session not found")
        return session

    @staticmethod
    def _guild(request: web.Request) -> int:
        try:
            return int(request.match_info["guild"])
        except ValueError:
            raise _HTTPError(400, "guildId must be a number") from None

    # --- WebSocket --------------------------------------------------------------------------

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != self.password:
            return self._stamp(web.Response(status=401))
        try:
            user_id = int(request.headers.get("User-Id", "0"))
        except ValueError:
            user_id = 0
        if user_id == 0:
            return self._stamp(web.Response(status=400))
        wanted = request.headers.get("Session-Id")
        previous = self.sessions.get(wanted) if wanted else None
        resumed = previous is not None and previous.ws is None and previous.resuming
        ws = web.WebSocketResponse(heartbeat=None)
        ws.headers["Session-Resumed"] = "true" if resumed else "false"
        self._stamp(ws)
        await ws.prepare(request)
        self.connects += 1
        if resumed:
            assert previous is not None
            session = previous
            if session.expiry is not None:
                session.expiry.cancel()
                session.expiry = None
            session.ws = ws
            self.resumes += 1
            await ws.send_json({"op": "ready", "resumed": True, "sessionId": session.session_id})
            backlog, session.pending = session.pending, []
            for queued in backlog:
                await ws.send_json(queued)
            for player in session.players.values():
                await ws.send_json(self._player_update(player))
        else:
            session_id = "".join(secrets.choice(_SESSION_ALPHABET) for _ in range(16))
            session = Session(
                session_id, user_id, ws, client_name=request.headers.get("Client-Name", "")
            )
            self.sessions[session_id] = session
            await ws.send_json({"op": "ready", "resumed": False, "sessionId": session_id})
            await ws.send_json(self._stats_message(session))
        async for frame in ws:
            if frame.type == aiohttp.WSMsgType.TEXT:
                _LOGGER.warning("Lavalink v4 does not support websocket messages")
        if session.ws is ws:
            session.ws = None
            if session.resuming and session.session_id in self.sessions:
                session.expiry = asyncio.get_running_loop().call_later(
                    session.timeout, self._expire, session
                )
            else:
                self._destroy_session(session)
        return ws

    def _expire(self, session: Session) -> None:
        if session.ws is None:
            self._destroy_session(session)

    def _destroy_session(self, session: Session) -> None:
        for player in session.players.values():
            self._cancel_end(player)
        session.players.clear()
        if session.expiry is not None:
            session.expiry.cancel()
        self.sessions.pop(session.session_id, None)

    def _send(self, session: Session, message: Json) -> None:
        if session.ws is not None and not session.ws.closed:
            asyncio.get_running_loop().create_task(self._send_now(session.ws, message))
        elif session.ws is None and message["op"] != "playerUpdate":
            session.pending.append(message)  # paused for resuming: queued, playerUpdates dropped

    @staticmethod
    async def _send_now(ws: web.WebSocketResponse, message: Json) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_json(message)

    def _player_update(self, player: Player) -> Json:
        return {"op": "playerUpdate", "guildId": str(player.guild_id), "state": player.state()}

    def _event(self, player: Player, kind: str, **fields: typing.Any) -> None:
        self._send(
            player.session,
            {"op": "event", "type": kind, "guildId": str(player.guild_id), **fields},
        )

    async def _periodic(self) -> None:
        last_stats = time.monotonic()
        while True:
            await asyncio.sleep(self.player_update_interval)
            for session in list(self.sessions.values()):
                for player in session.players.values():
                    if player.info is not None:
                        self._send(session, self._player_update(player))
            if time.monotonic() - last_stats >= self.stats_interval:
                last_stats = time.monotonic()
                for session in self.live_sessions():
                    self._send(session, self._stats_message(session))

    # --- playback ---------------------------------------------------------------------------

    def _cancel_end(self, player: Player) -> None:
        if player._end is not None:  # noqa: SLF001 - the emulator's own record
            player._end.cancel()  # noqa: SLF001
            player._end = None  # noqa: SLF001

    def _schedule_end(self, player: Player) -> None:
        self._cancel_end(player)
        if player.info is None or player.paused or player.info.is_stream:
            return
        end = (
            player.info.length
            if player.end_time is None
            else min(player.end_time, player.info.length)
        )
        remaining = max(end - player.position, 0) / 1000
        player._end = asyncio.get_running_loop().call_later(remaining, self._finished, player)  # noqa: SLF001

    def _finished(self, player: Player) -> None:
        player._end = None  # noqa: SLF001
        self._end_track(player, "finished")

    def _end_track(self, player: Player, reason: str) -> None:
        track = player.track()
        self._cancel_end(player)
        player.encoded, player.info, player.base_position, player.user_data = None, None, 0, {}
        player.end_time = None
        if track is not None:
            self._event(player, "TrackEndEvent", track=track, reason=reason)

    def _play(
        self,
        player: Player,
        encoded: str,
        info: tracks.TrackInfo,
        *,
        position: int,
        end_time: int | None,
        user_data: Json,
        paused: bool,
    ) -> None:
        if player.info is not None:
            self._end_track(player, "replaced")
        player.encoded, player.info, player.user_data = encoded, info, user_data
        player.base_position, player.started_at = min(position, info.length), time.monotonic()
        player.paused, player.end_time = paused, end_time
        if info.identifier.startswith("fail"):
            track = player.track()
            player.encoded, player.info = None, None
            self._event(
                player,
                "TrackExceptionEvent",
                track=track,
                exception={
                    "message": "This track is not available",
                    "severity": "common",
                    "cause": f"{_FRIENDLY}: unavailable",
                    "causeStackTrace": "",
                },
            )
            self._event(player, "TrackEndEvent", track=track, reason="loadFailed")
            return
        self._event(player, "TrackStartEvent", track=player.track())
        self._send(player.session, self._player_update(player))
        self._schedule_end(player)

    # --- REST: information ------------------------------------------------------------------

    async def _version(self, request: web.Request) -> web.Response:
        del request
        return web.Response(text="4.2.2")

    async def _info(self, request: web.Request) -> web.Response:
        del request
        return web.json_response(
            {
                "version": {
                    "semver": "4.2.2",
                    "major": 4,
                    "minor": 2,
                    "patch": 2,
                    "preRelease": None,
                    "build": None,
                },
                "buildTime": 1_700_000_000_000,
                "git": {"branch": "emulator", "commit": "0000000", "commitTime": 1_700_000_000_000},
                "jvm": "emulated",
                "lavaplayer": "2.2.6",
                "sourceManagers": ["http", "youtube"],
                "filters": list(_FILTERS),
                "plugins": [],
            }
        )

    def _stats(self) -> Json:
        players = [p for s in self.live_sessions() for p in s.players.values()]
        return {
            "players": len(players),
            "playingPlayers": sum(1 for p in players if p.info is not None and not p.paused),
            "uptime": int((time.monotonic() - self.started_at) * 1000),
            "memory": {
                "free": 1 << 28,
                "used": 1 << 27,
                "allocated": 3 << 27,
                "reservable": 1 << 30,
            },
            "cpu": {"cores": 2, "systemLoad": 0.0, "lavalinkLoad": 0.0},
        }

    def _stats_message(self, session: Session) -> Json:
        del session
        return {"op": "stats", **self._stats(), "frameStats": None}

    async def _stats_route(self, request: web.Request) -> web.Response:
        del request
        return web.json_response(self._stats())

    # --- REST: tracks -----------------------------------------------------------------------

    def _loaded(self, info: tracks.TrackInfo) -> Json:
        return tracks.track_json(tracks.encode(info), info)

    async def _loadtracks(self, request: web.Request) -> web.Response:
        identifier = request.query.get("identifier")
        if identifier is None:
            raise _HTTPError(400, "Required parameter 'identifier' is not present.")
        self.requests.append(("GET", request.path_qs, None))
        prefix, _, query = identifier.partition(":")
        if prefix in {"ytsearch", "ytmsearch", "scsearch"} and query:
            words = query.lower().split()
            found = [
                self._loaded(info)
                for info in self.catalog.values()
                if all(w in info.title.lower() for w in words)
            ]
            if found:
                return web.json_response({"loadType": "search", "data": found})
            return web.json_response({"loadType": "empty", "data": None})
        if identifier.startswith("error:"):
            return web.json_response(
                {
                    "loadType": "error",
                    "data": {
                        "message": "Something went wrong while looking up the track.",
                        "severity": "fault",
                        "cause": "java.lang.RuntimeException: emulated",
                        "causeStackTrace": "",
                    },
                }
            )
        for info in self.catalog.values():
            if identifier in {info.identifier, info.uri}:
                return web.json_response({"loadType": "track", "data": self._loaded(info)})
        return web.json_response({"loadType": "empty", "data": None})

    async def _decodetrack(self, request: web.Request) -> web.Response:
        encoded = request.query.get("encodedTrack") or request.query.get("track")
        if not encoded:
            raise _HTTPError(400, "No track to decode provided")
        return web.json_response(self._decoded(encoded))

    async def _decodetracks(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            raise _HTTPError(400, "Malformed JSON request body") from None
        if not isinstance(body, list) or not body:
            raise _HTTPError(400, "No tracks to decode provided")
        return web.json_response([self._decoded(str(e)) for e in body])

    @staticmethod
    def _decoded(encoded: str) -> Json:
        try:
            return tracks.track_json(encoded, tracks.decode(encoded))
        except ValueError as exc:
            raise _HTTPError(500, f"Failed to decode track: {exc}") from None

    # --- REST: sessions and players ---------------------------------------------------------

    async def _update_session(self, request: web.Request) -> web.Response:
        session = self._session(request)
        body = await self._body(request)
        if "resuming" in body:
            session.resuming = bool(body["resuming"])
        if "timeout" in body:
            session.timeout = int(body["timeout"])
        return web.json_response({"resuming": session.resuming, "timeout": session.timeout})

    async def _players(self, request: web.Request) -> web.Response:
        session = self._session(request)
        return web.json_response([p.json() for p in session.players.values()])

    async def _get_player(self, request: web.Request) -> web.Response:
        session = self._session(request)
        player = session.players.get(self._guild(request))
        if player is None:
            raise _HTTPError(404, "Player not found")
        return web.json_response(player.json())

    async def _destroy_player(self, request: web.Request) -> web.Response:
        session = self._session(request)
        self.requests.append(("DELETE", request.path, None))
        player = session.players.pop(self._guild(request), None)
        if player is not None and player.info is not None:
            self._end_track(player, "stopped")
        return web.Response(status=204)

    async def _update_player(self, request: web.Request) -> web.Response:
        """PATCH a player, in Lavalink's order: validate, voice, then the current track's
        state or a new track, volume, filters (``PlayerRestHandler``)."""
        session = self._session(request)
        guild_id = self._guild(request)
        body = await self._body(request)
        no_replace = request.query.get("noReplace", "false").lower() == "true"
        new_track = self._validate_update(body)
        player = session.players.get(guild_id)
        if player is None:
            player = session.players[guild_id] = Player(guild_id, session)
        if body.get("voice") is not None:
            player.voice = {f: str(body["voice"][f]) for f in _VOICE_FIELDS}
            player.connected = True
            self._send(session, self._player_update(player))
        if new_track is None:
            self._update_current(player, body)
        if "volume" in body:
            player.volume = max(0, min(int(body["volume"]), 1000))
        if body.get("filters") is not None:
            player.filters = body["filters"]
            self._send(session, self._player_update(player))
        if new_track is not None and not (no_replace and player.info is not None):
            self._start_new(player, new_track, body)
        return web.json_response(player.json())

    @staticmethod
    def _validate_update(body: Json) -> Json | None:
        """The 400s of an update; returns the new track asked for, if any."""
        track = body.get("track")
        if track is not None and ("encodedTrack" in body or "identifier" in body):
            raise _HTTPError(400, "Cannot specify both track and encodedTrack/identifier")
        if isinstance(track, dict) and "encoded" in track and "identifier" in track:
            raise _HTTPError(400, "Cannot specify both encodedTrack and identifier")
        if body.get("endTime") is not None and int(body["endTime"]) <= 0:
            raise _HTTPError(400, "End time must be greater than 0")
        voice = body.get("voice")
        if voice is not None and (
            not isinstance(voice, dict) or any(not voice.get(f) for f in _VOICE_FIELDS)
        ):
            raise _HTTPError(
                400, "token, endpoint, sessionId and channelId must be provided in voice state"
            )
        filters = body.get("filters")
        if filters is not None and (
            not isinstance(filters, dict)
            or any(k not in (*_FILTERS, "pluginFilters") for k in filters)
        ):
            raise _HTTPError(400, "Unknown filter")
        if isinstance(track, dict) and ("encoded" in track or "identifier" in track):
            return track
        if "encodedTrack" in body or "identifier" in body:
            return {"encoded": body.get("encodedTrack"), "identifier": body.get("identifier")}
        return None

    def _update_current(self, player: Player, body: Json) -> None:
        """No new track: pause, user data, seek and end time apply to the current one."""
        if "paused" in body and player.info is not None:
            if body["paused"] and not player.paused:
                player.base_position, player.paused = player.position, True
            elif not body["paused"] and player.paused:
                player.paused, player.started_at = False, time.monotonic()
            self._schedule_end(player)
        elif "paused" in body:
            player.paused = bool(body["paused"])
        if player.info is None:
            return
        track = body.get("track")
        if isinstance(track, dict) and "userData" in track:
            player.user_data = dict(track["userData"] or {})
        if "position" in body:
            player.base_position = max(0, min(int(body["position"]), player.info.length))
            player.started_at = time.monotonic()
            self._schedule_end(player)
            self._send(player.session, self._player_update(player))
        if "endTime" in body:
            player.end_time = body["endTime"]
            self._schedule_end(player)

    def _start_new(self, player: Player, new_track: Json, body: Json) -> None:
        encoded = new_track.get("encoded")
        identifier = new_track.get("identifier")
        if encoded is None and identifier is None:
            if player.info is not None:
                self._end_track(player, "stopped")
            return
        if encoded is None:
            found = [i for i in self.catalog.values() if identifier in {i.identifier, i.uri}]
            if not found:
                raise _HTTPError(400, "No matches found for identifier")
            info = found[0]
            encoded = tracks.encode(info)
        else:
            try:
                info = tracks.decode(str(encoded))
            except ValueError as exc:
                raise _HTTPError(500, f"Failed to decode track: {exc}") from None
        self._play(
            player,
            str(encoded),
            info,
            position=int(body.get("position", 0) or 0),
            end_time=body.get("endTime"),
            user_data=dict(new_track.get("userData") or {}),
            paused=bool(body.get("paused", False)),
        )


_REASONS: typing.Final[dict[int, str]] = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    500: "Internal Server Error",
}
