"""Connecting to RabbitMQ at start (``shared.broker``), against the real broker behind a proxy
that refuses connections until it is restored."""

from __future__ import annotations

import asyncio
import dataclasses
import typing
import urllib.parse
import uuid

import aio_pika
import aiormq
import pytest

from shared import broker, topology
from shared.secret import Secret
from tests import netproxy


async def test_a_process_started_while_the_broker_is_down_waits_for_it(amqp_url: str) -> None:
    target = urllib.parse.urlsplit(amqp_url)
    proxy = netproxy.TcpProxy(target.port or 5672)
    url = amqp_url.replace(f":{target.port}", f":{proxy.port}")
    loop = asyncio.get_running_loop()
    loop.call_later(1.5, lambda: loop.create_task(proxy.restore()))  # the broker comes back
    try:
        connection = await asyncio.wait_for(broker.connect([Secret(url)], asyncio.Event()), 30)
        channel = await connection.channel()
        assert not channel.is_closed
        await connection.close()
    finally:
        await proxy.close()


async def test_a_stop_while_waiting_for_the_broker_ends_the_wait() -> None:
    stopping = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, stopping.set)
    unreachable = "amqp://guest:guest@127.0.0.1:1/"
    with pytest.raises(broker.BrokerStoppedError):
        await asyncio.wait_for(broker.connect([Secret(unreachable)], stopping), 10)


async def test_a_declare_the_broker_refuses_is_not_retried(amqp_url: str) -> None:
    """A bad declare (here an exchange declared again with another type) closes the channel;
    it fails the start at once instead of being retried as if the broker were lost."""
    connection = await broker.connect([Secret(amqp_url)], asyncio.Event())
    name = f"test.declaring.{uuid.uuid4().hex}"
    try:
        channel = await connection.channel()
        await channel.declare_exchange(name, "topic", auto_delete=True)
        other = await connection.channel()
        with pytest.raises(aiormq.exceptions.ChannelPreconditionFailed):
            await asyncio.wait_for(
                broker.declaring(
                    connection,
                    asyncio.Event(),
                    "exchange",
                    lambda: other.declare_exchange(name, "direct", auto_delete=True),
                ),
                10,
            )
    finally:
        await connection.close()


async def test_a_stop_while_the_broker_is_lost_during_a_declare_ends_the_wait(
    amqp_url: str,
) -> None:
    target = urllib.parse.urlsplit(amqp_url)
    proxy = netproxy.TcpProxy(target.port or 5672)
    await proxy.start()
    url = amqp_url.replace(f":{target.port}", f":{proxy.port}")
    stopping = asyncio.Event()
    connection = await broker.connect([Secret(url)], stopping)
    try:
        channel = await connection.channel()
        proxy.cut_when = lambda data: True  # the next thing the client sends
        loop = asyncio.get_running_loop()
        loop.call_later(1.0, stopping.set)
        with pytest.raises(broker.BrokerStoppedError):
            await asyncio.wait_for(
                broker.declaring(
                    connection,
                    stopping,
                    "queue",
                    lambda: channel.declare_queue(exclusive=True),
                ),
                10,
            )
        assert proxy.tripped.is_set()
    finally:
        await connection.close()
        await proxy.close()


async def _worker_topology(
    url: str, names: topology.Topology, received: asyncio.Queue[str]
) -> tuple[aio_pika.abc.AbstractRobustConnection, aio_pika.RobustChannel, broker.Redeclaring]:
    """A worker's declarations (``worker/app.py``): its queues consumed, its routes, its retry
    queues, and a Redeclaring for what the restore leaves out."""
    connection = await broker.connect([Secret(url)], asyncio.Event())
    channel = await connection.channel()
    assert isinstance(channel, aio_pika.RobustChannel)
    events, interactions = await names.declare_worker_queues(
        channel, "main", "default", ["MESSAGE_CREATE", "INTERACTION_CREATE"]
    )
    for queue in (events, interactions):
        await names.declare_retry_queues(channel, queue.name, [1.0])

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            await message.ack()
            received.put_nowait(message.body.decode())

        await queue.consume(take)
    again = broker.Redeclaring(connection)
    for queue in (events, interactions):
        again.add(
            "retry",
            lambda on, name=queue.name: names.declare_retry_queues(on, name, [1.0]),
        )
    again.add(
        "routes",
        lambda on: names.declare_worker_routes(
            on, "main", "default", ["MESSAGE_CREATE", "INTERACTION_CREATE"]
        ),
    )
    await again.watch(channel)
    return connection, channel, again


