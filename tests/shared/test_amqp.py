"""The broker connection over several nodes, on the real broker: the first node that answers
is used; every reconnect attempt goes to the next one (the cluster tests, tests/faults, kill
real nodes)."""

from __future__ import annotations

import asyncio
import typing

import pytest

from shared import amqp
from shared.secret import Secret
from tests import netproxy, servers


def _dead_node() -> str:
    return f"amqp://guest:guest@127.0.0.1:{servers.free_port()}/"


async def test_cluster_connect_skips_nodes_that_do_not_answer(amqp_url: str) -> None:
    connection = await amqp.connect([Secret(_dead_node()), Secret(amqp_url)])
    try:
        assert isinstance(connection, amqp.FailoverConnection)
        assert connection.node == f"127.0.0.1:{servers.AMQP_PORT}"
        channel = await connection.channel()
        await channel.close()
    finally:
        await connection.close()


async def test_cluster_connect_fails_with_no_url_in_the_error_when_no_node_answers() -> None:
    urls = [Secret(_dead_node().replace("guest:guest", "guest:s3cretpw")) for _ in range(2)]
    with pytest.raises(OSError) as caught:
        await amqp.connect(urls)
    assert "s3cretpw" not in str(caught.value)


async def test_cluster_a_lost_connection_reconnects_to_the_next_node(amqp_url: str) -> None:
    # The first "node" is a proxy we cut, as a node dies; the second is the real broker.
    proxy = netproxy.TcpProxy(servers.AMQP_PORT)
    await proxy.start()
    first = f"amqp://guest:guest@127.0.0.1:{proxy.port}/"
    connection = await amqp.connect([Secret(first), Secret(amqp_url)])
    reconnected = asyncio.Event()
    connection.reconnect_callbacks.add(lambda *_: reconnected.set())
    try:
        assert isinstance(connection, amqp.FailoverConnection)
        assert connection.node == f"127.0.0.1:{proxy.port}"
        await proxy.cut()
        await asyncio.wait_for(reconnected.wait(), 30)
        assert connection.node == f"127.0.0.1:{servers.AMQP_PORT}"
        assert connection.failovers == 1  # the first attempt after the loss went elsewhere
        exported = amqp.BrokerCollector()
        exported.connection = connection
        samples = {
            (sample.name, tuple(sample.labels.values())): sample.value
            for family in exported.collect()
            for sample in family.samples
        }
        assert samples[("shardline_broker_failovers_total", ())] == 1
        assert samples[("shardline_broker_node", (f"127.0.0.1:{servers.AMQP_PORT}",))] == 1
        channel = await connection.channel()
        await channel.close()
    finally:
        await connection.close()
        await proxy.close()


def test_cluster_split_urls_keeps_order_and_refuses_duplicates() -> None:
    urls = amqp.split_urls("amqp://a:1/, amqp://b:2/")
    assert [amqp.node_name(url) for url in urls] == ["a:1", "b:2"]
    with pytest.raises(ValueError, match="twice"):
        amqp.split_urls("amqp://a:1/,amqp://a:1/")
    assert amqp.default_quorum_size(1) is None
    assert [amqp.default_quorum_size(n) for n in (2, 3, 5)] == [2, 3, 3]


__all__: typing.Sequence[str] = ()


async def test_one_node_is_tried_again_every_second_not_every_five(amqp_url: str) -> None:
    """aio-pika's default (5 s) left a restarted broker unused for up to five seconds: an
    interaction arriving then missed its 3 s (soak seed 330917)."""
    connection = await amqp.connect([Secret(amqp_url)])
    try:
        assert connection.reconnect_interval == amqp.FAILOVER_RECONNECT_INTERVAL == 1.0
    finally:
        await connection.close()
    chosen = await amqp.connect([Secret(f"{amqp_url}?reconnect_interval=3")])
    try:
        assert chosen.reconnect_interval == 3.0  # the URL's own wins
    finally:
        await chosen.close()
