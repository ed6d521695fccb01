"""How many typed hikari events one worker replica handles per second.

    .venv/bin/python -m bench.worker_throughput [--events 20000] [--batch 50]

Fills a worker group's queue with MESSAGE_CREATE envelopes, then, in the same run:

* a Shardline worker (hikari-typed events, dedupe, ack after the no-op listener) on one-event
  messages and on batched messages (``--batch`` envelopes per message, as a busy gateway sends);
* the reference: a bare aio-pika consume loop (prefetch 100, orjson, ack) on one-event messages.

Prints events/s and CPU seconds per 1,000 events of each, timed from the first event handled
to the last: a replica's start-up (connections, declarations, its wait for ``bot.get_me()``,
which no Discord answers here) is not part of its cost per event.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import time
import typing
import uuid

import aio_pika
import hikari
import orjson

from bench import cleanup
from playground.discord import world
from shared import config, lifecycle, loops, topology
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


async def shardline_case(
    namespace: str, bodies: list[bytes], count: int, *, read_with_claim: bool = True
) -> tuple[float, float]:
    names = topology.Topology(namespace)
    await declare(names)
    await fill(names, bodies)
    bot = bot_module.Bot()
    bot.app.read_with_claim = read_with_claim
    done = asyncio.Event()
    handled = 0
    first = (0.0, 0.0)

    @bot.listen(hikari.GuildMessageCreateEvent)
    async def noop(event: hikari.GuildMessageCreateEvent) -> None:
        nonlocal handled, first
        del event
        handled += 1
        if handled == 1:
            first = (cpu(), time.perf_counter())
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
    await replica.start()
    lifecycle.settle_heap()  # as run_until_stopped does in `python -m worker`
    await asyncio.wait_for(done.wait(), timeout=600)
    cpu0, t0 = first
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
    first = (0.0, 0.0)

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        nonlocal seen, first
        orjson.loads(message.body)
        await message.ack()
        seen += 1
        if seen == 1:
            first = (cpu(), time.perf_counter())
        if seen == len(bodies):
            done.set()

    await queue.consume(on_message)
    await asyncio.wait_for(done.wait(), timeout=600)
    cpu0, t0 = first
    elapsed, used = time.perf_counter() - t0, cpu() - cpu0
    await connection.close()
    return elapsed, used


#: (name for --only, label, the case run in a namespace).
_Case = tuple[str, str, typing.Callable[[str], typing.Awaitable[tuple[float, float]]]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=50)
    parser.add_argument(
        "--only",
        help="cases to run, by name, comma-separated: single, batched, bare, single-apart,"
        " batched-apart (to profile one: py-spy record -- python -m bench.worker_throughput"
        " --only single)",
    )
    parser.add_argument(
        "--loops",
        default=",".join(loops.CHOICES),
        help="event loops to run every case on, each in the same run (default: asyncio,uvloop)",
    )
    parser.add_argument(
        "--ab",
        choices=("reads",),
        help="reads: also run the worker with its cache read in a round trip of its own",
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each case, interleaved; the median is shown"
    )
    args = parser.parse_args()
    chosen = [name.strip() for name in args.loops.split(",") if name.strip()]
    items = envelopes(args.events)
    single, batched = encode(items, 1), encode(items, args.batch)
    del items  # the process under test holds no parsed payloads of its own
    cases: list[_Case] = [
        (
            "single",
            "shardline worker, one event per message",
            lambda ns: shardline_case(ns, single, args.events),
        ),
        (
            "batched",
            f"shardline worker, {args.batch} events per message",
            lambda ns: shardline_case(ns, batched, args.events),
        ),
        (
            "bare",
            "bare aio-pika consume loop, one event per message",
            lambda ns: reference_case(ns, single),
        ),
    ]
    if args.ab == "reads":
        cases += [
            (
                "single-apart",
                "shardline worker, one event per message, cache read apart from the claim",
                lambda ns: shardline_case(ns, single, args.events, read_with_claim=False),
            ),
            (
                "batched-apart",
                f"shardline worker, {args.batch} events per message, cache read apart",
                lambda ns: shardline_case(ns, batched, args.events, read_with_claim=False),
            ),
        ]

    async def measured(
        runner: typing.Callable[[str], typing.Awaitable[tuple[float, float]]],
    ) -> tuple[float, float]:
        namespace = f"bench{uuid.uuid4().hex[:8]}"
        try:
            return await runner(namespace)
        finally:
            await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, ["bench"])

    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for _ in range(args.runs):
        # Interleaved (case by case, loop by loop): the broker's and the machine's drift over
        # a run falls on every case alike.
        for case, _label, runner in cases:
            if args.only is not None and case not in args.only.split(","):
                continue
            for loop in chosen:
                # Each on a loop of its own, as each service process runs one.
                elapsed, used = loops.run(measured(runner), loop=loop)
                # Timed from the first event handled: the events after it.
                runs.setdefault((case, loop), []).append(
                    ((args.events - 1) / elapsed, used / (args.events - 1) * 1000)
                )
    rates: dict[tuple[str, str], float] = {}
    print("| consumer | event loop | events/s (median, range) | CPU s per 1k events (median) |")
    print("|---|---|---|---|")
    for case, label, _ in cases:
        for loop in chosen:
            if (case, loop) not in runs:
                continue
            seen = runs[case, loop]
            rate = statistics.median(r for r, _ in seen)
            rates[case, loop] = rate
            low, high = min(r for r, _ in seen), max(r for r, _ in seen)
            print(
                f"| {label} | {loop} | {rate:,.0f} ({low:,.0f} to {high:,.0f}) "
                f"| {statistics.median(c for _, c in seen):.3f} |"
            )
    if args.only:
        return
    print()
    for loop in chosen:
        bare = rates["bare", loop]
        print(
            f"ratio on {loop} (worker one-event / bare): {rates['single', loop] / bare:.2f}x"
            f" events/s; batched / bare: {rates['batched', loop] / bare:.2f}x"
        )
    if "uvloop" in chosen and "asyncio" in chosen:
        for case, label, _ in cases:
            print(
                f"uvloop / asyncio, {label}: {rates[case, 'uvloop'] / rates[case, 'asyncio']:.2f}x"
            )


if __name__ == "__main__":
    main()
