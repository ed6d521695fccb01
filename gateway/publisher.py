"""Dispatches to the events exchange, at least once, with few messages and no per-event task.

The hot path (:meth:`EventPublisher.accept`) only appends the envelope to its shard's pending
list and, once per loop iteration, schedules a flush. The flush runs when the shard's socket
has nothing more to give (the read loop suspended), and while the shard's last message is
still unconfirmed its events wait for the confirm (``PUBLISH_WINDOW``): a quiet bot publishes
each event at once while a busy one carries many envelopes of one shard and one routing key in
one message.
Consecutive runs keep the shard's order. Publisher confirms come back per message; a shard's
checkpoint (the seq a successor RESUMEs from) only moves past confirmed events.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
import typing

import aio_pika
import orjson
from aiormq import exceptions as amqp_errors

from gateway import sessions
from shared import breaker as breaker_module
from shared import envelope, lifecycle, redis_client, topology

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc

    from shared.cache import writer

    CacheEvent = tuple[int, str, typing.Any]

_LOGGER = logging.getLogger("shardline.gateway.publisher")
_RETRY_DELAYS: typing.Final = (0.05, 0.2, 0.5, 1.0, 2.0)
#: Messages of one shard on their way to the broker (published, not yet confirmed) at most.
#: Events that arrive meanwhile wait and go out together when the confirm returns: a quiet
#: shard publishes each event at once, a busy one as many events per message as arrived during
#: one broker round trip, so the broker and the workers see fewer, fuller messages exactly when
#: one message per event would queue up (docs/benchmarks.md, "Publish window").
PUBLISH_WINDOW: typing.Final = 1
#: Events in one message at most: a long wait for the broker never makes one huge message.
MAX_BATCH: typing.Final = 256
#: Bytes of one message of several events at most: a batch is split below this, far under the
#: broker's message limit (RabbitMQ 3.x: 128 MiB, 4.x: 16 MiB by default) and the workers'
#: (``envelope.MAX_MESSAGE_BYTES``), so that batching never makes a message nobody takes.
MAX_BATCH_BYTES: typing.Final = 1024 * 1024
#: Published at once, never behind a cache write: Discord wants an answer within 3 s, and
#: nothing an interaction's handler reads is written by the cache writes ahead of it.
IMMEDIATE: typing.Final = frozenset({"INTERACTION_CREATE"})


@dataclasses.dataclass(slots=True)
class _Batch:
    """Events of one session, ``first_seq`` to ``last_seq``, on their way (a message or a
    cache write)."""

    session: str
    first_seq: int
    last_seq: int
    count: int
    done: bool = False
    #: Messages of this batch not confirmed yet (more than one when it was split by size).
    unconfirmed: int = 1


@dataclasses.dataclass(slots=True)
class ShardStream:
    """Publishing state of one shard."""

    shard_id: int
    shard_count: int
    session: str = ""
    resume_url: str = ""
    seen_seq: int = 0
    confirmed_seq: int = 0
    #: The last seq of this session that Discord replayed after a RESUME: events up to it may
    #: have been published already (by a gateway since gone, or before a reconnect).
    replayed_seq: int = 0
    pending: list[tuple[str, dict[str, typing.Any]]] = dataclasses.field(default_factory=list)
    inflight: collections.deque[_Batch] = dataclasses.field(default_factory=collections.deque)
    #: Messages published and not yet confirmed.
    publishing: int = 0

    def advance(self) -> None:
        """Move the checkpoint past what is done, never to or past an event still waiting
        (pending, or in a batch not done yet, whichever was queued first)."""
        waiting = [b.first_seq for b in self.inflight if not b.done and b.session == self.session]
        if self.pending:
            waiting.append(self.pending[0][1]["seq"])
        floor = min(waiting, default=None)
        kept: collections.deque[_Batch] = collections.deque()
        for batch in self.inflight:
            if not batch.done or (
                floor is not None and batch.session == self.session and batch.last_seq >= floor
            ):
                kept.append(batch)  # done ahead of an earlier event: counted once that is
            elif batch.session == self.session:
                self.confirmed_seq = max(self.confirmed_seq, batch.last_seq)
        self.inflight = kept
        if not self.inflight and not self.pending:
            # Everything seen is confirmed or was never meant for the broker.
            self.confirmed_seq = max(self.confirmed_seq, self.seen_seq)


@dataclasses.dataclass(slots=True)
class PublisherStats:
    published_events: int = 0
    published_messages: int = 0
    skipped_events: int = 0
    muted_events: int = 0
    publish_failures: int = 0
    #: Events no worker could take (over ``envelope.MAX_MESSAGE_BYTES``) or the broker refused
    #: for good: dead-lettered as a stub without their payload, never retried.
    oversize_events: int = 0
    cache_writes: int = 0
    cache_failures: int = 0


class EventPublisher:
    """Turns dispatches into envelopes on the events exchange."""

    def __init__(  # noqa: PLR0913 - wiring: each collaborator is optional and named
        self,
        exchange: pika_abc.AbstractExchange,
        *,
        pool: str,
        gateway_id: str,
        reply_to: str,
        max_buffered: int = 50_000,
        on_pressure: typing.Callable[[bool], None] | None = None,
        cache_writer: writer.CacheWriter | None = None,
        redis: aioredis.Redis | None = None,
        dead_letter: pika_abc.AbstractExchange | None = None,
        breaker: breaker_module.CircuitBreaker | None = None,
        on_cache_skipped: typing.Callable[[list[CacheEvent]], None] | None = None,
    ) -> None:
        self._dead_letter = dead_letter
        self._cache_writer = cache_writer
        self._redis = redis
        #: Redis's breaker: while it is open, cache writes are skipped (not waited on).
        self._breaker = breaker
        #: Told of every cache write skipped or failed, to repair the guilds it touched.
        self._on_cache_skipped = on_cache_skipped
        #: Bumped by every failed cache write: a link of the chain that waited behind one
        #: skips its own write instead of waiting for Redis's deadline again.
        self._cache_failed_epoch = 0
        self._cache_pending: list[tuple[int, str, typing.Any]] = []
        self._cache_batches: dict[int, _Batch] = {}
        self._chain: asyncio.Task[None] | None = None
        self.cache_ok = True
        self._exchange = exchange
        self._pool = pool
        self._gateway_id = gateway_id
        self._reply_to = reply_to
        self.max_buffered = max_buffered
        self._on_pressure = on_pressure
        self.streams: dict[int, ShardStream] = {}
        #: The events some worker group listens to; ``None`` (unknown): publish every event.
        self.interests: frozenset[str] | None = None
        self.buffered = 0
        self.under_pressure = False
        #: Set on a standby gateway until its re-shard switches over: dispatches are dropped.
        self.muted = False
        self.stats = PublisherStats()
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
        #: Drains under way: while any runs, everything pending goes out now, whatever the window.
        self._draining = 0
        self._loop = asyncio.get_running_loop()

    # --- hot path ---------------------------------------------------------------------------

    def stream(self, shard_id: int, shard_count: int) -> ShardStream:
        stream = self.streams.get(shard_id)
        if stream is None or stream.shard_count != shard_count:
            stream = self.streams[shard_id] = ShardStream(shard_id, shard_count)
        return stream

    def begin_session(self, stream: ShardStream, session: str, resume_url: str, seq: int) -> None:
        """A new session (READY): older checkpoints no longer apply."""
        stream.session = session
        stream.resume_url = resume_url
        stream.seen_seq = seq
        stream.confirmed_seq = 0
        stream.replayed_seq = 0

    def forwards(self, name: str) -> bool:
        """Whether an event named ``name`` is published (unknown interests: every one is)."""
        return self.interests is None or name in self.interests

    def accept(self, stream: ShardStream, seq: int, name: str, data: typing.Any) -> None:
        """Take one dispatch of ``stream``'s current session."""
        stream.seen_seq = seq
        if self.muted:
            # A standby gateway (re-shard): its sessions advance, nothing goes out yet.
            self.stats.muted_events += 1
            if not stream.inflight and not stream.pending:
                stream.confirmed_seq = seq
            return
        if self._cache_writer is not None and self._cache_writer.handles(name):
            self._accept_cache_write(stream, seq, name, data)
        if not self.forwards(name):
            self.stats.skipped_events += 1
            if not stream.inflight and not stream.pending:
                stream.confirmed_seq = seq
            return
        stream.pending.append(
            (
                name,
                envelope.wire(
                    self._pool, self._gateway_id, self._reply_to, stream.shard_id,
                    stream.shard_count, stream.session, seq, name, data, time.time(),
                ),
            )
        )  # fmt: skip
        self.buffered += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
        if self.buffered >= self.max_buffered and not self.under_pressure:
            self._set_pressure(True)

    def _accept_cache_write(
        self, stream: ShardStream, seq: int, name: str, data: typing.Any
    ) -> None:
        self._cache_pending.append((stream.shard_id, name, data))
        batch = self._cache_batches.get(stream.shard_id)
        if batch is None:
            # Held in the shard's in-flight line: the checkpoint waits for the cache write.
            batch = self._cache_batches[stream.shard_id] = _Batch(stream.session, seq, seq, 0)
            stream.inflight.append(batch)
        batch.last_seq = seq
        batch.count += 1
        self.buffered += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the cache, then publish everything pending, one message per run of one
        routing key; a flush never overtakes the one before it."""
        self._flush_scheduled = False
        runs: list[tuple[ShardStream, list[tuple[str, dict[str, typing.Any]]], _Batch]] = []
        for stream in self.streams.values():
            if not stream.pending or (stream.publishing >= PUBLISH_WINDOW and not self._draining):
                continue  # flushed again when a confirm returns
            pending, stream.pending = stream.pending, []
            start = 0
            for index in range(1, len(pending) + 1):
                if (
                    index == len(pending)
                    or pending[index][0] != pending[start][0]
                    or index - start >= MAX_BATCH
                ):
                    run = pending[start:index]
                    # In the shard's line from now on: the checkpoint waits for it even while
                    # it waits for a cache write before going out.
                    batch = _Batch(stream.session, run[0][1]["seq"], run[-1][1]["seq"], len(run))
                    stream.inflight.append(batch)
                    runs.append((stream, run, batch))
                    start = index
        cache_events, self._cache_pending = self._cache_pending, []
        cache_batches, self._cache_batches = list(self._cache_batches.values()), {}
        if not cache_events and self._chain is None:
            for stream, run, batch in runs:
                self._publish_run(stream, run, batch)
            return
        chained = []
        for stream, run, batch in runs:
            if run[0][0] in IMMEDIATE:
                self._publish_run(stream, run, batch)
            else:
                chained.append((stream, run, batch))
        self._chain = self._loop.create_task(
            self._write_then_publish(
                self._chain, cache_events, cache_batches, chained, self._cache_failed_epoch
            )
        )

    async def _write_then_publish(
        self,
        previous: asyncio.Task[None] | None,
        cache_events: list[tuple[int, str, typing.Any]],
        cache_batches: list[_Batch],
        runs: list[tuple[ShardStream, list[tuple[str, dict[str, typing.Any]]], _Batch]],
        epoch: int,
    ) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        if cache_events:
            await self._write_cache(cache_events, epoch)
        for batch in cache_batches:
            batch.done = True
            self.buffered -= batch.count
        for stream, run, batch in runs:
            self._publish_run(stream, run, batch)
        for shard_id in {event[0] for event in cache_events}:
            touched = self.streams.get(shard_id)
            if touched is not None:
                touched.advance()
        if self._chain is asyncio.current_task():
            self._chain = None

    async def _write_cache(self, cache_events: list[CacheEvent], epoch: int) -> None:
        """Write, or skip and mark for repair: the events go out either way, after at most one
        deadline of Redis's breaker per stall (a stale cache beats a silent bot)."""
        assert self._cache_writer is not None
        assert self._redis is not None
        if epoch != self._cache_failed_epoch or (
            self._breaker is not None and self._breaker.state is breaker_module.State.OPEN
        ):
            # Redis failed while this write waited, or is known to be away: do not wait.
            self._cache_failed(cache_events, "Redis unavailable: cache not written", None)
            return
        try:
            await self._cache_writer.write(self._redis, cache_events)
            self.stats.cache_writes += len(cache_events)
            if not self.cache_ok:
                _LOGGER.info("cache writes succeed again")
            self.cache_ok = True
        except redis_client.REDIS_ERRORS as exc:
            self._cache_failed(cache_events, "Redis unavailable: cache not written", exc)
        except Exception as exc:
            # Whatever went wrong in the cache, the events themselves still go out.
            _LOGGER.exception("cache write failed; publishing anyway")
            self._cache_failed(cache_events, "", exc)

    def _cache_failed(
        self, cache_events: list[CacheEvent], say: str, exc: BaseException | None
    ) -> None:
        if exc is not None:
            self._cache_failed_epoch += 1
        self.stats.cache_failures += len(cache_events)
        if self.cache_ok and say:
            _LOGGER.warning(say, extra={"error": str(exc) if exc is not None else "breaker open"})
        self.cache_ok = False
        if self._on_cache_skipped is not None:
            try:
                self._on_cache_skipped(cache_events)
            except Exception:
                _LOGGER.exception("cache repair not marked")

    def _publish_run(
        self, stream: ShardStream, run: list[tuple[str, dict[str, typing.Any]]], batch: _Batch
    ) -> None:
        name = run[0][0]
        envelopes = [item for _, item in run]
        pieces = _split(envelopes)
        batch.unconfirmed = len(pieces)
        routing_key = topology.Topology.event_key(self._pool, name)
        replayed = stream.replayed_seq if batch.session == stream.session else 0
        for body, piece in pieces:
            # The same events replayed after a resume get the same id: duplicates are
            # recognisable.
            message_id = (
                f"{self._pool}:{stream.shard_id}:{batch.session}:"
                f"{piece[0]['seq']}-{piece[-1]['seq']}"
            )
            stream.publishing += 1
            message = aio_pika.Message(
                body,
                content_type=envelope.CONTENT_TYPE,
                message_id=message_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                type=name,
                headers={topology.HEADER_REPLAY: 1} if piece[0]["seq"] <= replayed else None,
            )
            task = self._loop.create_task(self._publish(stream, batch, message, routing_key, piece))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _publish(
        self,
        stream: ShardStream,
        batch: _Batch,
        message: aio_pika.Message,
        routing_key: str,
        piece: list[dict[str, typing.Any]],
    ) -> None:
        attempt = 0
        while True:
            if len(message.body) > envelope.MAX_MESSAGE_BYTES:
                await self._refuse(
                    piece[0],
                    routing_key,
                    f"{len(message.body)} bytes exceed the workers' limit of "
                    f"{envelope.MAX_MESSAGE_BYTES}",
                )
                break
            try:
                await self._exchange.publish(message, routing_key)
                break
            except asyncio.CancelledError:
                raise
            except amqp_errors.ChannelPreconditionFailed as exc:
                # The broker refuses this message for good (over its max_message_size): a
                # retry would be refused forever and hold the shard's checkpoint with it.
                self.stats.publish_failures += 1
                await self._refuse(piece[0], routing_key, f"the broker refused it: {exc}")
                break
            except Exception as exc:
                self.stats.publish_failures += 1
                delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
                attempt += 1
                # The broker may have routed it before the connection went: the copy sent
                # again may be a second one, which a worker must not trust its memory about.
                message.headers = {**(message.headers or {}), topology.HEADER_REPLAY: 1}
                _LOGGER.warning(
                    "publish failed; retrying",
                    extra={"shard": stream.shard_id, "error": repr(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
        count = len(piece)
        batch.unconfirmed -= 1
        if batch.unconfirmed <= 0:
            batch.done = True
        stream.publishing -= 1
        self.stats.published_events += count
        self.stats.published_messages += 1
        self.buffered -= count
        stream.advance()
        if stream.pending and not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
        if self.under_pressure and self.buffered <= self.max_buffered // 2:
            self._set_pressure(False)

    async def _refuse(self, item: dict[str, typing.Any], routing_key: str, why: str) -> None:
        """An event no worker can take: its envelope without the payload goes to the
        dead-letter queue with the reason (``shardline dead-letters`` shows it, the
        dead-letter alert fires), a metric counts it, a line says so; it is not retried."""
        self.stats.oversize_events += 1
        stub = {key: value for key, value in item.items() if key != "d"}
        reason = f"payload of {item['t']} dropped: {why}"
        _LOGGER.error(
            "event too large to publish: dead-lettered without its payload",
            extra={"shard": item["shard"][0], "seq": item["seq"], "event": item["t"], "why": why},
        )
        if self._dead_letter is None:
            return
        try:
            await self._dead_letter.publish(
                aio_pika.Message(
                    orjson.dumps(stub),
                    content_type=envelope.CONTENT_TYPE,
                    headers={topology.HEADER_REASON: reason},
                    message_id=f"{self._pool}:{item['shard'][0]}:{item['session']}:{item['seq']}",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    type=item["t"],
                ),
                routing_key,
            )
        except Exception:
            # The line above and the metric still say what was lost.
            _LOGGER.exception("the stub of an oversize event was not dead-lettered")

    def publish_event(
        self,
        name: str,
        data: typing.Any,
        *,
        shard_id: int,
        shard_count: int,
        session: str,
        seq: int,
    ) -> None:
        """Publish an event that is not a shard's dispatch (Lavalink's), on its own; it takes
        no part in the shards' checkpoints. Skipped when no worker group listens to it."""
        if not self.forwards(name):
            self.stats.skipped_events += 1
            return
        item = envelope.wire(
            self._pool, self._gateway_id, self._reply_to, shard_id, shard_count,
            session, seq, name, data, time.time(),
        )  # fmt: skip
        message = aio_pika.Message(
            orjson.dumps(item),
            content_type=envelope.CONTENT_TYPE,
            message_id=f"{self._pool}:{shard_id}:{session}:{seq}-{seq}",
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=name,
        )
        stream = ShardStream(shard_id, shard_count, session)  # a stream of its own, unchecked
        batch = _Batch(session, seq, seq, 1)
        stream.inflight.append(batch)
        stream.publishing += 1
        self.buffered += 1
        task = self._loop.create_task(
            self._publish(
                stream, batch, message, topology.Topology.event_key(self._pool, name), [item]
            )
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _set_pressure(self, on: bool) -> None:
        self.under_pressure = on
        _LOGGER.warning(
            "publish buffer full: pausing shard reads" if on else "publish buffer drained",
            extra={"buffered": self.buffered},
        )
        if self._on_pressure is not None:
            self._on_pressure(on)

    # --- checkpoints and shutdown -----------------------------------------------------------

    def checkpoints(self) -> dict[int, sessions.Checkpoint]:
        """The confirmed position of every shard with a session."""
        marks = {}
        for shard_id, stream in self.streams.items():
            stream.advance()
            if stream.session:
                marks[shard_id] = sessions.Checkpoint(
                    stream.session, stream.confirmed_seq, stream.resume_url, stream.shard_count
                )
        return marks

    @property
    def outstanding(self) -> int:
        """Events accepted but not yet confirmed by the broker."""
        return self.buffered

    async def drain(self, timeout: float, shard_id: int | None = None) -> bool:
        """Flush and wait (bounded) until the broker confirmed everything of ``shard_id``, or
        of every shard; ``True`` when nothing of it is left. A shard handed over waits for its
        own events, not for the other shards' traffic."""
        deadline = time.monotonic() + timeout
        self._draining += 1
        try:
            while not self._settled(shard_id):
                self.flush()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                waiting = set(self._tasks) | ({self._chain} if self._chain is not None else set())
                if waiting:
                    await asyncio.wait(waiting, timeout=left, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.sleep(0.01)  # a flush was only scheduled: let it run
        finally:
            self._draining -= 1
        return self._settled(shard_id)

    def _settled(self, shard_id: int | None) -> bool:
        if shard_id is None:
            streams: typing.Iterable[ShardStream] = self.streams.values()
            if self._chain is not None or self._tasks:
                return False
        else:
            one = self.streams.get(shard_id)
            streams = () if one is None else (one,)
        return all(not s.pending and all(b.done for b in s.inflight) for s in streams)

    async def close(self) -> None:
        self._closing = True
        if self._chain is not None:
            self._chain.cancel()
        await lifecycle.cancel_and_wait(list(self._tasks))


def _split(
    envelopes: list[dict[str, typing.Any]],
) -> list[tuple[bytes, list[dict[str, typing.Any]]]]:
    """Message bodies for a run of envelopes: one, unless it is over ``MAX_BATCH_BYTES``; then
    halves, recursively, down to single envelopes (which go out whatever their size, up to the
    workers' limit). Serialised once in the common case."""
    body = orjson.dumps(envelopes[0] if len(envelopes) == 1 else envelopes)
    if len(body) <= MAX_BATCH_BYTES or len(envelopes) == 1:
        return [(body, envelopes)]
    middle = len(envelopes) // 2
    return _split(envelopes[:middle]) + _split(envelopes[middle:])
