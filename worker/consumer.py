"""Consumes a worker group's queues: typed events to listeners, ack after, retry, dead-letter."""

from __future__ import annotations

import asyncio
import bisect
import collections
import contextlib
import dataclasses
import functools
import logging
import time
import typing

import aio_pika
import aiormq
import hikari
import orjson

from shared import config, envelope, redis_client, topology, voice
from shared import logging as shared_logging
from worker import acks, deliveries, event_view, events

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc

    from worker import bot as bot_module
    from worker import cache_view, dedupe

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
    #: Messages sent to a retry queue (delayed redelivery) after a handler failed.
    retried: int = 0
    latency: dict[str, Histogram] = dataclasses.field(default_factory=dict)
    age: Histogram = dataclasses.field(default_factory=Histogram)
    #: Interactions whose handler met Discord's "Unknown interaction": settled, not retried.
    expired_interactions: int = 0
    interactions_answered_elsewhere: int = 0


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


class _Failure(typing.NamedTuple):
    """An envelope some listener of which failed: who succeeded already, and the error."""

    item: envelope.EventEnvelope
    succeeded: list[str]
    error: BaseException


async def _run_one(listener: events.Listener, event: hikari.Event) -> BaseException | None:
    try:
        await listener(event)
    except asyncio.CancelledError as exc:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise  # this worker is stopping: the message is settled by _process
        return exc  # the listener's own cancelled await: a failure like any other
    except Exception as exc:  # a listener's failure is retried, never raised
        return exc
    return None


async def _call(
    listeners: list[events.Listener],
    event: hikari.Event,
    ids: list[str],
    skip: typing.Container[str],
    succeeded: list[str],
) -> BaseException | None:
    """Run the listeners not in ``skip`` (one, the common case, without a task of its own);
    append each that succeeds to ``succeeded``; return the first failure, if any."""
    todo = [
        (name, listener) for name, listener in zip(ids, listeners, strict=True) if name not in skip
    ]
    if len(todo) == 1:
        outcomes = [await _run_one(todo[0][1], event)]
    else:
        outcomes = list(await asyncio.gather(*(_run_one(listener, event) for _, listener in todo)))
    first: BaseException | None = None
    for (name, _), outcome in zip(todo, outcomes, strict=True):
        if outcome is None:
            succeeded.append(name)
        else:
            first = _kept(first, outcome)
    return first


class UnroutedError(RuntimeError):
    """The broker returned a published message: no queue took it."""


def _routed(confirmation: object, where: str) -> None:
    """A publish the broker returned (a retry queue or the dead-letter binding not declared
    again yet on a node that came back empty: ``shared.broker.Redeclaring``) failed: the
    message it copies must not be acked (a review of the restore change)."""
    if isinstance(confirmation, aiormq.abc.DeliveredMessage):
        raise UnroutedError(f"the broker returned the message: no queue bound for {where}")


def _kept(first: BaseException | None, error: BaseException | None) -> BaseException | None:
    """The failure that decides an item's fate: the first, unless it settles an interaction
    (expired, answered elsewhere) and another does not (that one must still be retried, not
    settled with it)."""
    if first is None or (error is not None and _settles(first) and not _settles(error)):
        return error
    return first


def _error_headers(error: BaseException) -> dict[str, str]:
    kind = type(error)
    name = (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )
    text = shared_logging.redact(str(error))
    if len(text) > _ERROR_TEXT_MAX:
        text = text[: _ERROR_TEXT_MAX - 1] + "…"
    return {topology.HEADER_ERROR_TYPE: name, topology.HEADER_ERROR: text}


#: Discord's JSON error code for an interaction token that no longer takes an initial response
#: (discord-api-docs, Opcodes and Status Codes, JSON Error Codes: 10062 "Unknown interaction";
#: Receiving and Responding: the initial response must come within 3 seconds).
UNKNOWN_INTERACTION: typing.Final = 10062
#: ...and for one that already took its initial response (JSON Error Codes: 40060 "Interaction
#: has already been acknowledged"; Receiving and Responding: one initial response each). An
#: interaction is never held for Redis (it has 3 s), so while Redis hangs a gateway's replay
#: of one can run on a second replica; Discord refuses that replica's answer (soak seed
#: 766573: each was retried through the retry queues for nothing).
ALREADY_ACKNOWLEDGED: typing.Final = 40060


def _expired(error: BaseException) -> bool:
    """Whether ``error`` is Discord refusing an interaction that expired: running it again can
    only meet the same answer, so it is settled, not retried."""
    return isinstance(error, hikari.NotFoundError) and error.code == UNKNOWN_INTERACTION


