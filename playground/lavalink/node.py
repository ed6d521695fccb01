"""What a Lavalink node knows: its tracks, its sessions and their players, what clients asked."""

from __future__ import annotations

import time
import typing

from aiohttp import web

from playground.lavalink import playback

if typing.TYPE_CHECKING:
    from playground.lavalink import players, tracks

Json = dict[str, typing.Any]


class NodeState:
    """A node's state, shared by its REST routes and WebSocket."""

    def __init__(
        self, *, password: str, player_update_interval: float, stats_interval: float
    ) -> None:
        self.password = password
        self.player_update_interval = player_update_interval
        self.stats_interval = stats_interval
        self.catalog: dict[str, tracks.TrackInfo] = {}
        self.sessions: dict[str, players.Session] = {}
        #: Every REST call: (method, path, body) — what clients did, for assertions.
        self.requests: list[tuple[str, str, Json | None]] = []
        self.connects = 0
        self.resumes = 0
        self.started_at = time.monotonic()

    def player(self, guild_id: int) -> players.Player | None:
        for session in self.sessions.values():
            if guild_id in session.players:
                return session.players[guild_id]
        return None

    def live_sessions(self) -> list[players.Session]:
        return [s for s in self.sessions.values() if s.ws is not None]

    def destroy_session(self, session: players.Session) -> None:
        for player in session.players.values():
            playback.cancel_end(player)
        session.players.clear()
        if session.expiry is not None:
            session.expiry.cancel()
        self.sessions.pop(session.session_id, None)

    def stats(self) -> Json:
        live = [p for s in self.live_sessions() for p in s.players.values()]
        return {
            "players": len(live),
            "playingPlayers": sum(1 for p in live if p.info is not None and not p.paused),
            "uptime": int((time.monotonic() - self.started_at) * 1000),
            "memory": {
                "free": 1 << 28,
                "used": 1 << 27,
                "allocated": 3 << 27,
                "reservable": 1 << 30,
            },
            "cpu": {"cores": 2, "systemLoad": 0.0, "lavalinkLoad": 0.0},
        }

    def stats_message(self, session: players.Session) -> Json:
        del session
        return {"op": "stats", **self.stats(), "frameStats": None}


#: The node an application serves, for its handlers.
NODE: typing.Final = web.AppKey("node", NodeState)
