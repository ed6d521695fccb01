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

        async def ours() -> bool:
            underlay = await channel.get_underlay_channel()
            callbacks = typing.cast("dict[str, typing.Any]", underlay.consumers)
            return all(
                isinstance(callbacks.get(tag), functools.partial)
                and callbacks[tag].func == consumer._on_delivery
                for _, tag in consumer._tags
            )

        assert await ours()
        await publish(stack, item(1, "MESSAGE_CREATE", message_payload(stack, "before")))
        await until(lambda: seen == ["before"], "handled before the channel closed")
        # An ack of a tag the broker never gave closes the channel (PRECONDITION_FAILED); the
        # robust channel opens a new one and aio-pika consumes again, on its own path.
        before = await channel.get_underlay_channel()
        await before.basic_ack(10_000)
        await until(lambda: before.is_closed, "the broker closed the channel")
        deadline = asyncio.get_running_loop().time() + 10
        while not (not (await channel.get_underlay_channel()).is_closed and await ours()):
            assert asyncio.get_running_loop().time() < deadline, "deliveries not taken back"
            await asyncio.sleep(0.05)
        await publish(stack, item(2, "MESSAGE_CREATE", message_payload(stack, "after")))
        await until(lambda: seen == ["before", "after"], "handled after the channel reopened")
        await until(lambda: consumer.acks.in_hand == 0, "acked after the channel reopened")
        assert consumer.acks._tracked  # still one frame per turn
        assert not (await channel.get_underlay_channel()).is_closed
