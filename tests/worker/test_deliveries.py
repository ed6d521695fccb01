"""Deliveries taken from aiormq directly, against real RabbitMQ: the same values aio-pika's
message reads, and taken back after the channel is restored."""

from __future__ import annotations

import asyncio
import functools
import typing

import aio_pika
import aiormq
import hikari
import pytest

from tests.worker.test_consumer import item, message_payload, publish, until, worker
from worker import bot as bot_module
from worker import deliveries

if typing.TYPE_CHECKING:
    from aiormq import abc as aiormq_abc

    from tests.gateway.conftest import Stack
    from worker.consumer import EventConsumer


async def test_a_delivery_reads_what_aio_pikas_message_reads(
    amqp_connection: aio_pika.abc.AbstractRobustConnection, namespace: str
) -> None:
    channel = await amqp_connection.channel()
    queue = await channel.declare_queue(f"{namespace}.deliveries", exclusive=True)
    headers = {"x-shardline-attempt": 2, "text": "é", "flag": True, "nested": {"a": [1]}}
    await channel.default_exchange.publish(
        aio_pika.Message(
            b"body", headers=headers, content_type="application/json", message_id="m1", type="t"
        ),
        queue.name,
    )
    got: asyncio.Future[aiormq_abc.DeliveredMessage] = asyncio.get_running_loop().create_future()

    async def on_delivery(delivered: aiormq_abc.DeliveredMessage) -> None:
        got.set_result(delivered)

    underlay = await channel.get_underlay_channel()
    await underlay.basic_consume(queue.name, on_delivery)
    delivered = await asyncio.wait_for(got, 10)
    ours, theirs = deliveries.Delivery(delivered), aio_pika.IncomingMessage(delivered)
    for name in (
        "body", "headers", "delivery_tag", "redelivered", "routing_key", "content_type",
        "message_id", "type",
    ):  # fmt: skip
        assert getattr(ours, name) == getattr(theirs, name), name
    assert ours.channel is theirs.channel
    await ours.reject(requeue=True)
    await channel.close()
    with pytest.raises(aiormq.exceptions.ChannelInvalidStateError):  # as aio-pika's message
        _ = deliveries.Delivery(delivered).channel


async def ours(consumer: EventConsumer) -> bool:
    """Whether aiormq hands every consumed queue's deliveries to the consumer directly."""
    underlay = await consumer._channel.get_underlay_channel()
    callbacks = typing.cast("dict[str, typing.Any]", underlay.consumers)
    return all(
        isinstance(callbacks.get(tag), functools.partial)
        and callbacks[tag].func == consumer._on_delivery
        for _, tag in consumer._tags
    )


async def test_the_worker_takes_its_deliveries_back_after_the_broker_cancels_a_consumer(
    stack: Stack,
) -> None:
    """A queue deleted under the worker: the broker cancels its consumer and aio-pika consumes
    it again on its own path, with no reopen; the first message on that path takes it back."""
    bot = bot_module.Bot()
    seen: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        seen.append(event.content or "")

    async with worker(stack, bot) as replica:
        consumer = replica.consumer
        assert consumer is not None
        assert await ours(consumer)
        admin = await stack.connection.channel()
        await admin.queue_delete(stack.topology.worker_queue("main", "default"))
        await admin.close()
        deadline = asyncio.get_running_loop().time() + 20
        attempt = 0
        while not seen:  # until aio-pika consumes it again and its bindings are back
            assert asyncio.get_running_loop().time() < deadline, "never consumed again"
            attempt += 1
            await publish(stack, item(attempt, "MESSAGE_CREATE", message_payload(stack, "a")))
            await asyncio.sleep(0.3)
        await until_async(lambda: ours(consumer), "deliveries not taken back")
        handled = len(seen)
        await publish(stack, item(1000, "MESSAGE_CREATE", message_payload(stack, "after")))
        await until(lambda: "after" in seen[handled:], "handled once taken back")
        await until(lambda: consumer.acks.in_hand == 0, "acked once taken back")


async def until_async(
    check: typing.Callable[[], typing.Awaitable[bool]], what: str, timeout: float = 10
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.05)


async def test_the_worker_takes_its_deliveries_back_after_the_channel_is_restored(
    stack: Stack,
) -> None:
    bot = bot_module.Bot()
    seen: list[str] = []

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def on_message(event: hikari.GuildMessageCreateEvent) -> None:
        seen.append(event.content or "")

    async with worker(stack, bot) as replica:
        consumer = replica.consumer
        assert consumer is not None
        channel = consumer._channel
        assert await ours(consumer)
        await publish(stack, item(1, "MESSAGE_CREATE", message_payload(stack, "before")))
        await until(lambda: seen == ["before"], "handled before the channel closed")
        # An ack of a tag the broker never gave closes the channel (PRECONDITION_FAILED); the
        # robust channel opens a new one and aio-pika consumes again, on its own path.
        before = await channel.get_underlay_channel()
        await before.basic_ack(10_000)
        await until(lambda: before.is_closed, "the broker closed the channel")

        async def reopened_and_ours() -> bool:
            return not (await channel.get_underlay_channel()).is_closed and await ours(consumer)

        await until_async(reopened_and_ours, "deliveries not taken back")
        await publish(stack, item(2, "MESSAGE_CREATE", message_payload(stack, "after")))
        await until(lambda: seen == ["before", "after"], "handled after the channel reopened")
        await until(lambda: consumer.acks.in_hand == 0, "acked after the channel reopened")
        assert consumer.acks._tracked  # still one frame per turn
        assert not (await channel.get_underlay_channel()).is_closed
