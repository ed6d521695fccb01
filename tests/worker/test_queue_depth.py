"""Queue depths read from the real broker: fresh on every read, unknown when unreadable."""

from __future__ import annotations

import typing

import aio_pika

from worker import queue_depth

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc


async def test_each_read_is_fresh_and_an_unreadable_queue_is_unknown_not_empty(
    amqp_connection: pika_abc.AbstractRobustConnection, namespace: str
) -> None:
    channel = await amqp_connection.channel(publisher_confirms=True)
    name = f"{namespace}.depth"
    await channel.declare_queue(name, durable=True, arguments={"x-queue-type": "quorum"})
    missing = f"{namespace}.never-declared"
    depths = queue_depth.QueueDepths(amqp_connection, [missing, name])
    await depths.start()
    try:
        assert depths.depths == {name: queue_depth.Depth(messages=0, consumers=0)}
        for expected in (1, 2):
            await channel.default_exchange.publish(aio_pika.Message(b"x"), routing_key=name)
            await depths.read()
            assert depths.depths[name].messages == expected  # not the first answer again
        assert missing not in depths.depths
    finally:
        await depths.close()
