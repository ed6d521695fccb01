"""``bot.voice``: Lavalink players controlled from any worker replica, and Lavalink's events.

The gateway holding a guild's shard joins voice (op 4, sent from here) and hands Discord's voice
events to Lavalink; the player's node and session are in the guild's Redis record
(``shared.voice.PlayerRecord``), so every replica PATCHes the same player::

    player = bot.voice.player(guild_id)
    await player.connect(channel_id)               # joins; returns once Lavalink has the voice
    result = await bot.voice.load("ytsearch:never gonna give you up")
    await player.play(result["data"][0])
    await player.pause(); await player.seek(30_000); await player.set_volume(80)

    @bot.voice.listen("TrackEndEvent")
    async def on_end(event: LavalinkEvent) -> None: ...   # on whichever replica takes it
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import typing

from shared import gateway_commands, voice

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import envelope
    from shared import keys as keys_module
    from worker import traits

__all__: typing.Sequence[str] = (
    "LavalinkEvent",
    "RemotePlayer",
    "Voice",
    "VoiceUnavailableError",
)

_LOGGER = logging.getLogger("shardline.worker.voice")
#: How long ``connect`` waits for Discord's voice events to reach Lavalink through the gateway.
CONNECT_TIMEOUT: typing.Final[float] = 10.0
#: How long a player call waits for a player whose session is being moved (hand-off, restart).
MOVE_TIMEOUT: typing.Final[float] = 10.0
_POLL: typing.Final[float] = 0.05

Handler = typing.Callable[["LavalinkEvent"], typing.Awaitable[None]]


class VoiceUnavailableError(RuntimeError):
    """Voice cannot be used right now; the message can be shown to a user as it is."""


@dataclasses.dataclass(frozen=True, slots=True)
class LavalinkEvent:
    """One of Lavalink's messages for a guild (``TrackEndEvent``, ``playerUpdate`` ...)."""

    type: str
    guild_id: int
    data: dict[str, typing.Any]
    app: traits.VoiceApp

    @property
    def track(self) -> dict[str, typing.Any] | None:
        return typing.cast("dict[str, typing.Any] | None", self.data.get("track"))

    @property
    def reason(self) -> str | None:
        """A TrackEndEvent's reason: ``finished``, ``loadFailed``, ``stopped``, ``replaced``."""
        return typing.cast("str | None", self.data.get("reason"))

    @property
    def may_start_next(self) -> bool:
        return self.reason in {"finished", "loadFailed"}


class Voice:
    def __init__(self, bot: traits.VoiceApp) -> None:
        self._bot = bot
        self.listeners: dict[str, list[Handler]] = {}
        self.rest: voice.LavalinkRest | None = None
        self._redis: aioredis.Redis | None = None
        self._keys: keys_module.RedisKeys | None = None

    def listen(self, *types: str) -> typing.Callable[[Handler], Handler]:
        """Handle Lavalink messages of these types: ``TrackStartEvent``, ``TrackEndEvent``,
        ``TrackExceptionEvent``, ``TrackStuckEvent``, ``WebSocketClosedEvent``,
        ``playerUpdate``."""

        def decorator(handler: Handler) -> Handler:
            for kind in types:
                self.listeners.setdefault(kind, []).append(handler)
            return handler

        return decorator

    def listened_events(self) -> list[str]:
        """Envelope names the worker group's queue must bind (selective forwarding)."""
        return sorted(f"{voice.EVENT_PREFIX}{kind}" for kind in self.listeners)

    def attach(
        self, rest: voice.LavalinkRest, redis: aioredis.Redis, keys: keys_module.RedisKeys
    ) -> None:
        self.rest, self._redis, self._keys = rest, redis, keys

    @property
    def available(self) -> bool:
        return self.rest is not None

    async def dispatch(self, item: envelope.EventEnvelope) -> None:
        kind = item.t[len(voice.EVENT_PREFIX) :]
        handlers = self.listeners.get(kind)
        if not handlers or not isinstance(item.d, dict) or "guildId" not in item.d:
            return
        event = LavalinkEvent(kind, int(item.d["guildId"]), item.d, self._bot)
        for handler in handlers:
            await handler(event)

    def _ready(self) -> tuple[voice.LavalinkRest, aioredis.Redis, keys_module.RedisKeys]:
        if self.rest is None or self._redis is None or self._keys is None:
            raise VoiceUnavailableError("Voice is not configured on this bot (LAVALINK_URL).")
        return self.rest, self._redis, self._keys

    async def load(self, query: str) -> dict[str, typing.Any]:
        """Lavalink's load result: ``{"loadType": track|playlist|search|empty|error, "data"}``."""
        rest, _, _ = self._ready()
        try:
            return await rest.load_tracks(query)
        except voice.LavalinkError as exc:
            raise VoiceUnavailableError("The music server is unreachable; try again soon.") from exc

    async def record(self, guild_id: int) -> voice.PlayerRecord | None:
        _, redis, keys = self._ready()
        return await voice.read_player(redis, keys, guild_id)

    def player(self, guild_id: int) -> RemotePlayer:
        return RemotePlayer(self, self._bot, guild_id)


