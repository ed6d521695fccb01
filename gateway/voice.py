"""The gateway's side of voice: Lavalink sessions held with lavalink.py, voice events forwarded,
Lavalink's messages published as envelopes, players carried across hand-offs and restarts.

- One lavalink.py node per configured Lavalink URL; the session is made resumable
  (``PATCH /v4/sessions/{id}``) as soon as it is ready, and lavalink.py is told to resume it
  when its WebSocket reconnects (it would otherwise open a new session: see
  :func:`gateway.lavalink_adapter.resume_on_reconnect`).
- The bot's own VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE of held shards fill the guild's
  player record (``shared.voice.PlayerRecord``); once both have arrived the voice is PATCHed to
  the session the player lives in (a new player goes to this gateway's session).
- Every Lavalink ``event`` and ``playerUpdate`` is published as an envelope
  ``lavalink.<type>`` on the guild's shard, so any worker handles it; the player record follows
  track starts and ends and positions, so the player can be rebuilt anywhere.
- On SIGTERM the sessions are left to a successor (``keys.lavalink_orphans``): Lavalink keeps
  their players playing for ``LAVALINK_RESUME_TIMEOUT``; a starting gateway resumes one with
  ``Session-Id`` (same session, same players, music never stops). Sessions nobody resumes, and
  sessions of a gateway that died, are rebuilt by a live gateway on its own session.
- A new session where an old one was expected (Lavalink restarted) gets the old session's
  players recreated, each at its position.

lavalink.py players are never created: their auto-advance and node migration would fight the
queue the workers keep in Redis. The node, its WebSocket and its typed events are used.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import typing
import urllib.parse

import lavalink  # type: ignore[import-untyped]
import orjson

from gateway import lavalink_adapter
from shared import lifecycle, redis_client, sharding, voice

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway import publisher as publisher_module
    from shared import config
    from shared import keys as keys_module

__all__: typing.Sequence[str] = ("VoiceBridge",)

_LOGGER = logging.getLogger("shardline.gateway.voice")
_VOICE_EVENTS: typing.Final[frozenset[str]] = frozenset(
    {"VOICE_STATE_UPDATE", "VOICE_SERVER_UPDATE"}
)
_FORWARD_ERRORS: typing.Final[tuple[type[BaseException], ...]] = (
    voice.LavalinkError,
    *redis_client.REDIS_ERRORS,
)
# KEYS[1] = a guild's player record; ARGV[1] = the encoded track that ended. Clears the
# record's track only if it is still that one.
_CLEAR_ENDED: typing.Final[str] = """
local raw = redis.call('HGET', KEYS[1], 'track')
if raw and raw ~= '' and raw ~= 'null' then
  local ok, track = pcall(cjson.decode, raw)
  if ok and type(track) == 'table' and track['encoded'] == ARGV[1] then
    redis.call('HSET', KEYS[1], 'track', 'null', 'position', '0')
    return 1
  end