def _answered_elsewhere(error: BaseException) -> bool:
    """Whether ``error`` is Discord refusing a second initial response: the interaction was
    answered (by another replica), and running it again can only meet the same answer."""
    return isinstance(error, hikari.BadRequestError) and error.code == ALREADY_ACKNOWLEDGED


def _settles(error: BaseException) -> bool:
    """Whether an interaction handler's ``error`` settles it rather than asking a retry."""
    return _expired(error) or _answered_elsewhere(error)


#: How long a drain waits for the last acks to be queued to the broker's connection.
ACKS_FLUSH_TIMEOUT: typing.Final = 5.0
#: Characters of an exception's message kept in a dead letter's header.
_ERROR_TEXT_MAX: typing.Final = 500
#: Headers that describe one trip through the broker, not the event: dropped from copies.
_TRIP_HEADERS: typing.Final = ("x-death", "x-delivery-count", "x-acquired-count")


def _clean(headers: typing.Mapping[str, typing.Any]) -> dict[str, typing.Any]:
    return {
        key: value
        for key, value in headers.items()
        if key not in _TRIP_HEADERS and not key.startswith(("x-first-death", "x-last-death"))
    }


def _deliveries(headers: typing.Mapping[str, typing.Any]) -> int:
    """Earlier deliveries of this message as the broker counts them: ``x-delivery-count``
    (quorum queues; failed deliveries only from RabbitMQ 4.3) or ``x-acquired-count`` (4.3+:
    every time a consumer took it)."""
    counts = [headers.get("x-delivery-count"), headers.get("x-acquired-count")]
    return max((c for c in counts if type(c) is int), default=0)


def _done_record(raw: object) -> dict[str, list[str]]:
    """The ``HEADER_DONE`` record of a retried message (empty when absent or unreadable)."""
    if isinstance(raw, bytes | str):
        try:
            record = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return {}
        if isinstance(record, dict):
            return {
                str(key): [str(name) for name in names]
                for key, names in record.items()
                if isinstance(names, list)
            }
    return {}


