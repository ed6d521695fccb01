"""The shards one gateway holds: raw dispatches in, envelopes out, sessions kept for successors.

No model is built here: hikari's shard hands each dispatch's ``d`` to :meth:`ShardGroup.
consume_raw_event` (the event-manager hook hikari calls), which tags it and hands it to the
publisher in the same call.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import time
import typing

import hikari
from hikari.impl import config as hikari_config

from gateway import hikari_adapter, session_save
from shared import redis_client

if typing.TYPE_CHECKING:
    from gateway import identify, publisher, sessions

_LOGGER = logging.getLogger("shardline.gateway.shards")


#: How long a held shard may be neither connected nor waiting its turn to IDENTIFY before the
#: gateway counts as stuck (``/livez`` fails and the orchestrator replaces it): three of
#: hikari's longest reconnect back-offs (60 s) with room for the connection itself.
STALL_AFTER: typing.Final[float] = 180.0


@dataclasses.dataclass(slots=True)
class ShardStats:
    connected: bool = False
    identifies: int = 0
    resumes: int = 0
    events: int = 0
    started_at: float = 0.0
    #: When ``connected`` last changed, or the shard last passed its identify gate.
    changed_at: float = 0.0
    #: Waiting its turn for an IDENTIFY (the pool's bucket, the session start budget): a
    #: wait that Discord's limits bound, not a stall, however long the queue.
    queued: bool = False

    def stalled(self, now: float) -> bool:
        return not self.connected and not self.queued and now - self.changed_at > STALL_AFTER


@dataclasses.dataclass(frozen=True, slots=True)
class _Connected:
    shard: hikari_adapter.CoordinatedShard


@dataclasses.dataclass(frozen=True, slots=True)
class _Disconnected:
    shard: hikari_adapter.CoordinatedShard


class _EventFactory:
    """The two events hikari's shard asks its factory for: markers, not models."""

    def deserialize_connected_event(self, shard: hikari_adapter.CoordinatedShard) -> _Connected:
        return _Connected(shard)

    def deserialize_disconnected_event(
        self, shard: hikari_adapter.CoordinatedShard
    ) -> _Disconnected:
        return _Disconnected(shard)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ShardSettings:
    """What every shard of the group connects with."""

    token: str
    gateway_url: str
    intents: int
    shard_count: int
    max_concurrency: int