class RemotePlayer:
    """A guild's player, wherever its Lavalink session is held."""

    def __init__(self, owner: Voice, bot: traits.VoiceApp, guild_id: int) -> None:
        self._voice = owner
        self._bot = bot
        self.guild_id = guild_id

    async def record(self) -> voice.PlayerRecord | None:
        return await self._voice.record(self.guild_id)

    async def connect(
        self, channel_id: int, *, timeout: float = CONNECT_TIMEOUT
    ) -> voice.PlayerRecord:
        """Join ``channel_id`` and wait until Lavalink has the voice connection."""
        self._voice._ready()  # noqa: SLF001 - fail before asking Discord anything
        try:
            await self._bot.shard_for(self.guild_id).update_voice_state(
                self.guild_id, channel_id, self_deaf=True
            )
        except gateway_commands.GatewayCommandError as exc:
            raise VoiceUnavailableError("I could not join that voice channel.") from exc
        deadline = time.monotonic() + timeout
        while True:
            record = await self.record()
            if record is not None and record.channel_id == str(channel_id) and record.session:
                break
            if time.monotonic() > deadline:
                raise VoiceUnavailableError("I could not join that voice channel in time.")
            await asyncio.sleep(_POLL)
        # Lavalink has the voice; it plays only once its socket to Discord's voice server is
        # open (Player State ``connected``). An unreachable voice server never opens: leave,
        # and say so, rather than claim to play into nothing.
        if await self._wait_connected(deadline):
            return record
        await self.disconnect()
        raise VoiceUnavailableError("I could not reach Discord's voice server; try again soon.")

    async def _wait_connected(self, deadline: float) -> bool:
        rest, _, _ = self._voice._ready()  # noqa: SLF001
        while True:
            record = await self.record()
            if record is not None and record.session:
                try:
                    player = await rest.get_player(record.node, record.session, self.guild_id)
                    if (player.get("state") or {}).get("connected"):
                        return True
                except voice.LavalinkError as exc:
                    if exc.status not in {0, 404}:
                        raise VoiceUnavailableError(
                            "The music server did not take that; try again soon."
                        ) from exc
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(_POLL)

    async def rejoin(self) -> bool:
        """Ask Discord for a new voice connection in the same channel (op 4 again): Discord
        sends a new voice server, which the gateway hands to Lavalink. False without one."""
        record = await self.record()
        if record is None or not record.channel_id:
            return False
        await self._bot.shard_for(self.guild_id).update_voice_state(
            self.guild_id, int(record.channel_id), self_deaf=True
        )
        return True

    async def disconnect(self) -> None:
        """Leave voice; the gateway destroys the player when Discord confirms."""
        await self._bot.shard_for(self.guild_id).update_voice_state(self.guild_id, None)

    async def play(
        self, track: dict[str, typing.Any], *, position: int = 0, no_replace: bool = False
    ) -> dict[str, typing.Any]:
        """Play a Lavalink track object (from :meth:`Voice.load`), replacing what plays."""
        body = {
            "track": {"encoded": track["encoded"], "userData": track.get("userData") or {}},
            "position": position,
            "paused": False,
        }
        return await self._patch(
            body,
            no_replace=no_replace,
            record={"track": track, "position": position, "at": time.time(), "paused": False},
        )

    async def pause(self, paused: bool = True) -> None:
        record = await self.record()
        position = record.position_now() if record is not None else 0
        await self._patch(
            {"paused": paused}, record={"paused": paused, "position": position, "at": time.time()}
        )

    async def resume(self) -> None:
        await self.pause(paused=False)

    async def seek(self, position: int) -> None:
        await self._patch(
            {"position": max(0, position)},
            record={"position": max(0, position), "at": time.time()},
        )

    async def set_volume(self, volume: int) -> None:
        volume = max(0, min(volume, 1000))
        await self._patch({"volume": volume}, record={"volume": volume})

    async def set_filters(self, filters: dict[str, typing.Any]) -> None:
        """Lavalink's filters object; replaces every filter (``{}`` clears them)."""
        await self._patch({"filters": filters}, record={"filters": filters})

    async def stop(self) -> None:
        await self._patch({"track": {"encoded": None}}, record={"track": None, "position": 0})

    async def _patch(
        self,
        body: dict[str, typing.Any],
        *,
        record: dict[str, typing.Any],
        no_replace: bool = False,
    ) -> dict[str, typing.Any]:
        rest, redis, keys = self._voice._ready()  # noqa: SLF001
        deadline = time.monotonic() + MOVE_TIMEOUT
        while True:
            current = await voice.read_player(redis, keys, self.guild_id)
            if current is None or not current.session:
                raise VoiceUnavailableError("I am not in a voice channel here.")
            try:
                answer = await rest.update_player(
                    current.node, current.session, self.guild_id, body, no_replace=no_replace
                )
                break
            except voice.LavalinkError as exc:
                # 404: the session is moving (a gateway hand-off, a Lavalink restart): the
                # gateway puts the player on its new session; follow it there.
                if exc.status != 404 or time.monotonic() > deadline:
                    raise VoiceUnavailableError(
                        "The music server did not take that; try again soon."
                    ) from exc
                _LOGGER.info(
                    "player moving between sessions; retrying", extra={"guild": self.guild_id}
                )
                await asyncio.sleep(0.25)
        await voice.write_player(redis, keys, self.guild_id, **record)
        return answer
