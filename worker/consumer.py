"""Consumes a worker group's queues: typed events to listeners, ack after, retry, dead-letter."""

from __future__ import annotations

import asyncio
import bisect
import collections
import dataclasses
import logging
import time
import typing

from shared import envelope, topology, voice
from shared import logging as shared_logging

if typing.TYPE_CHECKING:
    import hikari
    from aio_pika import abc as pika_abc

    from worker import bot as bot_module
    from worker import dedupe, events

_LOGGER = logging.getLogger("shardline.worker.consumer")
#: Histogram buckets (seconds) for handler latency and event age.
BUCKETS: typing.Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


@dataclasses.dataclass(slots=True)
class Histogram:
    counts: list[int] = dataclasses.field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0
    count: int = 0

    def observe(self, value: float) -> None:
        # The first bucket whose bound is >= value; past the last bound, the +Inf bucket.
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.total += value
        self.count += 1


@dataclasses.dataclass(slots=True)
class ConsumerStats:
    consumed: int = 0
    handled: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    duplicates: int = 0
    failures: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    dead_lettered: int = 0
    latency: dict[str, Histogram] = dataclasses.field(default_factory=dict)
    age: Histogram = dataclasses.field(default_factory=Histogram)


_GUILD_EVENTS: typing.Final = frozenset({"GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE"})


def _guild_of(item: envelope.EventEnvelope) -> str | None:
    """The guild an event is about, if it says: ``guild_id`` (Discord), ``id`` (a guild's own
    events) or ``guildId`` (Lavalink's)."""
    data = item.d
    if not isinstance(data, dict):
        return None
    if item.t in _GUILD_EVENTS:
        found = data.get("id")
    elif item.t.startswith(voice.EVENT_PREFIX):
        found = data.get("guildId")
    else:
        found = data.get("guild_id")
    return found if isinstance(found, str) else None


async def _call(listeners: list[events.Listener], event: hikari.Event) -> None:
    """Run an event's listeners; one (the common case) is awaited without a task of its own."""
    if len(listeners) == 1:
        await listeners[0](event)
    else:
        await asyncio.gather(*(listener(event) for listener in listeners))


class EventConsumer:
    def __init__(
        self,
        bot: bot_module.Bot,
        channel: pika_abc.AbstractChannel,
        names: topology.Topology,
        deduplicator: dedupe.Deduplicator,
    ) -> None:
        self._bot = bot
        self._channel = channel
        self._topology = names
        self._dedupe = deduplicator
        self._tags: list[tuple[pika_abc.AbstractQueue, str]] = []
        self._inflight: set[asyncio.Task[None]] = set()
        self.stats = ConsumerStats()

    async def start(self, queues: typing.Iterable[pika_abc.AbstractQueue]) -> None:
        for queue in queues:
            tag = await queue.consume(self._on_message)
            self._tags.append((queue, tag))

    async def stop_intake(self) -> None:
        for queue, tag in self._tags:
            await queue.cancel(tag)
        self._tags.clear()

    async def drain(self, timeout: float) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)

    async def _on_message(self, message: pika_abc.AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        try:
            await self._process(message)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _process(self, message: pika_abc.AbstractIncomingMessage) -> None:
        self.stats.consumed += 1
        try:
            envelopes = envelope.decode_message(message.body)
        except envelope.EnvelopeError as exc:
            await self._dead_letter(message, exc.reason)
            return
        fresh = await self._dedupe.claim(envelopes, redelivered=bool(message.redelivered))
        self.stats.duplicates += len(envelopes) - len(fresh)
        done: list[envelope.EventEnvelope] = []
        for index, item in enumerate(fresh):
            try:
                await self._handle(item)
            except Exception:
                self.stats.failures[item.t] += 1
                _LOGGER.exception(
                    "handler failed; the message will be retried",
                    extra={
                        "event": item.t,
                        "shard": item.shard_id,
                        "guild": _guild_of(item),
                        "key": item.dedupe_key,
                        "delivery": message.delivery_tag,
                    },
                )
                await self._dedupe.finish(done, fresh[index:])
                # The redelivery must find the handled ones done, not merely ours "processing".
                await self._dedupe.flush()
                # Requeued: the quorum queue counts deliveries and dead-letters past its limit.
                await message.nack(requeue=True)
                return
            done.append(item)
        await self._dedupe.finish(done, [])
        await message.ack()

    async def _handle(self, item: envelope.EventEnvelope) -> None:
        # Every line logged while it runs (the bot's own too) says which shard, guild, event.
        with shared_logging.context(shard=item.shard_id, guild=_guild_of(item), event=item.t):
            await self._run(item)

    async def _run(self, item: envelope.EventEnvelope) -> None:
        started = time.time()
        self.stats.age.observe(max(started - item.ts, 0.0))
        self._bot.shard_count = item.shard_count
        if item.t.startswith(voice.EVENT_PREFIX):
            await self._bot.voice.dispatch(item)
            built = []
        else:
            shard = self._bot.remote_shard(item.shard_id, reply_to=item.reply_to)
            built = self._bot.events.build(item.t, typing.cast("typing.Any", shard), item.d)
        for event in built:
            listeners = self._bot.events.listeners_for(event)
            if not listeners:
                continue
            if item.t in topology.INTERACTION_EVENTS:
                async with self._bot.interactions.guard(item.d, item.ts):
                    await _call(listeners, event)
            else:
                await _call(listeners, event)
        elapsed = time.time() - started
        histogram = self.stats.latency.get(item.t)
        if histogram is None:
            histogram = self.stats.latency[item.t] = Histogram()
        histogram.observe(elapsed)
        self.stats.handled[item.t] += 1

    async def _dead_letter(self, message: pika_abc.AbstractIncomingMessage, reason: str) -> None:
        """Park a message we cannot read on the dead-letter queue, with why; lose nothing."""
        _LOGGER.warning("dead-lettering an unreadable message", extra={"reason": reason})
        exchange = await self._channel.get_exchange(self._topology.dead_letter_exchange)
        headers = dict(message.headers or {})
        headers[topology.HEADER_REASON] = reason
        await exchange.publish(
            topology.copy_message(message, headers), routing_key=message.routing_key or ""
        )
        self.stats.dead_lettered += 1
        await message.ack()
