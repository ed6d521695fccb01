"""Connecting to RabbitMQ at start (``shared.broker``), against the real broker behind a proxy
that refuses connections until it is restored."""

from __future__ import annotations

import asyncio
import urllib.parse
import uuid

import aiormq
import pytest

from shared import broker
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
