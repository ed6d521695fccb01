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
        # --- knobs for failure paths ---
        #: Voice endpoints (fnmatch patterns: ``*.discord.media:443``) nothing answers at:
        #: a player given one never connects (``connected: false``, ``ping: -1``).
        self.unreachable_endpoints: set[str] = set()
        #: Seconds a reachable voice connection takes to open.
        self.voice_connect_delay = 0.05
        #: Lavalink's ``trackStuckThresholdMs`` (application.yml, default 10 s): how long a
        #: track gets no audio before ``TrackStuckEvent``.
        self.stuck_threshold_ms = 10_000
        #: Filters disabled in the node's config (``lavalink.server.filters``).
        self.disabled_filters: set[str] = set()
        #: frameStats: seconds a player must have played to count (Lavalink: a full minute),
        #: and frames nulled per window by every connected player.
        self.frame_window = 60.0
        self.nulled_frames = 0

    def player(self, guild_id: int) -> players.Player | None:
        for session in self.sessions.values():
            if guild_id in session.players:
                return session.players[guild_id]
        return None

    def live_sessions(self) -> list[players.Session]:
        return [s for s in self.sessions.values() if s.ws is not None]

    def destroy_session(self, session: players.Session) -> None:
        for player in session.players.values():
            playback.cancel_all(player)
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
        return {"op": "stats", **self.stats(), "frameStats": self.frame_stats(session)}

    def frame_stats(self, session: players.Session) -> Json | None:
        """docs/api/websocket.md "Frame Stats": per session, the average over its playing players
        of frames sent and nulled in the last window (3000 expected: one per 20 ms) and the
        deficit; ``null`` when no player has played a full window (Lavalink's StatsCollector
        counts only players whose AudioLossCounter has a full minute). A player without a voice
        connection is never asked for frames (0 sent); a stalled one provides none (nulled)."""
        expected = 3000
        now = time.monotonic()
        counted = [
            p
            for p in session.players.values()
            if p.info is not None and not p.paused and now - p.playing_since >= self.frame_window
        ]
        if not counted:
            return None
        sent = nulled = 0
        for player in counted:
            if not player.connected:
                continue
            if player.stalled:
                nulled += expected
            else:
                sent += expected - self.nulled_frames
                nulled += self.nulled_frames
        deficit = len(counted) * expected - (sent + nulled)
        n = len(counted)
        return {"sent": sent // n, "nulled": nulled // n, "deficit": deficit // n}


#: The node an application serves, for its handlers.
NODE: typing.Final = web.AppKey("node", NodeState)
