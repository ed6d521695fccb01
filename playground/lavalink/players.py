"""A Lavalink session and its players, as Lavalink v4's documentation shows them."""

from __future__ import annotations

import dataclasses
import time
import typing

from playground.lavalink import tracks

if typing.TYPE_CHECKING:
    import asyncio

    from aiohttp import web

Json = dict[str, typing.Any]
VOICE_FIELDS: typing.Final = ("token", "endpoint", "sessionId", "channelId")
FILTERS: typing.Final = (
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
    #: The track gets no audio (TrackStuckEvent): its position stops, it never ends by itself.
    stalled: bool = False
    #: When the track last started or resumed (frameStats count players playing a full window).
    playing_since: float = 0.0
    _end: asyncio.TimerHandle | None = None
    _timers: list[asyncio.TimerHandle] = dataclasses.field(default_factory=list)

    @property
    def position(self) -> int:
        if self.info is None:
            return 0
        if self.paused or self.stalled:
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
