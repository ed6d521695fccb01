"""How long a worker's interactions wait after its broker link comes back, with latency on it.

    .venv/bin/python -m bench.broker_recovery [--delays 0,0.05,0.2] [--events 20] [--runs 3]

A robust aio-pika channel restores, after a reconnect, everything declared on it with
``robust=True``, one round trip at a time, and a queue's consumer only after everything
declared before it (soak seeds 952623 and 766573: interactions waited about 10 s after a
RabbitMQ restart with 200 ms added each way). Two ways of declaring one worker group's
topology (both queues, a binding per listened event, the dead-letter path, the four retry
queues of each queue), in the same run, on the shared RabbitMQ:

- ``restore all``: every declaration restored (aio-pika's default; Shardline before this
  benchmark): the baseline;
- ``shardline``: ``shared.topology`` as a worker declares it: the consumed queues and their
  consumers are restored; the durable exchanges, bindings and retry queues, which RabbitMQ
  keeps across a restart, are not (``shared.broker.Redeclaring`` declares them again after
  the restore, off the consumers' path).

Each run declares through ``bench/soak``'s latency proxy (``--delays`` seconds each way),
then closes the proxy (the link dies, as with a broker restart) and opens it again 0.5 s
later. A publisher beside it, straight to the broker, sends an INTERACTION_CREATE every 10 ms
all along. Reported: from the proxy's reopening to the first interaction the worker's
consumer receives (the client's 1 s reconnect interval is inside both figures alike).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import time
import typing
import uuid

import aio_pika
import aiormq

from bench.soak import netdelay
from shared import broker, config, topology
from shared.secret import Secret
from tests import servers

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
POOL, GROUP = "main", "default"
#: A worker with a few plugins listens to about this many gateway events.
DEFAULT_EVENTS = 20
_EVENT_NAMES = (
    "INTERACTION_CREATE", "MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE",
    "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE", "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE",
    "GUILD_MEMBER_REMOVE", "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE",
    "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "VOICE_STATE_UPDATE",
    "VOICE_SERVER_UPDATE", "MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE", "PRESENCE_UPDATE",
    "THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE", "TYPING_START",
)  # fmt: skip


async def _restore_all(
    channel: aio_pika.abc.AbstractChannel, names: topology.Topology, events: list[str]
) -> list[aio_pika.abc.AbstractQueue]:
    """The baseline: the same declarations, every one restored after a reconnect."""
    dead = await channel.declare_exchange(
        names.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_queue = await channel.declare_queue(
        names.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_queue.bind(dead)
    exchange = await channel.declare_exchange(
        names.events_exchange, aio_pika.ExchangeType.TOPIC, durable=True
    )
    await channel.declare_exchange(
        names.commands_exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    arguments = {
        "x-queue-type": "quorum",
        "x-delivery-limit": topology.DELIVERY_LIMIT,
        "x-dead-letter-exchange": names.dead_letter_exchange,
    }
    work = await channel.declare_queue(
        names.worker_queue(POOL, GROUP), durable=True, arguments=arguments
    )
    interactions = await channel.declare_queue(
        names.interaction_queue(POOL, GROUP), durable=True, arguments=arguments
    )
    for name in sorted(events):
        queue = interactions if name in topology.INTERACTION_EVENTS else work
        await queue.bind(exchange, names.event_key(POOL, name))
    for queue in (work, interactions):
        for delay in config.DEFAULT_RETRY_DELAYS:
            await channel.declare_queue(
                names.retry_queue(queue.name, delay),
                durable=True,
                arguments={
                    "x-queue-type": "quorum",
                    "x-message-ttl": max(1, round(delay * 1000)),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": queue.name,
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                },
            )
    return [work, interactions]


async def _shardline(
    channel: aio_pika.abc.AbstractChannel, names: topology.Topology, events: list[str]
) -> list[aio_pika.abc.AbstractQueue]:
    """As ``worker/app.py`` and ``worker/consumer.py`` declare it."""
    queues = list(await names.declare_worker_queues(channel, POOL, GROUP, events))
    for queue in queues:
        await names.declare_retry_queues(channel, queue.name, config.DEFAULT_RETRY_DELAYS)
    return queues


Declare = typing.Callable[
    [aio_pika.abc.AbstractChannel, topology.Topology, list[str]],
    typing.Awaitable[list[aio_pika.abc.AbstractQueue]],
]
WAYS: typing.Final[dict[str, Declare]] = {"restore all": _restore_all, "shardline": _shardline}


async def _publish_forever(names: topology.Topology) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        exchange = await channel.get_exchange(names.events_exchange)
        key = names.event_key(POOL, "INTERACTION_CREATE")
        while True:
            await exchange.publish(aio_pika.Message(b"i"), key)
            await asyncio.sleep(0.01)


async def one_run(way: str, delay: float, events: list[str]) -> float:
    """Seconds from the link's return to the first interaction consumed."""
    names = topology.Topology(f"bench-recovery-{uuid.uuid4().hex[:8]}")
    target = int(AMQP_URL.rsplit(":", 1)[1].split("/")[0])
    proxy = netdelay.DelayProxy(servers.free_port(), target)
    proxy.delay = delay
    await proxy.start()
    url = AMQP_URL.replace(f":{target}/", f":{proxy.port}/")
    connection = await broker.connect([Secret(url)], asyncio.Event())
    received: list[float] = []
    publisher: asyncio.Task[None] | None = None
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=100)
        queues = await WAYS[way](channel, names, events)

        async def take(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            received.append(time.monotonic())
            with contextlib.suppress(aiormq.exceptions.AMQPError, RuntimeError):  # link cut
                await message.ack()

        for queue in queues:
            await queue.consume(take)
        publisher = asyncio.get_running_loop().create_task(_publish_forever(names))
        while not received:
            await asyncio.sleep(0.01)
        await proxy.close()  # the link dies
        await asyncio.sleep(0.5)
        received.clear()
        await proxy.start()
        back = time.monotonic()
        while not received:
            await asyncio.sleep(0.005)
        return received[0] - back
    finally:
        if publisher is not None:
            publisher.cancel()
            await asyncio.gather(publisher, return_exceptions=True)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(connection.close(), 5)
        await proxy.close()
        await _delete(names)


async def _delete(names: topology.Topology) -> None:
    async with await aio_pika.connect(AMQP_URL) as connection:
        channel = await connection.channel()
        for work in (names.worker_queue(POOL, GROUP), names.interaction_queue(POOL, GROUP)):
            for delay in config.DEFAULT_RETRY_DELAYS:
                await channel.queue_delete(names.retry_queue(work, delay))
            await channel.queue_delete(work)
        await channel.queue_delete(names.dead_letter_queue)
        for exchange in (names.events_exchange, names.commands_exchange,
                         names.dead_letter_exchange):  # fmt: skip
            await channel.exchange_delete(exchange)


async def main(delays: list[float], event_count: int, runs: int) -> None:
    events = list(_EVENT_NAMES[:event_count])
    print(f"broker recovery: {event_count} events bound, {runs} runs each, "
          f"seconds from the link's return to the first interaction consumed")  # fmt: skip
    print(f"{'delay each way':>15} {'way':>12} {'median':>8} {'min':>8} {'max':>8}")
    for delay in delays:
        for way in WAYS:
            took = [await one_run(way, delay, events) for _ in range(runs)]
            print(f"{delay * 1000:>12.0f} ms {way:>12} {statistics.median(took):>8.2f} "
                  f"{min(took):>8.2f} {max(took):>8.2f}", flush=True)  # fmt: skip


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.broker_recovery", description=__doc__)
    parser.add_argument("--delays", default="0,0.05,0.2", help="seconds added each way")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    for noisy in ("aio_pika", "aiormq"):  # every reconnect attempt, as designed here
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    asyncio.run(
        main(
            [float(d) for d in arguments.delays.split(",")],
            min(arguments.events, len(_EVENT_NAMES)),
            arguments.runs,
        )
    )