@dataclasses.dataclass
class Wired:
    """A worker's topology (``_worker_topology``) through a proxy the test may cut."""

    names: topology.Topology
    proxy: netproxy.TcpProxy
    received: asyncio.Queue[str]
    connection: aio_pika.abc.AbstractRobustConnection
    channel: aio_pika.RobustChannel
    again: broker.Redeclaring


@pytest.fixture
async def wired(amqp_url: str) -> typing.AsyncIterator[Wired]:
    names = topology.Topology(f"t{uuid.uuid4().hex[:8]}")
    target = urllib.parse.urlsplit(amqp_url)
    proxy = netproxy.TcpProxy(target.port or 5672)
    await proxy.start()
    received: asyncio.Queue[str] = asyncio.Queue()
    connection, channel, again = await _worker_topology(
        amqp_url.replace(f":{target.port}", f":{proxy.port}"), names, received
    )
    try:
        yield Wired(names, proxy, received, connection, channel, again)
    finally:
        await again.close()
        await connection.close()
        await proxy.close()
        await _clean(amqp_url, names)


async def _publish(url: str, names: topology.Topology, event: str) -> None:
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names.events_exchange)
        await exchange.publish(aio_pika.Message(event.encode()), names.event_key("main", event))


async def test_a_reconnect_consumes_again_with_the_durable_routes_left_to_the_broker(
    amqp_url: str, wired: Wired
) -> None:
    """The robust channel restores only the consumed queues and their consumers (one round
    trip each); the exchanges and bindings, durable, are still on the broker."""
    names, channel = wired.names, wired.channel
    assert channel._exchanges == {}  # nothing durable is in the restore...
    assert {len(q._bindings) for qs in channel._queues.values() for q in qs} == {0}
    assert set(channel._queues) == {  # ...but what is consumed
        names.worker_queue("main", "default"),
        names.interaction_queue("main", "default"),
    }
    await wired.proxy.cut()
    await wired.proxy.restore()
    await asyncio.wait_for(wired.again.declared.wait(), 20)
    assert wired.again.rounds == 1
    for event in ("MESSAGE_CREATE", "INTERACTION_CREATE"):
        await _publish(amqp_url, names, event)
        assert await asyncio.wait_for(wired.received.get(), 10) == event


async def test_a_node_that_came_back_empty_gets_its_routes_declared_again(
    amqp_url: str, wired: Wired
) -> None:
    """While the link is down the broker forgets everything (a node whose disk was lost): the
    restore declares the consumed queues, then Redeclaring the exchanges, the bindings, the
    dead-letter path and the retry queues."""
    names = wired.names
    await wired.proxy.cut()
    await _clean(amqp_url, names)  # the node's disk is gone
    await wired.proxy.restore()
    await asyncio.wait_for(wired.again.declared.wait(), 20)
    assert wired.again.rounds == 1
    for event in ("MESSAGE_CREATE", "INTERACTION_CREATE"):
        await _publish(amqp_url, names, event)
        assert await asyncio.wait_for(wired.received.get(), 10) == event
    async with await aio_pika.connect(amqp_url) as check:
        channel = await check.channel()
        await channel.get_exchange(names.dead_letter_exchange)  # passive: it exists
        await channel.get_queue(names.dead_letter_queue)
        work = names.worker_queue("main", "default")
        await channel.get_queue(names.retry_queue(work, 1.0))


async def test_a_queue_deleted_under_its_consumer_gets_its_bindings_declared_again(
    amqp_url: str, wired: Wired
) -> None:
    """The broker cancels the consumer of a deleted queue; aio-pika declares the queue and
    consumes it again but binds only what it restores, which is no longer the durable routes
    (a review of the restore change): Redeclaring binds it, so events reach it again."""
    names = wired.names
    async with await aio_pika.connect(amqp_url) as admin:
        channel = await admin.channel()
        await channel.queue_delete(names.worker_queue("main", "default"))
    await asyncio.wait_for(wired.again.declared.wait(), 20)
    await _publish(amqp_url, names, "MESSAGE_CREATE")
    assert await asyncio.wait_for(wired.received.get(), 10) == "MESSAGE_CREATE"


async def _clean(url: str, names: topology.Topology) -> None:
    """Delete every exchange and queue of ``names`` a worker of pool main declares."""
    work = [names.worker_queue("main", "default"), names.interaction_queue("main", "default")]
    queues = [
        *work,
        *(names.retry_queue(q, 1.0) for q in work),
        names.dead_letter_queue,
    ]
    exchanges = [names.events_exchange, names.commands_exchange, names.dead_letter_exchange]
    async with await aio_pika.connect(url) as connection:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        for exchange in exchanges:
            await channel.exchange_delete(exchange)
