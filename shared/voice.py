"""Voice, shared by gateways and workers: a guild's Lavalink player as Redis records it, and
Lavalink's REST API.

Gateways hold the Lavalink sessions (one WebSocket each, where player events arrive) and
forward the bot's voice events; workers control players over REST. Neither owns the other's
objects: the player of a guild is a Redis hash (:class:`PlayerRecord`) that says which node
and session it lives in, what plays and where it was, so that any process can act on it and a
gateway can recreate it on a new session (after a Lavalink restart) at its position.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import typing

import aiohttp
import orjson

from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import config
    from shared import keys as keys_module

__all__: typing.Sequence[str] = (
    "EVENT_PREFIX",
    "LavalinkError",
    "LavalinkRest",
    "PlayerRecord",
    "player_fields",
    "read_player",
    "write_player",
)

#: Envelope names of Lavalink's messages: ``lavalink.TrackEndEvent``, ``lavalink.playerUpdate``.
EVENT_PREFIX: typing.Final[str] = "lavalink."
_REQUEST_TIMEOUT: typing.Final[float] = 10.0


@dataclasses.dataclass(slots=True)
class PlayerRecord:
    """A guild's player. Voice fields come from the gateway; track state from whoever plays."""

    guild_id: int
    node: str = ""
    session: str = ""
    channel_id: str = ""
    voice_session: str = ""
    token: str = ""
    endpoint: str = ""
    track: dict[str, typing.Any] | None = None
    position: int = 0
    at: float = 0.0  # when ``position`` was true (epoch seconds)
    paused: bool = False
    volume: int = 100
    filters: dict[str, typing.Any] = dataclasses.field(default_factory=dict)
    #: False once Lavalink reported its voice connection to Discord closed (a
    #: ``WebSocketClosedEvent``, a ``playerUpdate`` with ``connected: false``); true again at
    #: its next ``playerUpdate`` with ``connected: true``. Unknown (no report yet) reads true.
    connected: bool = True

    @property
    def voice(self) -> dict[str, str] | None:
        """Lavalink's ``voice`` object, once both of Discord's voice events have arrived."""
        fields = {
            "token": self.token,
            "endpoint": self.endpoint,
            "sessionId": self.voice_session,
            "channelId": self.channel_id,
        }
        return fields if all(fields.values()) else None

    def position_now(self, now: float | None = None) -> int:
        """Where the track is now, from the last known position (it advances unless paused)."""
        if self.track is None:
            return 0
        if self.paused or not self.at:
            return self.position
        elapsed = int(((time.time() if now is None else now) - self.at) * 1000)
        length = int(self.track.get("info", {}).get("length") or 0)
        position = self.position + max(elapsed, 0)
        return min(position, length) if length else position

    def restore_body(self) -> dict[str, typing.Any]:
        """The PATCH that recreates this player on a new session: voice, then what played."""
        body: dict[str, typing.Any] = {"volume": self.volume, "filters": self.filters}
        if self.voice is not None:
            body["voice"] = self.voice
        if self.track is not None:
            body["track"] = {
                "encoded": self.track["encoded"],
                "userData": self.track.get("userData") or {},
            }
            body["position"] = self.position_now()
            body["paused"] = self.paused
        return body


_JSON_FIELDS: typing.Final = frozenset({"track", "filters"})
_INT_FIELDS: typing.Final = frozenset({"position", "volume"})


def _encode(name: str, value: typing.Any) -> str:
    if name in _JSON_FIELDS:
        return orjson.dumps(value).decode()
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


async def read_player(
    redis: aioredis.Redis, keys: keys_module.RedisKeys, guild_id: int
) -> PlayerRecord | None:
    raw = await redis.hgetall(keys.voice_player(guild_id))
    if not raw:
        return None
    values = redis_client.text_map(raw)
    record = PlayerRecord(guild_id)
    for field in dataclasses.fields(PlayerRecord):
        if field.name == "guild_id" or field.name not in values:
            continue
        text = values[field.name]
        value: typing.Any
        if field.name in _JSON_FIELDS:
            value = orjson.loads(text) if text else None
            if field.name == "filters" and value is None:
                value = {}
        elif field.name in _INT_FIELDS:
            value = int(text)
        elif field.name == "at":
            value = float(text)
        elif field.name in {"paused", "connected"}:
            value = text == "1"
        else:
            value = text
        setattr(record, field.name, value)
    return record


def player_fields(**fields: typing.Any) -> dict[typing.Any, typing.Any]:
    """Redis hash fields of a player record (for ``HSET``, in a pipeline or not)."""
    return {name: _encode(name, value) for name, value in fields.items()}


async def write_player(
    redis: aioredis.Redis, keys: keys_module.RedisKeys, guild_id: int, **fields: typing.Any
) -> None:
    """Set some fields of a guild's player record."""
    await redis.hset(keys.voice_player(guild_id), mapping=player_fields(**fields))


class LavalinkError(Exception):
    """A Lavalink node answered an error (``status``, Lavalink's ``message``) or was away."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"Lavalink {status}: {message}" if status else f"Lavalink: {message}")
        self.status = status
        self.message = message


class LavalinkRest:
    """Lavalink's REST API for the configured nodes (v4), with the password."""

    def __init__(self, settings: config.LavalinkSettings) -> None:
        self.settings = settings
        self._http: aiohttp.ClientSession | None = None

    @property
    def nodes(self) -> tuple[str, ...]:
        return self.settings.urls

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=_REQUEST_TIMEOUT),
            headers={"Authorization": self.settings.password.reveal()},
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def request(
        self,
        method: str,
        node: str,
        path: str,
        *,
        json: typing.Any = None,
        params: dict[str, str] | None = None,
    ) -> typing.Any:
        if self._http is None:
            raise LavalinkError(0, "not started")
        try:
            async with self._http.request(
                method, f"{node}{path}", json=json, params=params
            ) as response:
                body = await response.read()
                if response.status >= 400:
                    message = response.reason or ""
                    with contextlib.suppress(orjson.JSONDecodeError, AttributeError):
                        message = orjson.loads(body).get("message") or message
                    raise LavalinkError(response.status, message)
                return orjson.loads(body) if body else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise LavalinkError(0, f"node {node} unreachable ({type(exc).__name__})") from None

    async def load_tracks(self, query: str) -> dict[str, typing.Any]:
        """``GET /v4/loadtracks`` on the first node that answers."""
        error: LavalinkError | None = None
        for node in self.nodes:
            try:
                return typing.cast(
                    "dict[str, typing.Any]",
                    await self.request("GET", node, "/v4/loadtracks", params={"identifier": query}),
                )
            except LavalinkError as exc:
                error = exc
        assert error is not None
        raise error

    async def update_player(
        self,
        node: str,
        session: str,
        guild_id: int,
        body: dict[str, typing.Any],
        *,
        no_replace: bool = False,
    ) -> dict[str, typing.Any]:
        params = {"noReplace": "true"} if no_replace else None
        return typing.cast(
            "dict[str, typing.Any]",
            await self.request(
                "PATCH",
                node,
                f"/v4/sessions/{session}/players/{guild_id}",
                json=body,
                params=params,
            ),
        )

    async def get_player(self, node: str, session: str, guild_id: int) -> dict[str, typing.Any]:
        return typing.cast(
            "dict[str, typing.Any]",
            await self.request("GET", node, f"/v4/sessions/{session}/players/{guild_id}"),
        )

    async def destroy_player(self, node: str, session: str, guild_id: int) -> None:
        await self.request("DELETE", node, f"/v4/sessions/{session}/players/{guild_id}")
