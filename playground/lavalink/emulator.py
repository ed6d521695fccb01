"""A Lavalink v4 node on 127.0.0.1, written from Lavalink's documentation (docs/api).

REST (``/v4/info``, ``/version``, ``/v4/stats``, ``/v4/loadtracks``, ``/v4/decodetrack(s)``,
``/v4/sessions/{id}`` and its players) and the WebSocket (``/v4/websocket``: ``ready``,
``stats``, ``playerUpdate``, ``event``), with Lavalink's checks and answers: the password
(401 missing, 403 wrong on REST; 401 on the handshake), ``User-Id`` (400), Spring-style error
bodies, ``Lavalink-Api-Version: 4`` on every response, voice fields all required (400), 404
``Session not found`` while a session is paused for resuming. Playback is simulated in real
time: a track's position advances unless paused, it ends with ``TrackEndEvent`` (``finished``,
``replaced``, ``stopped``, ``loadFailed``), and players report ``playerUpdate`` every
``player_update_interval`` seconds. Voice connects only to a reachable voice server
(``unreachable_endpoints``), and Discord closing it (:meth:`close_voice`) is a
``WebSocketClosedEvent``; a stalled track (:meth:`stall`, or an identifier starting with
``stuck``) is a ``TrackStuckEvent``. Session resuming: a client that set ``resuming`` may
reconnect with ``Session-Id`` within ``timeout`` and finds its players still playing; the
events of the gap are replayed. :meth:`restart` is a node restart: every session and player
is gone.

The parts: :mod:`~playground.lavalink.rest` (what every answer shares),
:mod:`~playground.lavalink.rest_info`, :mod:`~playground.lavalink.rest_tracks`,
:mod:`~playground.lavalink.rest_players`, :mod:`~playground.lavalink.websocket`,
:mod:`~playground.lavalink.playback`, over the state in :mod:`~playground.lavalink.node`.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import typing

import aiohttp
from aiohttp import web

from playground.lavalink import (
    node,
    playback,
    rest,
    rest_info,
    rest_players,
    rest_tracks,
    tracks,
    websocket,
)

__all__: typing.Sequence[str] = ("LavalinkEmulator",)


class LavalinkEmulator(node.NodeState):
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
        super().__init__(
            password=password,
            player_update_interval=player_update_interval,
            stats_interval=stats_interval,
        )
        self.host = host
        self.port = port
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

    # --- failure paths -----------------------------------------------------------------------

    def close_voice(
        self,
        guild_id: int,
        code: int = 4006,
        reason: str = "Your session is no longer valid.",
        *,
        by_remote: bool = True,
    ) -> None:
        """Discord closes the guild's voice WebSocket (``WebSocketClosedEvent``)."""
        player = self.player(guild_id)
        assert player is not None, f"no player for guild {guild_id}"
        playback.close_voice(
            player, code, reason, by_remote=by_remote, delay=self.voice_connect_delay
        )

    def stall(self, guild_id: int) -> None:
        """The guild's track stops getting audio: ``TrackStuckEvent`` after the threshold."""
        player = self.player(guild_id)
        assert player is not None, f"no player for guild {guild_id}"
        playback.stall(player, self.stuck_threshold_ms)

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[rest.middleware])
        app[node.NODE] = self
        app.router.add_get("/v4/websocket", websocket.websocket)
        app.router.add_get("/version", rest_info.version)
        app.router.add_get("/v4/info", rest_info.info)
        app.router.add_get("/v4/stats", rest_info.stats)
        app.router.add_get("/v4/loadtracks", rest_tracks.loadtracks)
        app.router.add_get("/v4/decodetrack", rest_tracks.decodetrack)
        app.router.add_post("/v4/decodetracks", rest_tracks.decodetracks)
        app.router.add_patch("/v4/sessions/{session}", rest_players.update_session)
        app.router.add_get("/v4/sessions/{session}/players", rest_players.list_players)
        app.router.add_get("/v4/sessions/{session}/players/{guild}", rest_players.get_player)
        app.router.add_patch("/v4/sessions/{session}/players/{guild}", rest_players.update_player)
        app.router.add_delete("/v4/sessions/{session}/players/{guild}", rest_players.destroy_player)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, reuse_address=True)
        await site.start()
        server = site._server  # noqa: SLF001 - the bound port when 0 was asked
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.started_at = time.monotonic()
        self._loops = [asyncio.get_running_loop().create_task(websocket.periodic(self))]

    async def close(self) -> None:
        for loop in self._loops:
            loop.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        for session in list(self.sessions.values()):
            self.destroy_session(session)
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
