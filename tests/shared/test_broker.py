"""Connecting to RabbitMQ at start (``shared.broker``), against the real broker behind a proxy
that refuses connections until it is restored."""

from __future__ import annotations

import asyncio
import urllib.parse

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
