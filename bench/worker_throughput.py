"""How many typed hikari events one worker replica handles per second.

    .venv/bin/python -m bench.worker_throughput [--events 20000] [--batch 50]

Fills a worker group's queue with MESSAGE_CREATE envelopes, then, in the same run:

* a Shardline worker (hikari-typed events, dedupe, ack after the no-op listener) on one-event
  messages and on batched messages (``--batch`` envelopes per message, as a busy gateway sends);
* the reference: a bare aio-pika consume loop (prefetch 100, orjson, ack) on one-event messages.

Prints events/s and CPU seconds per 1,000 events of each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import typing
import uuid

import aio_pika
import hikari
import orjson

from bench import cleanup
from playground.discord import world
from shared import config, lifecycle, topology
from worker import app
from worker import bot as bot_module

AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def envelopes(count: int) -> list[dict[str, typing.Any]]:
    discord = world.World()
    guild = discord.add_guild("bench")
    channel_id = int(discord.guild_channels(int(guild["id"]))[0]["id"])
    author = discord.add_user("author")
    member = discord.add_member(int(guild["id"]), author)
    template = discord.make_message(channel_id, author, "x" * 300, member=member)
    session = uuid.uuid4().hex
    return [
        {
            "v": 1, "pool": "main", "gateway": "bench", "reply_to": "bench", "shard": [0, 1],
            "session": session, "seq": i + 1, "t": "MESSAGE_CREATE",
            "d": {**template, "id": str(int(template["id"]) + i)}, "ts": time.time(),
        }
        for i in range(count)
    ]  # fmt: skip


def encode(items: list[dict[str, typing.Any]], batch: int) -> list[bytes]:
    """Message bodies of ``batch`` envelopes each (bytes: nothing for the collector to scan)."""
    return [
        orjson.dumps(items[i] if batch == 1 else items[i : i + batch])
        for i in range(0, len(items), batch)
    ]


async def fill(names: topology.Topology, bodies: list[bytes]) -> None:
    """Publish (with confirms, 500 in flight) before the timed part starts."""
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel(publisher_confirms=True)
    exchange = await channel.get_exchange(names.events_exchange)
    key = names.event_key("main", "MESSAGE_CREATE")
    for start in range(0, len(bodies), 500):
        await asyncio.gather(
            *(exchange.publish(aio_pika.Message(body), key) for body in bodies[start : start + 500])
        )
    await connection.close()


async def declare(names: topology.Topology) -> None:
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel()
    await names.declare_worker_queues(channel, "main", "bench", ["MESSAGE_CREATE"])
    await connection.close()


async def shardline_case(namespace: str, bodies: list[bytes], count: int) -> tuple[float, float]:
    names = topology.Topology(namespace)
    await declare(names)
    await fill(names, bodies)
    bot = bot_module.Bot()
    done = asyncio.Event()
    handled = 0

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def noop(event: hikari.GuildMessageCreateEvent) -> None:
        nonlocal handled
        del event
        handled += 1
        if handled == count:
            done.set()

    settings = config.WorkerSettings.from_env(
        {
            "DISCORD_TOKEN": "bench.token.value", "AMQP_URL": AMQP_URL, "REDIS_URL": REDIS_URL,
            "NAMESPACE": namespace, "WORKER_GROUP": "bench", "HEALTH_PORT": "0",
            "DISCORD_API_URL": "http://127.0.0.1:9/api/v10",
        }
    )  # fmt: skip
    replica = app.WorkerApp(settings, bot)
    cpu0, t0 = cpu(), time.perf_counter()
    await replica.start()
    lifecycle.settle_heap()  # as run_until_stopped does in `python -m worker`
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed, used = time.perf_counter() - t0, cpu() - cpu0
    await replica.close()
    return elapsed, used


async def reference_case(namespace: str, bodies: list[bytes]) -> tuple[float, float]:
    names = topology.Topology(namespace)
    await declare(names)
    await fill(names, bodies)
    connection = await aio_pika.connect_robust(AMQP_URL)
    channel = await connection.channel()
    await channel.set_qos(prefetch_count=100)
    queue = await channel.get_queue(names.worker_queue("main", "bench"))
    done = asyncio.Event()
    seen = 0

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen
        orjson.loads(message.body)
        await message.ack()
        seen += 1
        if seen == len(bodies):
            done.set()

    cpu0, t0 = cpu(), time.perf_counter()
    await queue.consume(on_message)
    await asyncio.wait_for(done.wait(), timeout=600)
    elapsed, used = time.perf_counter() - t0, cpu() - cpu0
    await connection.close()
    return elapsed, used


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    args = parser.parse_args()
    items = envelopes(args.events)
    single, batched = encode(items, 1), encode(items, args.batch)
    del items  # the process under test holds no parsed payloads of its own
    rows = []
    for label, runner in (
        (
            "shardline worker, one event per message",
            lambda ns: shardline_case(ns, single, args.events),
        ),
        (
            f"shardline worker, {args.batch} events per message",
            lambda ns: shardline_case(ns, batched, args.events),
        ),
        (
            "bare aio-pika consume loop, one event per message",
            lambda ns: reference_case(ns, single),
        ),
    ):
        namespace = f"bench{uuid.uuid4().hex[:8]}"
        try:
            elapsed, used = await runner(namespace)
        finally:
            await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, ["bench"])
        rows.append((label, args.events / elapsed, used / args.events * 1000))
    print("| consumer | events/s | CPU s per 1k events |")
    print("|---|---|---|")
    for label, rate, per_k in rows:
        print(f"| {label} | {rate:,.0f} | {per_k:.3f} |")
    print()
    print(
        f"ratio (worker one-event / bare): {rows[0][1] / rows[2][1]:.2f}x events/s; "
        f"batched / bare: {rows[1][1] / rows[2][1]:.2f}x"
    )


if __name__ == "__main__":
    asyncio.run(main())
