"""Settings reads on the hot path, and MongoDB round trips per 1,000 command invocations.

    .venv/bin/python -m bench.settings_reads [--guilds 1000] [--reads 20000]

Uses ``MONGO_URL`` when set, otherwise starts a private mongod from the pinned wheel (the
one the tests use). In the same run:

* ``SettingsStore.guild()`` with the replica's local copy warm (the hot path of a command);
* the same through Redis only (local copies off: what a replica reads after an invalidation);
* the baseline: one ``find_one`` on MongoDB per read, as code without a cache does;
* 1,000 command invocations on two replicas (guild and user settings read by each, one write
  in a hundred), counting every command the MongoDB driver sends after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import pathlib
import random
import statistics
import tempfile
import time
import typing
import uuid

import redis.asyncio as aioredis
from pymongo import monitoring

from bench import cleanup
from shared import keys
from shared.settings import store
from tests import servers

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


class CommandCounter(monitoring.CommandListener):
    """Every command the driver sends to MongoDB (what a round trip is)."""

    def __init__(self) -> None:
        self.count = 0

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        del event
        self.count += 1

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        del event

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        del event


async def timed(
    read: typing.Callable[[int], typing.Awaitable[object]], ids: list[int]
) -> tuple[float, float, float]:
    """Reads per second, p50 and p99 in ms, one read at a time."""
    samples = []
    started = time.perf_counter()
    for entity in ids:
        t0 = time.perf_counter()
        await read(entity)
        samples.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(samples, n=100)
    return len(ids) / elapsed, cuts[49] * 1000, cuts[98] * 1000


async def run(mongo_url: str, guilds: int, reads: int) -> None:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    redis = aioredis.Redis.from_url(REDIS_URL)
    redis_keys = keys.RedisKeys(namespace, "main")
    counter = CommandCounter()
    client = store.connect(mongo_url, event_listeners=[counter])
    database = client.get_database(namespace)
    replicas = [
        store.SettingsStore(database, redis, redis_keys),
        store.SettingsStore(database, redis, redis_keys),
        store.SettingsStore(database, redis, redis_keys, local_ttl=0.0),
    ]
    try:
        for replica in replicas:
            await replica.start()
        first, second, redis_only = replicas
        for guild_id in range(1, guilds + 1, 2):  # half the guilds have settings
            await first.set_prefix(guild_id, "?")
        rng = random.Random(7)
        ids = [rng.randint(1, guilds) for _ in range(reads)]
        for guild_id in range(1, guilds + 1):  # warm-up: every guild read once
            await second.guild(guild_id)
            await redis_only.guild(guild_id)
        collection = database.get_collection("guild_settings")
        rows = [
            ("SettingsStore.guild(), local copy warm", await timed(second.guild, ids)),
            ("SettingsStore.guild(), through Redis", await timed(redis_only.guild, ids)),
            (
                "baseline: find_one on MongoDB per read",
                await timed(lambda g: collection.find_one({"_id": g}), ids[: reads // 4]),
            ),
        ]
        print("| read | reads/s | p50 | p99 |")
        print("|---|---|---|---|")
        for label, (rate, p50, p99) in rows:
            print(f"| {label} | {rate:,.0f} | {p50:.3f} ms | {p99:.3f} ms |")
        print(f"\nlocal / baseline: {rows[0][1][0] / rows[2][1][0]:.0f}x reads/s")

        # 1,000 command invocations over two replicas after warm-up.
        users = [rng.randint(1, 5000) for _ in range(1000)]
        for user_id in set(users):
            await first.user(user_id)
            await second.user(user_id)
        for writes in (0, 10):
            before = counter.count
            for index in range(1000):
                replica = (first, second)[index % 2]
                guild_id = ids[index]
                await replica.guild(guild_id)
                await replica.user(users[index])
                if writes and index % (1000 // writes) == 0:
                    await replica.set_prefix(guild_id, rng.choice("?!$%"))
            trips = counter.count - before
            print(
                f"MongoDB round trips per 1,000 command invocations after warm-up, "
                f"{writes} of them writing: {trips}"
            )
    finally:
        for replica in replicas:
            await replica.close()
        await client.drop_database(namespace)
        await client.close()
        await redis.aclose()
        await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, [])


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--guilds", type=int, default=1000)
    parser.add_argument("--reads", type=int, default=20_000)
    args = parser.parse_args()
    url = os.environ.get("MONGO_URL")
    with contextlib.ExitStack() as exits:
        if url is None:
            server = servers.MongoServer(
                pathlib.Path(exits.enter_context(tempfile.TemporaryDirectory()))
            )
            server.start()
            exits.callback(server.stop)
            url = server.url
        await run(url, args.guilds, args.reads)


if __name__ == "__main__":
    asyncio.run(main())
