"""Starting and stopping shards together with the route of their gateway commands
(``gateway.holder``): on the real RabbitMQ, a command for ``{pool}.shard.{id}`` is routable
exactly while this gateway holds the shard live. The shard group is a stand-in."""

from __future__ import annotations

import typing

import aio_pika
import pytest

from gateway import holder
from shared import topology

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc


class Shards:
    """The parts of a ``ShardGroup`` the holder drives; ``on_start`` runs mid-start."""

    def __init__(self) -> None:
        self.shards: set[int] = set()
        self.on_start: typing.Callable[[], None] = lambda: None

    async def start_shard(self, shard_id: int) -> None:
        self.on_start()
        self.shards.add(shard_id)

    async def stop_shard(self, shard_id: int) -> None:
        self.shards.discard(shard_id)


class Held(typing.NamedTuple):
    holder: holder.ShardHolder
    group: Shards
    standby: list[bool]
    commands: pika_abc.AbstractExchange


@pytest.fixture
async def held(
    amqp_connection: pika_abc.AbstractRobustConnection, namespace: str
) -> typing.AsyncIterator[Held]:
    names = topology.Topology(namespace)
    channel = await amqp_connection.channel(publisher_confirms=True, on_return_raises=True)
    queue = await names.declare_reply_queue(channel, "main", "g1")
    commands = await channel.get_exchange(names.commands_exchange)
    group, standby = Shards(), [False]
    made = holder.ShardHolder(
        typing.cast("typing.Any", group),
        names=names,
        pool="main",
        reply_queue=queue,
        standby=lambda: standby[0],
    )
    yield Held(made, group, standby, commands)
    await channel.close()


async def routed(held: Held, shard_id: int) -> bool:
    """Whether a command for the shard reaches this gateway's queue (mandatory publish)."""
    try:
        await held.commands.publish(
            aio_pika.Message(b"{}"),
            routing_key=topology.Topology.shard_key("main", shard_id),
            mandatory=True,
        )
    except aio_pika.exceptions.DeliveryError:
        return False
    return True


async def test_a_started_shard_takes_its_commands_until_it_stops(held: Held) -> None:
    assert not await routed(held, 3)
    await held.holder.start(3)
    await held.holder.start(1)
    assert held.holder.held == [1, 3]
    assert await routed(held, 3)
    assert await routed(held, 1)
    await held.holder.stop(3)
    assert held.holder.held == [1]
    assert not await routed(held, 3)
    assert await routed(held, 1)


async def test_a_standby_layout_takes_commands_only_once_it_goes_live(held: Held) -> None:
    held.standby[0] = True
    await held.holder.start(0)
    await held.holder.start(1)
    assert held.holder.held == [0, 1]
    assert not await routed(held, 0)
    assert not await routed(held, 1)
    held.standby[0] = False
    await held.holder.route_all()
    assert await routed(held, 0)
    assert await routed(held, 1)


async def test_a_shard_starting_while_the_layout_goes_live_is_routed(held: Held) -> None:
    held.standby[0] = True

    def go_live() -> None:
        held.standby[0] = False

    held.group.on_start = go_live
    await held.holder.start(2)
    assert await routed(held, 2)