class EventConsumer:
    def __init__(
        self,
        bot: bot_module.Bot,
        channel: pika_abc.AbstractChannel,
        names: topology.Topology,
        deduplicator: dedupe.Deduplicator,
        *,
        retry_delays: typing.Sequence[float] = config.DEFAULT_RETRY_DELAYS,
    ) -> None:
        self._bot = bot
        self._channel = channel
        self._topology = names
        self._dedupe = deduplicator
        self._retry_delays = tuple(retry_delays)
        #: Work queue → its retry queues, one per delay.
        self._retry_queues: dict[str, list[str]] = {}
        self._tags: list[tuple[pika_abc.AbstractQueue, str]] = []
        self._watching = False
        self._retaking = False
        self._background: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        #: Acks of handlers that finish in one loop turn share a frame.
        self.acks = acks.Acks()
        self.stats = ConsumerStats()

    async def start(self, queues: typing.Iterable[pika_abc.AbstractQueue]) -> None:
        """Consume ``queues``; safe to call again after a partial run (a broker lost during
        the start): a queue already consumed is skipped."""
        consumed = {queue.name for queue, _ in self._tags}
        for queue in queues:
            if queue.name in consumed:
                continue
            self._retry_queues[queue.name] = await self._topology.declare_retry_queues(
                self._channel, queue.name, self._retry_delays
            )
            tag = await queue.consume(functools.partial(self._on_message, queue.name))
            self._tags.append((queue, tag))
            await self._take_deliveries()
        if not self._watching and isinstance(self._channel, aio_pika.RobustChannel):
            # aio-pika consumes again after a reconnect, on its own path: taken back each time.
            self._channel.reopen_callbacks.add(self._take_deliveries)
            self._watching = True

    def _spawn_take(self) -> None:
        async def take() -> None:
            try:
                await self._take_deliveries()
            finally:
                self._retaking = False

        task = asyncio.get_running_loop().create_task(take())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _take_deliveries(self, *_: object) -> None:
        """Have aiormq hand the consumed queues' deliveries to us directly
        (``worker.deliveries``): aio-pika registered, and restores, the consumers."""
        try:
            underlay = await self._channel.get_underlay_channel()
        except Exception:  # closed meanwhile: aio-pika's path, until the next reopen
            return
        for queue, tag in self._tags:
            deliveries.take(underlay, tag, functools.partial(self._on_delivery, queue.name))

    async def declare_retry_queues(self, channel: pika_abc.AbstractChannel) -> None:
        """Declare the retry queues of every consumed queue again on ``channel`` (a broker
        node that came back empty: ``shared.broker.Redeclaring``)."""
        for name in list(self._retry_queues):
            await self._topology.declare_retry_queues(channel, name, self._retry_delays)

    async def stop_intake(self) -> None:
        for queue, tag in self._tags:
            await queue.cancel(tag)
        self._tags.clear()

    async def drain(self, timeout: float) -> None:
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=timeout)
        # Before the connection closes: an ack not sent is a redelivery (a duplicate).
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.acks.flush(), ACKS_FLUSH_TIMEOUT)

    async def _on_delivery(self, queue: str, delivered: aiormq.abc.DeliveredMessage) -> None:
        await self._on_message(queue, deliveries.Delivery(delivered))

    async def _on_message(self, queue: str, message: deliveries.Incoming) -> None:
        if type(message) is not deliveries.Delivery and self._tags and not self._retaking:
            # aio-pika's path: a consumer it took again without a reopen (the broker cancelled
            # it: _restore_missing_consumers), or the moments before the reopen callback.
            self._retaking = True
            self._spawn_take()
        task = asyncio.current_task()
        if task is not None:
            self._inflight.add(task)
        self.acks.delivered(message)
        try:
            await self._process(queue, message)
        finally:
            if task is not None:
                self._inflight.discard(task)

    async def _process(self, queue: str, message: deliveries.Incoming) -> None:
        self.stats.consumed += 1
        try:
            valid, bad = envelope.decode_parts(message.body)
        except envelope.EnvelopeError as exc:
            await self._dead_letter(message, exc.reason)
            return
        headers = typing.cast("dict[str, typing.Any]", message.headers or {})
        deliveries = _deliveries(headers)
        if deliveries >= topology.DELIVERY_LIMIT:
            # Taken this often and never settled (a worker killed by it each time): parked here
            # whatever the broker counts (RabbitMQ 4.3+ does not count every return).
            await self._dead_letter(
                message, f"delivered {deliveries + 1} times without being settled"
            )
            return
        attempt = headers.get(topology.HEADER_ATTEMPT)
        attempt = attempt if type(attempt) is int and attempt >= 0 else 0
        routing_key = redis_client.text(
            headers.get(topology.HEADER_ROUTING_KEY) or message.routing_key or ""
        )
        claimed: list[envelope.EventEnvelope] = []
        done: list[envelope.EventEnvelope] = []
        try:
            for raw, reason in bad:
                # Parked alone: the rest of its batch is handled, and a replay of it fails
                # only itself.
                await self._park(message, orjson.dumps(raw), {topology.HEADER_REASON: reason})
            if not valid:
                self.acks.ack(message)
                return
            # May have run elsewhere: held while Redis is away (not our own retries).
            replayed = bool(message.redelivered) or bool(headers.get(topology.HEADER_REPLAY))
            # A retry is a redelivery: a claim a failed release left behind is taken over.
            # What hikari's helpers (event.get_guild() ...) answer is read in the claim's round
            # trip (on one server; on a cluster, or for what the claim did not read, for all
            # in one more).
            requests = self._bot.app.requests(valid)
            claimed, found = await self._dedupe.claim_and_read(
                valid,
                requests,
                redelivered=bool(message.redelivered) or attempt > 0,
                replayed=replayed,
            )
            self.stats.duplicates += len(valid) - len(claimed)
            record = _done_record(headers.get(topology.HEADER_DONE))
            # What the claim did not read is read now, from the requests already built.
            asked = None
            if requests is not None and len(found) < len(claimed):
                asked = dict(zip(map(id, valid), requests, strict=True))
            views = await self._bot.app.read(claimed, found, asked)
            failed: list[_Failure] = []
            await self._handle_all(
                message, claimed, views, record, done, failed, copy=replayed and attempt == 0
            )
            await self._dedupe.finish(done, [f.item for f in failed])
            if not failed:
                self.acks.ack(message)
                return
            # The retry must find the handled ones done, not merely ours "processing".
            await self._dedupe.flush()
            await self._retry(queue, message, failed, attempt, routing_key)
        except BaseException:
            # Never left unacked (a shutdown's CancelledError included): put back whole for
            # another replica; what was handled is marked done, so only the rest runs again.
            left = [item for item in claimed if item not in done]
            with contextlib.suppress(Exception):
                await self._dedupe.finish(done, left)
            with contextlib.suppress(Exception):
                # reject, not nack: RabbitMQ 4.3+ counts a rejected return towards the
                # delivery limit and a nacked one not (docs/operations.md).
                await message.reject(requeue=True)
                self.acks.settled(message)
            raise

    async def _handle_all(
        self,
        message: deliveries.Incoming,
        claimed: list[envelope.EventEnvelope],
        views: typing.Sequence[cache_view.Entities],
        record: dict[str, list[str]],
        done: list[envelope.EventEnvelope],
        failed: list[_Failure],
        *,
        copy: bool,
    ) -> None:
        """Handle each claimed item (its listeners see ``views``' snapshot of it in their
        event helpers), appending it to ``done`` or ``failed``. ``copy``: a replay or a
        redelivery, not one of our retries, that may have run on another replica."""

        async def handle(item: envelope.EventEnvelope, view: cache_view.Entities) -> None:
            succeeded = list(record.get(item.dedupe_key, ()))
            try:
                with event_view.handling(view):
                    error = await self._handle(item, succeeded, copy=copy)
            except events.UndeserializableError as exc:
                await self._park(
                    message,
                    envelope.encode(item),
                    {topology.HEADER_REASON: shared_logging.redact(exc.reason)},
                )
                done.append(item)  # settled: parked, not to be handled again
                return
            if error is None:
                done.append(item)
            else:
                failed.append(_Failure(item, succeeded, error))

        if len(claimed) > 1 and claimed[0].t in topology.INTERACTION_EVENTS:
            # Each interaction has its own 3 s deadline: a slow command must not hold the next
            # interaction of its batch (a batch holds one routing key).
            outcomes = await asyncio.gather(*map(handle, claimed, views), return_exceptions=True)
            errors = [o for o in outcomes if isinstance(o, BaseException)]
            if errors:
                raise errors[0]
            return
        for item, view in zip(claimed, views, strict=True):
            await handle(item, view)

    async def _retry(
        self,
        queue: str,
        message: deliveries.Incoming,
        failed: list[_Failure],
        attempt: int,
        routing_key: str,
    ) -> None:
        """Send the failed envelopes (only those) to wait in the next retry queue, or, after the
        last retry, to the dead-letter queue with the error; then ack. Listeners that
        succeeded are recorded and not run again."""
        error = failed[-1].error
        headers = _clean(typing.cast("dict[str, typing.Any]", message.headers or {}))
        headers.update(_error_headers(error))
        headers[topology.HEADER_ROUTING_KEY] = routing_key
        headers[topology.HEADER_ATTEMPT] = attempt + 1
        headers[topology.HEADER_DONE] = orjson.dumps(
            {f.item.dedupe_key: f.succeeded for f in failed}
        ).decode()
        body = envelope.encode_batch([f.item for f in failed])
        retries = self._retry_queues.get(queue, [])
        try:
            if attempt < len(retries):
                delay = self._retry_delays[attempt]
                _LOGGER.warning(
                    "handler failed; retrying later",
                    extra={
                        "attempt": attempt + 1,
                        "retry_in": delay,
                        "error_type": headers[topology.HEADER_ERROR_TYPE],
                    },
                )
                _routed(
                    await self._channel.default_exchange.publish(
                        self._copy(message, body, headers), routing_key=retries[attempt]
                    ),
                    retries[attempt],
                )
                self.stats.retried += 1
            else:
                headers[topology.HEADER_REASON] = f"handler failed {attempt + 1} times"
                await self._park(message, body, headers)
        except Exception:
            # Not parked anywhere: back on the queue at once (the delivery limit bounds it).
            _LOGGER.exception("retry not published; requeueing")
            await message.nack(requeue=True)
            self.acks.settled(message)
            return
        self.acks.ack(message)

    @staticmethod
    def _copy(
        message: deliveries.Incoming, body: bytes, headers: dict[str, typing.Any]
    ) -> aio_pika.Message:
        return aio_pika.Message(
            body,
            headers=headers,
            content_type=message.content_type,
            message_id=message.message_id,
            type=message.type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

    async def _handle(
        self, item: envelope.EventEnvelope, succeeded: list[str], *, copy: bool
    ) -> BaseException | None:
        # Every line logged while it runs (the bot's own too) says which shard, guild, event.
        with shared_logging.context(shard=item.shard_id, guild=_guild_of(item), event=item.t):
            try:
                error: BaseException | None = await self._run(item, succeeded)
            except events.UndeserializableError:
                raise
            except Exception as exc:
                # Outside a listener (voice dispatch, the interaction guard): retried alike.
                error = exc
            if error is not None and item.t in topology.INTERACTION_EVENTS and _expired(error):
                # Seed 753623: expired interactions (a backlog after a broker restart) went
                # round the retry queues five times each, over four minutes, for nothing.
                self.stats.expired_interactions += 1
                _LOGGER.warning(
                    "interaction expired before it was answered; not retried",
                    extra={"key": item.dedupe_key, "age": round(time.time() - item.ts, 3)},
                )
                return None
            if (
                copy
                and error is not None
                and item.t in topology.INTERACTION_EVENTS
                and _answered_elsewhere(error)
            ):
                # Only a copy (a replay, a redelivery) may have run elsewhere; on a first
                # delivery or our own retry a 40060 is a failure like any other (a plugin
                # answering twice, an answer before a failure), retried then parked.
                self.stats.interactions_answered_elsewhere += 1
                _LOGGER.warning(
                    "interaction replayed after it was answered; not retried",
                    extra={"key": item.dedupe_key},
                )
                return None
            if error is not None:
                self.stats.failures[item.t] += 1
                _LOGGER.error(
                    "handler failed",
                    exc_info=error,
                    extra={"key": item.dedupe_key, "done": len(succeeded)},
                )
            return error

    async def _run(
        self, item: envelope.EventEnvelope, succeeded: list[str]
    ) -> BaseException | None:
        """Run the listeners of ``item`` not in ``succeeded`` (appending those that succeed);
        the first failure, or None."""
        started = time.time()
        self.stats.age.observe(max(started - item.ts, 0.0))
        self._bot.shard_count = item.shard_count
        if item.t.startswith(voice.EVENT_PREFIX):
            await self._bot.voice.dispatch(item)
            built = []
        else:
            shard = self._bot.remote_shard(item.shard_id, reply_to=item.reply_to)
            built = self._bot.events.build(item.t, typing.cast("typing.Any", shard), item.d)
        skip = set(succeeded)
        first: BaseException | None = None
        for event in built:
            listeners = self._bot.events.listeners_for(event)
            if not listeners:
                continue
            ids = [f"{type(event).__name__}:{name}" for name in events.listener_ids(listeners)]
            if item.t in topology.INTERACTION_EVENTS:
                async with self._bot.interactions.guard(item.d, item.ts):
                    error = await _call(listeners, event, ids, skip, succeeded)
            else:
                error = await _call(listeners, event, ids, skip, succeeded)
            first = _kept(first, error)
        if first is not None:
            return first
        elapsed = time.time() - started
        histogram = self.stats.latency.get(item.t)
        if histogram is None:
            histogram = self.stats.latency[item.t] = Histogram()
        histogram.observe(elapsed)
        self.stats.handled[item.t] += 1
        return None

    async def _dead_letter(self, message: deliveries.Incoming, reason: str) -> None:
        """Park a message we cannot read on the dead-letter queue, with why; lose nothing: a
        park the broker refused or returned (a node back empty, its binding not declared
        again yet) puts the message back on its queue rather than leave it unsettled."""
        try:
            await self._park(message, message.body, {topology.HEADER_REASON: reason})
        except Exception:
            _LOGGER.exception("dead letter not parked; requeueing")
            with contextlib.suppress(Exception):
                await message.reject(requeue=True)
                self.acks.settled(message)
            return
        self.acks.ack(message)

    async def _park(
        self,
        message: deliveries.Incoming,
        body: bytes,
        extra: dict[str, typing.Any],
    ) -> None:
        """Publish ``body`` (a message or a part of one) to the dead-letter queue with
        ``extra`` headers, under the routing key it was first published with (a replay puts
        it back there)."""
        headers = _clean(typing.cast("dict[str, typing.Any]", message.headers or {}))
        routing_key = redis_client.text(
            headers.get(topology.HEADER_ROUTING_KEY) or message.routing_key or ""
        )
        headers.update(extra)
        _LOGGER.warning(
            "dead-lettering", extra={"reason": redis_client.text(headers[topology.HEADER_REASON])}
        )
        exchange = await self._channel.get_exchange(
            self._topology.dead_letter_exchange, ensure=False
        )
        _routed(
            await exchange.publish(self._copy(message, body, headers), routing_key=routing_key),
            self._topology.dead_letter_exchange,
        )
        self.stats.dead_lettered += 1
