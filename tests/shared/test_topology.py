"""Declarations against the real RabbitMQ."""

from __future__ import annotations

import asyncio
import typing

import aio_pika
import pytest

from shared import topology

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc


async def get_one(
    queue: pika_abc.AbstractQueue, timeout: float = 5.0
) -> pika_abc.AbstractIncomingMessage:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        message = await queue.get(fail=False, no_ack=False)
        if message is not None:
            return message
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail(f"nothing arrived on {queue.name}")
        await asyncio.sleep(0.02)


async def test_names_are_namespaced() -> None:
    names = topology.Topology("ns")
    assert names.events_exchange == "ns.events"
    assert names.worker_queue("main", "default") == "ns.main.default.events"
    assert names.reply_queue("main", "gw1") == "ns.main.gateway.gw1"
    assert names.event_key("main", "MESSAGE_CREATE") == "main.MESSAGE_CREATE"
    assert names.shard_key("premium", 7) == "premium.shard.7"
    assert names.lavalink_key("main", "TrackStartEvent") == "main.lavalink.TrackStartEvent"


async def test_worker_queues_bind_only_listened_events(
    amqp_connection: aio_pika.abc.AbstractRobustConnection, namespace: str
) -> None:
    names = topology.Topology(namespace)
    channel = await amqp_connection.channel()
    events_queue, interactions = await names.declare_worker_queues(
        channel, "main", "default", ["MESSAGE_CREATE", "INTERACTION_CREATE"]
    )
    exchange = await channel.get_exchange(names.events_exchange)
    for event in ("MESSAGE_CREATE", "TYPING_START", "INTERACTION_CREATE"):
        await exchange.publish(aio_pika.Message(event.encode()), names.event_key("main", event))
    await exchange.publish(
        aio_pika.Message(b"other pool"), names.event_key("beta", "MESSAGE_CREATE")
    )
    message = await get_one(events_queue)
    assert message.body == b"MESSAGE_CREATE"
    await message.ack()
    interaction = await get_one(interactions)
    assert interaction.body == b"INTERACTION_CREATE"
    await interaction.ack()
    await asyncio.sleep(0.2)
    assert await events_queue.get(fail=False) is None
    assert await interactions.get(fail=False) is None

    await names.unbind_worker_events(channel, "main", "default", ["MESSAGE_CREATE"])
    await exchange.publish(aio_pika.Message(b"x"), names.event_key("main", "MESSAGE_CREATE"))
    await asyncio.sleep(0.2)
    assert await events_queue.get(fail=False) is None


async def test_reply_queue_routes_by_gateway_and_shard(
    amqp_connection: aio_pika.abc.AbstractRobustConnection, namespace: str
) -> None:
    names = topology.Topology(namespace)
    channel = await amqp_connection.channel()
    queue = await names.declare_reply_queue(channel, "main", "gw-a")
    await names.bind_shard(queue, "main", 5)
    commands = await channel.get_exchange(names.commands_exchange)
    await commands.publish(aio_pika.Message(b"to-gateway"), names.gateway_key("gw-a"))
    await commands.publish(aio_pika.Message(b"to-shard"), names.shard_key("main", 5))
    await commands.publish(aio_pika.Message(b"elsewhere"), names.shard_key("main", 6))
    bodies = {(await get_one(queue)).body, (await get_one(queue)).body}
    assert bodies == {b"to-gateway", b"to-shard"}
    await names.unbind_shard(queue, "main", 5)
    await commands.publish(aio_pika.Message(b"late"), names.shard_key("main", 5))
    await asyncio.sleep(0.2)
    assert await queue.get(fail=False) is None
    await queue.delete()


async def test_poison_message_is_dead_lettered_after_the_delivery_limit(
    amqp_connection: aio_pika.abc.AbstractRobustConnection, namespace: str
) -> None:
    names = topology.Topology(namespace)
    channel = await amqp_connection.channel()
    events_queue, _ = await names.declare_worker_queues(
        channel, "main", "default", ["GUILD_CREATE"]
    )
    dead = await names.declare_dead_letter(channel)
    exchange = await channel.get_exchange(names.events_exchange)
    await exchange.publish(aio_pika.Message(b"poison"), names.event_key("main", "GUILD_CREATE"))
    for _ in range(topology.DELIVERY_LIMIT + 1):
        message = await get_one(events_queue)
        await message.reject(requeue=True)
    dead_message = await get_one(dead)
    assert dead_message.body == b"poison"
    assert dead_message.headers.get("x-first-death-reason") == "delivery_limit"
    await dead_message.ack()


async def test_cluster_quorum_size_is_set_on_new_queues_and_existing_ones_keep_theirs(
    amqp_connection: pika_abc.AbstractRobustConnection, namespace: str
) -> None:
    """An upgrade to a configured replica count never stops at a queue declared without one
    (the broker refuses a declaration whose arguments differ): it is kept as it is, on the
    same (robust) channel, and its other arguments are still checked."""
    channel = await amqp_connection.channel()
    before = topology.Topology(namespace)
    events, _ = await before.declare_worker_queues(channel, "main", "default", ["GUILD_CREATE"])
    sized = topology.Topology(namespace, quorum_size=3)
    again, _ = await sized.declare_worker_queues(channel, "main", "default", ["GUILD_CREATE"])
    assert again.name == events.name
    assert topology.QUORUM_SIZE_ARGUMENT not in (again.arguments or {})
    fresh = await sized.declare_quorum(channel, f"{namespace}.fresh", {})
    assert (fresh.arguments or {})[topology.QUORUM_SIZE_ARGUMENT] == 3
    # Another mismatch is still refused.
    other = await amqp_connection.channel()
    with pytest.raises(aio_pika.exceptions.ChannelPreconditionFailed):
        await sized.declare_quorum(other, events.name, {"x-max-length": 10})
    await channel.queue_delete(fresh.name)
    await channel.close()