end
return 0
"""
#: How often a gateway looks for sessions nobody resumed (and gateways that died).
ADOPT_INTERVAL: typing.Final[float] = 2.0
#: How long a starting gateway waits for its Lavalink sessions to be ready.
READY_TIMEOUT: typing.Final[float] = 10.0


class VoiceBridge:
    """Lavalink for one gateway process."""

    def __init__(
        self,
        settings: config.LavalinkSettings,
        *,
        redis: aioredis.Redis,
        keys: keys_module.RedisKeys,
        publisher: publisher_module.EventPublisher,
        gateway_id: str,
        user_id: int,
        shard_count: typing.Callable[[], int],
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.publisher = publisher
        self.gateway_id = gateway_id
        self.user_id = user_id
        self.shard_count = shard_count
        self.rest = voice.LavalinkRest(settings)
        self.client: lavalink.Client | None = None
        #: node name -> Lavalink URL, session id now, session id expected on the next ready.
        self._urls: dict[str, str] = {}
        self.sessions: dict[str, str] = {}
        self._expected: dict[str, str | None] = {}
        self._ready: dict[str, asyncio.Event] = {}
        self._seq = itertools.count(1)
        self._tasks: set[asyncio.Task[None]] = set()
        self._adopter: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._missing: set[str] = set()
        self._inbox: asyncio.Queue[tuple[str, typing.Any]] = asyncio.Queue()
        self._clear_ended = redis.register_script(_CLEAR_ENDED)
        self.stats = {"published": 0, "voice_patches": 0, "recreated": 0, "resumed": 0}

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        lavalink_adapter.check_compatibility()
        lavalink_adapter.quiet_logs()
        await self.rest.start()
        self._reader = asyncio.get_running_loop().create_task(self._inbox_loop())
        self.client = lavalink.Client(self.user_id)
        lavalink_adapter.resume_on_reconnect(self.client)
        self.client.add_event_hook(self._on_raw, event=lavalink.IncomingWebSocketMessage)
        self.client.add_event_hook(self._on_ready, event=lavalink.NodeReadyEvent)
        for index, url in enumerate(self.settings.urls):
            orphan = await self._claim_orphan(url)
            name = f"node{index}"
            parts = urllib.parse.urlsplit(url)
            self._urls[name] = url
            self._expected[name] = orphan
            self._ready[name] = asyncio.Event()
            self.client.add_node(
                parts.hostname or "127.0.0.1",
                parts.port or (443 if parts.scheme == "https" else 80),
                self.settings.password.reveal(),
                "default",
                name=name,
                ssl=parts.scheme == "https",
                session_id=orphan,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.gather(*(e.wait() for e in self._ready.values())), READY_TIMEOUT
            )
        self._adopter = asyncio.get_running_loop().create_task(self._adopt_loop())

    async def close(self) -> None:
        """Leave the sessions to a successor: resumable, listed as orphans, WebSocket closed."""
        if self._adopter is not None:
            await lifecycle.cancel_and_wait([self._adopter])
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        now = time.time()
        with contextlib.suppress(*redis_client.REDIS_ERRORS):
            async with self.redis.pipeline(transaction=True) as pipe:
                for name, session_id in self.sessions.items():
                    pipe.hdel(self.keys.lavalink_sessions(), session_id)
                    pipe.hset(
                        self.keys.lavalink_orphans(),
                        session_id,
                        orjson.dumps({"node": self._urls[name], "at": now}),
                    )
                await pipe.execute()
        if self.client is not None:
            await self.client.close()
        if self._reader is not None:
            # What already arrived is published before the connections close.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._inbox.join(), 2)
            await lifecycle.cancel_and_wait([self._reader])
        await self.rest.close()

    # --- sessions ---------------------------------------------------------------------------

    async def _claim_orphan(self, url: str) -> str | None:
        """A session a stopped gateway left for this node, if one is still resumable."""
        try:
            orphans = lavalink_adapter.entries(
                await self.redis.hgetall(self.keys.lavalink_orphans())
            )
            for session_id, info in sorted(orphans, key=lambda item: -float(item[1]["at"])):
                fresh = time.time() - float(info["at"]) < self.settings.resume_timeout - 2
                if (
                    info["node"] == url
                    and fresh
                    and await self.redis.hdel(self.keys.lavalink_orphans(), session_id)
                ):
                    _LOGGER.info("resuming a Lavalink session left by a stopped gateway")
                    return session_id
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning("no Lavalink session resumed: Redis", extra={"error": str(exc)})
        return None

    async def _on_ready(self, event: lavalink.NodeReadyEvent) -> None:
        name = event.node.name
        url = self._urls[name]
        previous = self.sessions.get(name) or self._expected.get(name)
        self.sessions[name] = event.session_id
        try:
            try:
                await event.node.update_session(resuming=True, timeout=self.settings.resume_timeout)
            except Exception:
                _LOGGER.exception("could not make the Lavalink session resumable")
            await self.redis.hset(
                self.keys.lavalink_sessions(),
                event.session_id,
                orjson.dumps({"node": url, "gateway": self.gateway_id, "at": time.time()}),
            )
            if event.resumed:
                self.stats["resumed"] += 1
                _LOGGER.info("Lavalink session resumed: its players kept playing")
            elif previous and previous != event.session_id:
                await self.redis.hdel(self.keys.lavalink_sessions(), previous)
                await self.recreate(previous, url, event.session_id)
            self._expected[name] = None
        except Exception:
            # Kept for the next ready: its players are recreated then.
            self._expected[name] = previous
            _LOGGER.exception("Lavalink session not set up; retried at the next ready")
        finally:
            self._ready[name].set()

    async def recreate(self, old_session: str, url: str, new_session: str) -> int:
        """Rebuild every player of ``old_session`` on ``new_session``, each at its position."""
        members = await self.redis.smembers(self.keys.voice_players_of(old_session))
        count = 0
        for member in members:
            guild_id = int(member)
            try:
                record = await voice.read_player(self.redis, self.keys, guild_id)
            except (ValueError, TypeError, orjson.JSONDecodeError):
                _LOGGER.warning("unreadable player record skipped", extra={"guild": guild_id})
                record = None
            if record is None or record.session != old_session:
                await self.redis.srem(self.keys.voice_players_of(old_session), member)
                continue
            body = record.restore_body()
            try:
                await self.rest.update_player(url, new_session, guild_id, body)
            except voice.LavalinkError as exc:
                _LOGGER.warning(
                    "player not recreated", extra={"guild": guild_id, "error": str(exc)}
                )
                continue
            await self._assign(guild_id, url, new_session, old_session)
            if "position" in body:
                await voice.write_player(
                    self.redis, self.keys, guild_id, position=body["position"], at=time.time()
                )
            count += 1
        # Moved guilds left the old session's set in _assign; failures stay for another try.
        self.stats["recreated"] += count
        _LOGGER.info(
            "players recreated on a new Lavalink session",
            extra={"players": count, "node": url},
        )
        return count

    async def _assign(
        self, guild_id: int, url: str, session: str, previous: str | None = None
    ) -> None:
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                self.keys.voice_player(guild_id),
                mapping=voice.player_fields(node=url, session=session),
            )
            if previous:
                pipe.srem(self.keys.voice_players_of(previous), guild_id)
            pipe.sadd(self.keys.voice_players_of(session), guild_id)
            await pipe.execute()

    async def _adopt_loop(self) -> None:
        while True:
            await asyncio.sleep(ADOPT_INTERVAL)
            try:
                await self.adopt_abandoned()
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.debug("abandoned sessions not checked", extra={"error": str(exc)})
            except Exception:
                _LOGGER.exception("abandoned sessions not checked")

    async def adopt_abandoned(self) -> None:
        """Sessions no gateway resumed in time, or whose gateway died: their players are
        rebuilt on this gateway's session for the same node. A gateway counts as dead once its
        status has been missing at two looks in a row (not in the moment it starts, nor
        because its key expired during one Redis hiccup)."""
        mine = {url: self.sessions[n] for n, url in self._urls.items() if n in self.sessions}
        candidates: list[tuple[str, str]] = []
        for session_id, info in lavalink_adapter.entries(
            await self.redis.hgetall(self.keys.lavalink_orphans())
        ):
            # Give a starting successor the first half of the timeout to resume it itself.
            if time.time() - float(info["at"]) > self.settings.resume_timeout / 2:
                candidates.append((session_id, str(info["node"])))
        missing: set[str] = set()
        held = lavalink_adapter.entries(await self.redis.hgetall(self.keys.lavalink_sessions()))
        for session_id, info in held:
            gateway = str(info.get("gateway"))
            if gateway == self.gateway_id or await self._alive(gateway):
                continue
            missing.add(gateway)
            if gateway in self._missing:
                candidates.append((session_id, str(info["node"])))
        self._missing = missing
        for session_id, url in candidates:
            target = mine.get(url)
            if target is None or session_id == target:
                continue
            claimed = await self.redis.hdel(self.keys.lavalink_orphans(), session_id)
            claimed += await self.redis.hdel(self.keys.lavalink_sessions(), session_id)
            if claimed:
                await self.recreate(session_id, url, target)

    async def _alive(self, gateway: str) -> bool:
        return bool(
            await self.redis.zscore(self.keys.gateways(), gateway)
            or await self.redis.exists(self.keys.gateway_status(gateway))
        )

    # --- voice events from the shards -------------------------------------------------------

    def on_dispatch(self, name: str, payload: typing.Any) -> None:
        """Called by the shard group for every dispatch; acts on the bot's voice events."""
        if name not in _VOICE_EVENTS or not isinstance(payload, dict):
            return
        if name == "VOICE_STATE_UPDATE" and str(payload.get("user_id")) != str(self.user_id):
            return
        task = asyncio.get_running_loop().create_task(self._voice_event(name, payload))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _voice_event(self, name: str, payload: dict[str, typing.Any]) -> None:
        try:
            guild_id = int(payload["guild_id"])
            if name == "VOICE_STATE_UPDATE":
                if payload.get("channel_id") is None:
                    await self._left(guild_id)
                    return
                await voice.write_player(
                    self.redis,
                    self.keys,
                    guild_id,
                    channel_id=str(payload["channel_id"]),
                    voice_session=str(payload["session_id"]),
                )
            else:
                if not payload.get("endpoint"):
                    return  # Discord sends a null endpoint while it allocates a server
                await voice.write_player(
                    self.redis,
                    self.keys,
                    guild_id,
                    token=str(payload["token"]),
                    endpoint=str(payload["endpoint"]),
                )
            await self._send_voice(guild_id)
        except (KeyError, ValueError, TypeError):
            _LOGGER.warning("malformed voice event ignored", extra={"event": name})
        except _FORWARD_ERRORS as exc:
            _LOGGER.warning("voice not forwarded to Lavalink", extra={"error": str(exc)})

    def _default_session(self, guild_id: int) -> tuple[str, str] | None:
        names = [n for n in self._urls if n in self.sessions]
        if not names:
            return None
        name = names[guild_id % len(names)]
        return self._urls[name], self.sessions[name]

    async def _send_voice(self, guild_id: int) -> None:
        record = await voice.read_player(self.redis, self.keys, guild_id)
        if record is None or record.voice is None:
            return
        target = (
            (record.node, record.session) if record.session else self._default_session(guild_id)
        )
        if target is None:
            raise voice.LavalinkError(0, "no Lavalink session is ready")
        try:
            await self.rest.update_player(target[0], target[1], guild_id, {"voice": record.voice})
        except voice.LavalinkError as exc:
            fallback = self._default_session(guild_id)
            if exc.status != 404 or fallback is None or fallback == target:
                raise
            # Its session is gone (or paused mid-hand-off): rebuild the player on ours.
            await self.rest.update_player(fallback[0], fallback[1], guild_id, record.restore_body())
            target = fallback
        self.stats["voice_patches"] += 1
        if (record.node, record.session) != target:
            await self._assign(guild_id, target[0], target[1], record.session or None)

    async def _left(self, guild_id: int) -> None:
        """The bot left the voice channel (or was moved out): its player goes too."""
        record = await voice.read_player(self.redis, self.keys, guild_id)
        if record is None:
            return
        if record.session:
            with contextlib.suppress(voice.LavalinkError):
                await self.rest.destroy_player(record.node, record.session, guild_id)
            await self.redis.srem(self.keys.voice_players_of(record.session), guild_id)
        await self.redis.delete(self.keys.voice_player(guild_id))

    # --- Lavalink's messages ----------------------------------------------------------------

    async def _on_raw(self, event: lavalink.IncomingWebSocketMessage) -> None:
        # lavalink.py runs each hook in a task of its own: queue at once (before any await)
        # so that one task handles a node's messages in the order they arrived.
        self._inbox.put_nowait((event.node.name, event.data))

    async def _inbox_loop(self) -> None:
        while True:
            name, data = await self._inbox.get()
            try:
                await self._handle_raw(name, data)
            except Exception:
                _LOGGER.exception("Lavalink message not handled")
            finally:
                self._inbox.task_done()

    async def _handle_raw(self, name: str, data: typing.Any) -> None:
        if not isinstance(data, dict) or data.get("op") not in {"event", "playerUpdate"}:
            return
        op = data["op"]
        kind = data.get("type") if op == "event" else op
        try:
            guild_id = int(data["guildId"])
        except (KeyError, ValueError, TypeError):
            _LOGGER.warning("Lavalink message without a guild ignored", extra={"op": op})
            return
        if not isinstance(kind, str) or not kind.isidentifier():
            _LOGGER.warning("Lavalink event without a type ignored")
            return
        session_id = self.sessions.get(name, "")
        try:
            await self._follow(guild_id, session_id, data)
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning("player record not updated", extra={"error": str(exc)})
        except (ValueError, TypeError, AttributeError, orjson.JSONDecodeError):
            _LOGGER.warning("player record not updated: unreadable", extra={"guild": guild_id})
        count = max(self.shard_count(), 1)
        self.publisher.publish_event(
            f"{voice.EVENT_PREFIX}{kind}",
            {**data, "node": self._urls[name], "sessionId": session_id},
            shard_id=sharding.shard_for_guild(guild_id, count),
            shard_count=count,
            session=f"lavalink-{session_id}-{self.gateway_id}",
            seq=next(self._seq),
        )
        self.stats["published"] += 1

    async def _follow(self, guild_id: int, session_id: str, data: dict[str, typing.Any]) -> None:
        """Keep the player record true to what Lavalink reports."""
        record = await voice.read_player(self.redis, self.keys, guild_id)
        if record is None or record.session != session_id:
            return
        if data["op"] == "playerUpdate":
            state = data.get("state")
            if isinstance(state, dict):
                await voice.write_player(
                    self.redis,
                    self.keys,
                    guild_id,
                    position=int(state.get("position", 0)),
                    at=int(state.get("time", time.time() * 1000)) / 1000,
                    connected=state.get("connected") is not False,
                )
        elif data.get("type") == "WebSocketClosedEvent":
            # Discord closed the voice socket: the player is silent until it gets a voice again.
            await voice.write_player(self.redis, self.keys, guild_id, connected=False)
        elif data.get("type") == "TrackStartEvent" and isinstance(data.get("track"), dict):
            await voice.write_player(
                self.redis, self.keys, guild_id, track=data["track"], position=0, at=time.time()
            )
        elif data.get("type") == "TrackEndEvent" and isinstance(data.get("track"), dict):
            # Only if what ended is still what the record says plays: a worker may already
            # have started the next track (compare and clear in one step).
            await self._clear_ended(
                keys=[self.keys.voice_player(guild_id)], args=[str(data["track"].get("encoded"))]
            )
