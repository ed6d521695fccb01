"""The dead-letter queue: what is there and why, and putting messages back."""

from __future__ import annotations

import typing

from aiormq import exceptions as amqp_errors

from shared import redis_client, topology

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc


def _deaths(message: pika_abc.AbstractIncomingMessage) -> list[dict[str, typing.Any]]:
    """RabbitMQ's ``x-death`` records, newest first."""
    deaths = typing.cast("dict[str, typing.Any]", message.headers or {}).get("x-death")
    if not isinstance(deaths, list):
        return []
    return [d for d in deaths if isinstance(d, dict)]


def _origin(message: pika_abc.AbstractIncomingMessage) -> tuple[str, str]:
    """The exchange and routing key a dead letter was first published with."""
    deaths = _deaths(message)
    if deaths:
        first = deaths[-1]
        keys = first.get("routing-keys") or [message.routing_key or ""]
        return redis_client.text(first.get("exchange", "")), redis_client.text(keys[0])
    return "", message.routing_key or ""


def describe(message: pika_abc.AbstractIncomingMessage) -> dict[str, typing.Any]:
    headers = typing.cast("dict[str, typing.Any]", message.headers or {})
    exchange, routing_key = _origin(message)
    reason = headers.get(topology.HEADER_REASON)
    deaths = _deaths(message)
    if reason is None and deaths:
        why, count = (
            redis_client.text(deaths[0].get("reason", "dead-lettered")),
            deaths[0].get("count", "?"),
        )
        reason = f"{why} after {count} deliveries"
    error_type = headers.get(topology.HEADER_ERROR_TYPE)
    error = headers.get(topology.HEADER_ERROR)
    return {
        "id": message.message_id,
        "routing_key": routing_key,
        "exchange": exchange,
        "bytes": len(message.body),
        "reason": None if reason is None else redis_client.text(reason),
        # The last failure of a handler that ran out of retries: type and redacted message.
        "error": None
        if error_type is None
        else f"{redis_client.text(error_type)}: {redis_client.text(error or '')}",
    }


class NoEventsExchangeError(LookupError):
    """There is a dead letter to replay, but no events exchange to put it on (no gateway or
    worker of the namespace has declared it yet)."""


async def _dead_letter_queue(
    channel: pika_abc.AbstractChannel, names: topology.Topology
) -> pika_abc.AbstractQueue | None:
    """The queue, or None before any gateway or worker of the namespace has declared it
    (then nothing was dead-lettered)."""
    try:
        return await channel.get_queue(names.dead_letter_queue)
    except amqp_errors.ChannelNotFoundEntity:
        await channel.reopen()
        return None


async def _events_exchange(
    channel: pika_abc.AbstractChannel, names: topology.Topology
) -> pika_abc.AbstractExchange | None:
    try:
        return await channel.get_exchange(names.events_exchange)
    except amqp_errors.ChannelNotFoundEntity:
        await channel.reopen()
        return None


async def inspect(
    channel: pika_abc.AbstractChannel, names: topology.Topology, limit: int
) -> list[dict[str, typing.Any]]:
    """Up to ``limit`` dead letters, left where they are."""
    queue = await _dead_letter_queue(channel, names)
    if queue is None:
        return []
    seen: list[pika_abc.AbstractIncomingMessage] = []
    try:
        while len(seen) < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            seen.append(message)
        return [describe(m) for m in seen]
    finally:
        for message in seen:
            await message.nack(requeue=True)


async def replay(
    channel: pika_abc.AbstractChannel,
    names: topology.Topology,
    limit: int,
    *,
    reason_contains: str | None = None,
) -> tuple[int, int]:
    """Publish up to ``limit`` dead letters back to the events exchange with their original
    routing key (confirmed before each is removed); returns (replayed, skipped).

    Raises :class:`NoEventsExchangeError` (having put every message back) when there is one to
    replay but no events exchange.
    """
    # Looked up first: a lookup that fails closes the channel, which is then reopened.
    exchange = await _events_exchange(channel, names)
    queue = await _dead_letter_queue(channel, names)
    if queue is None:
        return 0, 0
    replayed = skipped = 0
    kept: list[pika_abc.AbstractIncomingMessage] = []
    try:
        while replayed + skipped < limit:
            message = await queue.get(no_ack=False, fail=False)
            if message is None:
                break
            info = describe(message)
            if reason_contains and reason_contains not in str(info["reason"]):
                kept.append(message)
                skipped += 1
                continue
            if exchange is None:
                kept.append(message)
                raise NoEventsExchangeError(names.events_exchange)
            headers = {
                k: v
                for k, v in (message.headers or {}).items()
                if k
                not in (
                    "x-death",
                    # The dead-letter queue's own count of reads, not the event's.
                    "x-delivery-count",
                    "x-acquired-count",
                    topology.HEADER_REASON,
                    topology.HEADER_ATTEMPT,
                    topology.HEADER_DONE,
                    topology.HEADER_ERROR,
                    topology.HEADER_ERROR_TYPE,
                    topology.HEADER_ROUTING_KEY,
                )
                and not k.startswith("x-first-death")
                and not k.startswith("x-last-death")
            }
            await exchange.publish(
                topology.copy_message(message, headers), routing_key=info["routing_key"]
            )
            await message.ack()
            replayed += 1
    finally:
        for message in kept:
            await message.nack(requeue=True)
    return replayed, skipped