class ShardGroup:
    """Starts, runs and stops this gateway's shards."""

    def __init__(
        self,
        settings: ShardSettings,
        *,
        event_publisher: publisher.EventPublisher,
        session_store: sessions.SessionStore,
        identify_queue: identify.IdentifyQueue,
        ledger: identify.SessionStartLedger,
        on_dispatch: typing.Callable[[str, typing.Any], None] | None = None,
        clock: typing.Callable[[], float] = time.monotonic,
    ) -> None:
        self._token = settings.token
        self._url = settings.gateway_url
        self._intents = hikari.Intents(settings.intents)
        self.shard_count = settings.shard_count
        self.max_concurrency = settings.max_concurrency
        self._publisher = event_publisher
        self._sessions = session_store
        self._saver = session_save.SessionSaver(session_store)
        self._identify = identify_queue
        self._ledger = ledger
        #: Also told of every dispatch (the voice bridge, for the bot's voice events).
        self.on_dispatch = on_dispatch
        self.shards: dict[int, hikari_adapter.CoordinatedShard] = {}
        self.stats: dict[int, ShardStats] = {}
        self._clock = clock
        self._factory = _EventFactory()
        self._background: set[asyncio.Task[None]] = set()
        self.paused = False

    # --- hikari's event-manager hooks -------------------------------------------------------

    def consume_raw_event(
        self, name: str, shard: hikari_adapter.CoordinatedShard, payload: typing.Any
    ) -> None:
        stream = self._publisher.stream(shard.id, self.shard_count)
        seq = hikari_adapter.current_seq(shard)
        stats = self.stats[shard.id]
        stats.events += 1
        if name == "READY":
            shard.resuming = False
            self._mark(stats, connected=True)
            stats.identifies += 1
            self._publisher.begin_session(
                stream, payload["session_id"], payload["resume_gateway_url"], seq
            )
            session_id = payload["session_id"]
            self._spawn(
                self._sessions.start_until_taken(
                    shard.id, self.shard_count, session_id, payload["resume_gateway_url"],
                    current=lambda: (
                        self._publisher.streams.get(shard.id) is stream
                        and stream.session == session_id
                    ),
                )
            )  # fmt: skip
        elif name == "RESUMED":
            shard.resuming = False
            self._mark(stats, connected=True)
            stats.resumes += 1
        elif shard.resuming:
            stream.replayed_seq = seq  # published with HEADER_REPLAY (shared/topology.py)
        self._publisher.accept(stream, seq, name, payload)
        if self.on_dispatch is not None and name.startswith("VOICE_"):
            self.on_dispatch(name, payload)
        if self.paused:
            hikari_adapter.pause_reading(shard)

    async def dispatch(self, event: object, *, return_tasks: bool = False) -> None:
        del return_tasks
        if isinstance(event, _Connected):
            stats = self.stats.get(event.shard.id)
            if stats is None:  # a late event of a shard already stopped (handed over)
                return
            self._mark(stats, connected=True)
            if self.paused:
                hikari_adapter.pause_reading(event.shard)
        elif isinstance(event, _Disconnected) and event.shard.id in self.stats:
            self._mark(self.stats[event.shard.id], connected=False)

    def _mark(self, stats: ShardStats, *, connected: bool) -> None:
        if stats.connected != connected:
            stats.changed_at = self._clock()
        stats.connected = connected

    def stalled(self) -> list[int]:
        """Held shards that are neither connected nor queued to IDENTIFY, for too long."""
        now = self._clock()
        return sorted(s for s, stats in self.stats.items() if stats.stalled(now))

    def stall_report(self) -> str | None:
        """Why this group is stuck (a liveness failure), or ``None``."""
        stalled = self.stalled()
        if not stalled:
            return None
        return (
            f"shards neither connected nor queued to identify for over {STALL_AFTER:.0f} s: "
            f"{stalled}"
        )

    # --- lifecycle --------------------------------------------------------------------------

    def _spawn(self, coro: typing.Coroutine[typing.Any, typing.Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.warning("session store update failed", extra={"error": repr(task.exception())})

    async def _identify_gate(self, shard_id: int) -> None:
        stats = self.stats.get(shard_id)
        if stats is not None:
            stats.queued = True
        try:
            await self._identify.acquire(shard_id, self.max_concurrency)
            await self._ledger.spend()
        finally:
            if stats is not None:
                stats.queued = False
                stats.changed_at = self._clock()
        _LOGGER.info("identifying", extra={"shard": shard_id})

    async def _identify_sent(self, shard_id: int) -> None:
        await self._identify.sent(shard_id, self.max_concurrency)

    async def start_shard(self, shard_id: int) -> None:
        """Start (RESUME when a session is stored, else IDENTIFY) and wait until it is live."""
        if shard_id in self.shards:
            return
        shard = hikari_adapter.CoordinatedShard(
            identify_gate=self._identify_gate,
            identify_sent=self._identify_sent,
            event_manager=self,
            event_factory=self._factory,
            http_settings=hikari_config.HTTPSettings(),
            proxy_settings=hikari_config.ProxySettings(),
            intents=self._intents,
            shard_id=shard_id,
            shard_count=self.shard_count,
            token=self._token,
            url=self._url,
        )
        now = self._clock()
        self.stats[shard_id] = ShardStats(started_at=now, changed_at=now)
        try:
            state = await self._sessions.load(shard_id, self.shard_count)
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: no stored session, identifying",
                extra={"shard": shard_id, "error": str(exc)},
            )
            state = None
        if state is not None:
            hikari_adapter.restore_session(shard, state)
            stream = self._publisher.stream(shard_id, self.shard_count)
            self._publisher.begin_session(stream, state.session_id, state.resume_url, state.seq)
            stream.confirmed_seq = state.seq
            _LOGGER.info("resuming stored session", extra={"shard": shard_id, "seq": state.seq})
        self.shards[shard_id] = shard
        try:
            await shard.start()
        except BaseException:
            self.shards.pop(shard_id, None)
            raise

    async def stop_shard(self, shard_id: int) -> None:
        """Stop without ending the session, and write its last confirmed seq."""
        shard = self.shards.pop(shard_id, None)
        if shard is None:
            return
        deadline = self._saver.deadline()
        try:
            await hikari_adapter.close_keeping_session(shard)
            await self._publisher.drain(timeout=10, shard_id=shard_id)
            marks = self._publisher.checkpoints()
            if shard_id in marks:
                # Waits for a Redis that is away, within the stop's grace: a session not
                # saved makes the successor IDENTIFY, and the events in between are lost.
                await self._saver.save(shard_id, marks[shard_id], deadline)
        except Exception as exc:
            # Stopped all the same: a seq not written only means a longer replay (deduped)
            # or an IDENTIFY; the caller's next step (a restart, a lease release) must run.
            _LOGGER.warning(
                "shard stopped, but not cleanly", extra={"shard": shard_id, "error": repr(exc)}
            )
        finally:
            self._publisher.streams.pop(shard_id, None)
            self.stats.pop(shard_id, None)

    async def close(self) -> None:
        await asyncio.gather(*(self.stop_shard(s) for s in list(self.shards)))
        if self._background:
            await asyncio.wait(set(self._background), timeout=5)

    def set_paused(self, paused: bool) -> None:
        """Stop (or resume) reading every shard's socket: back-pressure from the publisher."""
        self.paused = paused
        for shard in self.shards.values():
            if paused:
                hikari_adapter.pause_reading(shard)
            else:
                hikari_adapter.resume_reading(shard)

    def shard(self, shard_id: int) -> hikari_adapter.CoordinatedShard | None:
        return self.shards.get(shard_id)

    def latency(self, shard_id: int) -> float | None:
        """The shard's heartbeat round trip in seconds; ``None`` before its first ACK."""
        shard = self.shards.get(shard_id)
        latency = shard.heartbeat_latency if shard is not None else float("nan")
        return None if math.isnan(latency) else latency
