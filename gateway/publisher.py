"""Dispatches to the events exchange, at least once, with few messages and no per-event task.

The hot path (:meth:`EventPublisher.accept`) only appends the envelope to its shard's pending
list and, once per loop iteration, schedules a flush. The flush runs when the shard's socket
has nothing more to give (the read loop suspended), so a quiet bot publishes each event at
once while a busy one carries many envelopes of one shard and one routing key in one message.
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

from gateway import sessions
from shared import envelope, topology

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

_LOGGER = logging.getLogger("shardline.gateway.publisher")
_RETRY_DELAYS: typing.Final = (0.05, 0.2, 0.5, 1.0, 2.0)


@dataclasses.dataclass(slots=True)
class _Batch:
    session: str
    last_seq: int
    count: int
    done: bool = False


@dataclasses.dataclass(slots=True)
class ShardStream:
    """Publishing state of one shard."""

    shard_id: int
    shard_count: int
    session: str = ""
    resume_url: str = ""
    seen_seq: int = 0
    confirmed_seq: int = 0
    pending: list[tuple[str, dict[str, typing.Any]]] = dataclasses.field(default_factory=list)
    inflight: collections.deque[_Batch] = dataclasses.field(default_factory=collections.deque)

    def advance(self) -> None:
        while self.inflight and self.inflight[0].done:
            batch = self.inflight.popleft()
            if batch.session == self.session:
                self.confirmed_seq = max(self.confirmed_seq, batch.last_seq)
        if not self.inflight and not self.pending:
            # Everything seen is confirmed or was never meant for the broker.
            self.confirmed_seq = max(self.confirmed_seq, self.seen_seq)


@dataclasses.dataclass(slots=True)
class PublisherStats:
    published_events: int = 0
    published_messages: int = 0
    skipped_events: int = 0
    publish_failures: int = 0


class EventPublisher:
    """Turns dispatches into envelopes on the events exchange."""

    def __init__(
        self,
        exchange: pika_abc.AbstractExchange,
        *,
        pool: str,
        gateway_id: str,
        reply_to: str,
        max_buffered: int = 50_000,
        on_pressure: typing.Callable[[bool], None] | None = None,
    ) -> None:
        self._exchange = exchange
        self._pool = pool
        self._gateway_id = gateway_id
        self._reply_to = reply_to
        self.max_buffered = max_buffered
        self._on_pressure = on_pressure
        self.streams: dict[int, ShardStream] = {}
        self.interests: frozenset[str] = frozenset()
        self.buffered = 0
        self.under_pressure = False
        self.stats = PublisherStats()
        self._flush_scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False
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

    def accept(self, stream: ShardStream, seq: int, name: str, data: typing.Any) -> None:
        """Take one dispatch of ``stream``'s current session."""
        stream.seen_seq = seq
        if name not in self.interests:
            self.stats.skipped_events += 1
            if not stream.inflight and not stream.pending:
                stream.confirmed_seq = seq
            return
        stream.pending.append(
            (
                name,
                {
                    "v": envelope.VERSION,
                    "pool": self._pool,
                    "gateway": self._gateway_id,
                    "reply_to": self._reply_to,
                    "shard": [stream.shard_id, stream.shard_count],
                    "session": stream.session,
                    "seq": seq,
                    "t": name,
                    "d": data,
                    "ts": time.time(),
                },
            )
        )
        self.buffered += 1
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self.flush)
        if self.buffered >= self.max_buffered and not self.under_pressure:
            self._set_pressure(True)

    def flush(self) -> None:
        """Publish everything pending, one message per run of one routing key."""
        self._flush_scheduled = False
        for stream in self.streams.values():
            if not stream.pending:
                continue
            pending, stream.pending = stream.pending, []
            start = 0
            for index in range(1, len(pending) + 1):
                if index == len(pending) or pending[index][0] != pending[start][0]:
                    self._publish_run(stream, pending[start:index])
                    start = index

    def _publish_run(
        self, stream: ShardStream, run: list[tuple[str, dict[str, typing.Any]]]
    ) -> None:
        name = run[0][0]
        envelopes = [item for _, item in run]
        body = orjson.dumps(envelopes[0] if len(envelopes) == 1 else envelopes)
        first, last = envelopes[0]["seq"], envelopes[-1]["seq"]
        # The same events replayed after a resume get the same id: duplicates are recognisable.
        message_id = f"{self._pool}:{stream.shard_id}:{stream.session}:{first}-{last}"
        batch = _Batch(stream.session, last, len(envelopes))
        stream.inflight.append(batch)
        message = aio_pika.Message(
            body,
            content_type=envelope.CONTENT_TYPE,
            message_id=message_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            type=name,
        )
        routing_key = topology.Topology.event_key(self._pool, name)
        task = self._loop.create_task(self._publish(stream, batch, message, routing_key))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _publish(
        self,
        stream: ShardStream,
        batch: _Batch,
        message: aio_pika.Message,
        routing_key: str,
    ) -> None:
        attempt = 0
        while True:
            try:
                await self._exchange.publish(message, routing_key)
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.stats.publish_failures += 1
                delay = _RETRY_DELAYS[min(attempt, len(_RETRY_DELAYS) - 1)]
                attempt += 1
                _LOGGER.warning(
                    "publish failed; retrying",
                    extra={"shard": stream.shard_id, "error": repr(exc), "retry_in": delay},
                )
                await asyncio.sleep(delay)
        batch.done = True
        self.stats.published_events += batch.count
        self.stats.published_messages += 1
        self.buffered -= batch.count
        stream.advance()
        if self.under_pressure and self.buffered <= self.max_buffered // 2:
            self._set_pressure(False)

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

    async def drain(self, timeout: float) -> bool:
        """Flush and wait for every confirm (bounded); ``True`` when nothing is left."""
        self.flush()
        deadline = time.monotonic() + timeout
        while self._tasks and time.monotonic() < deadline:
            await asyncio.wait(set(self._tasks), timeout=max(deadline - time.monotonic(), 0))
        return not self._tasks

    async def close(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks))
