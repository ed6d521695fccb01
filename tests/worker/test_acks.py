"""Acks coalesced per loop turn, against real RabbitMQ: what a multiple ack covers is exactly
what was settled here, and the broker's answer (the channel stays open, nothing is left
unacked or acked twice) is the proof."""

from __future__ import annotations

import asyncio
import typing

import aio_pika
import pytest

from worker import acks as acks_module

if typing.TYPE_CHECKING:
    from aio_pika import abc as pika_abc
    from aiormq import abc as aiormq_abc


class Taken:
    """A consumer on a queue of its own: every delivery told to ``acks`` (unless skipped)."""

    def __init__(
        self,
        acks: acks_module.Acks,
        channel: pika_abc.AbstractChannel,
        underlay: aiormq_abc.AbstractChannel,
        *,
        skip: int = 0,
    ) -> None:
        self.acks = acks
        self.channel = channel
        #: The channel the deliveries came on (a robust channel would hide its close).
        self.underlay = underlay
        self.messages: list[pika_abc.AbstractIncomingMessage] = []
        self._skip = skip
        self._wanted = 0
        self._enough = asyncio.Event()

    async def on_message(self, message: pika_abc.AbstractIncomingMessage) -> None:
        self.messages.append(message)
        if len(self.messages) != self._skip:
            self.acks.delivered(message)
        if len(self.messages) >= self._wanted:
            self._enough.set()

    async def take(self, count: int) -> list[pika_abc.AbstractIncomingMessage]:
        self._wanted = count
        self._enough.clear()
        if len(self.messages) < count:
            await asyncio.wait_for(self._enough.wait(), 10)
        return self.messages[:count]


async def start(
    connection: pika_abc.AbstractRobustConnection,
    name: str,
    count: int,
    acks: acks_module.Acks,
    *,
    skip: int = 0,
) -> Taken:
    """``count`` messages on a new queue ``name``, consumed by a new channel."""
    setup = await connection.channel()
    await setup.declare_queue(name, auto_delete=False)
    for number in range(count):
        await setup.default_exchange.publish(aio_pika.Message(str(number).encode()), name)
    await setup.close()
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    taken = Taken(acks, channel, await channel.get_underlay_channel(), skip=skip)
    queue = await channel.get_queue(name)
    await queue.consume(taken.on_message)
    return taken


async def left(connection: pika_abc.AbstractRobustConnection, taken: Taken, name: str) -> int:
    """Close the consuming channel (the broker requeues what it did not ack), then count what
    is back on the queue, and delete it."""
    await asyncio.sleep(0.1)  # the broker's channel.close, if it came, has arrived
    assert not taken.underlay.is_closed, "the broker closed the channel: an unknown tag"
    await taken.channel.close()
    channel = await connection.channel()
    queue = await channel.declare_queue(name, passive=True)
    count = queue.declaration_result.message_count
    assert count is not None
    await channel.queue_delete(name)
    await channel.close()
    return count


@pytest.fixture
def name(namespace: str) -> str:
    return f"{namespace}.acks"


async def test_acks_of_one_turn_share_one_frame(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 50, acks)
    for message in await taken.take(50):
        acks.ack(message)
    await acks.flush()
    assert acks.frames == 1
    assert acks.in_hand == 0
    assert await left(amqp_connection, taken, name) == 0


async def test_a_delivery_in_hand_is_never_covered(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 10, acks)
    messages = await taken.take(10)
    for message in messages[1:]:
        acks.ack(message)  # the first is still in its handler
    await acks.flush()
    assert acks.frames == 9  # each alone: a multiple ack would settle the first too
    acks.ack(messages[0])
    await acks.flush()
    assert acks.frames == 10
    assert await left(amqp_connection, taken, name) == 0


async def test_the_first_in_hand_comes_back_if_never_settled(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 10, acks)
    messages = await taken.take(10)
    for message in messages[1:]:
        acks.ack(message)
    await acks.flush()
    assert await left(amqp_connection, taken, name) == 1


@pytest.mark.parametrize("rejected", [2, 4])
async def test_a_multiple_ack_never_names_a_rejected_tag(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str, rejected: int
) -> None:
    # RabbitMQ closes the channel on an ack of a tag it no longer holds (PRECONDITION_FAILED
    # "unknown delivery tag"): naming the rejected last tag would.
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 5, acks)
    messages = await taken.take(5)
    await messages[rejected].reject(requeue=False)
    acks.settled(messages[rejected])
    for index, message in enumerate(messages):
        if index != rejected:
            acks.ack(message)
    await acks.flush()
    assert acks.frames == 1
    assert await left(amqp_connection, taken, name) == 0


async def test_a_second_ack_is_not_sent(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 3, acks)
    messages = await taken.take(3)
    for message in messages:
        acks.ack(message)
    await acks.flush()
    acks.ack(messages[1])  # covered by the multiple ack already
    await acks.flush()
    assert acks.frames == 1
    assert await left(amqp_connection, taken, name) == 0


async def test_a_delivery_not_seen_is_never_covered(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 5, acks, skip=2)  # the second not told
    messages = await taken.take(5)
    for index, message in enumerate(messages):
        if index != 1:
            acks.ack(message)
    await acks.flush()
    assert acks.frames == 4  # the first alone under the floor (a multiple ack), 3 above it
    assert await left(amqp_connection, taken, name) == 1  # the one not seen


async def test_deliveries_seen_out_of_order_are_acked_together_once_the_gap_fills(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 4, acks, skip=2)
    messages = await taken.take(4)
    for message in (messages[0], messages[2], messages[3]):
        acks.ack(message)
    acks.delivered(messages[1])  # late, as from aio-pika's path beside ours
    acks.ack(messages[1])
    await acks.flush()
    assert acks.frames == 1
    assert await left(amqp_connection, taken, name) == 0


async def test_memory_stays_bounded_behind_a_delivery_in_hand(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    """A slow command holds one tag for seconds: what finishes behind it is acked alone and
    forgotten, not kept until the slow one settles."""
    acks = acks_module.Acks()
    taken = await start(amqp_connection, name, 60, acks)
    messages = await taken.take(60)
    for message in messages[1:]:
        acks.ack(message)
    await acks.flush()
    assert acks.in_hand == 1
    assert (len(acks._waiting), len(acks._ahead)) == (0, 0)
    acks.ack(messages[0])
    await acks.flush()
    assert acks.frames == 60
    assert await left(amqp_connection, taken, name) == 0


async def test_a_new_channel_starts_its_own_count(
    amqp_connection: pika_abc.AbstractRobustConnection, name: str
) -> None:
    acks = acks_module.Acks()
    first = await start(amqp_connection, name, 3, acks)
    old = await first.take(3)
    assert await left(amqp_connection, first, name) == 3  # closed before any ack
    second = await start(amqp_connection, name, 4, acks)
    for message in old:
        acks.ack(message)  # a channel gone: not sent, counted
    for message in await second.take(4):
        acks.ack(message)
    await acks.flush()
    assert (acks.frames, acks.lost) == (1, 3)
    assert await left(amqp_connection, second, name) == 0
