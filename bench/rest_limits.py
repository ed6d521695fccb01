"""REST throughput against Discord's limits with 1, 2 and 3 replicas, and the limiter's cost.

    .venv/bin/python -m bench.rest_limits [--route-requests 60] [--global-requests 150]

Against the Discord emulator (which enforces Discord's documented limits and counts 429s),
with the real limiter on loopback Redis, each "replica" a REST client of its own:

* one route bucket (10 requests per second on one channel): requests sent as fast as the
  replicas can, the rate achieved against the 10/s the bucket allows, and the 429s;
* the global limit (50/s) with requests spread over 20 channels, likewise;
* the limiter's added latency: sequential requests with the shared limiter and, in the same
  run, with no limiter at all (``REST_LIMITER=off``); p50 and p99 of each and the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
import typing
import uuid

from bench import cleanup
from playground.discord import emulator, ratelimit
from shared import keys, redis_client, secret
from worker import bot as bot_module
from worker import rest_limits

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")
if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

ROUTE = "POST /channels/{channel_id}/messages"


def clients(
    discord: emulator.DiscordEmulator,
    redis: aioredis.Redis,
    namespace: str,
    count: int,
    limiter: str,
    global_limit: int = 50,
) -> list[rest_limits.LimitedRESTClient]:
    made = []
    for _ in range(count):
        client = rest_limits.build_client(
            token=discord.token,
            api_url=discord.api_url,
            entity_factory=bot_module.Bot().entity_factory,
            limiter=limiter,
            global_limit=global_limit,
            redis=redis,
            redis_keys=keys.RedisKeys(namespace, "main"),
        )
        client.start()
        made.append(client)
    return made


async def throughput(
    redis: aioredis.Redis, replicas: int, requests: int, *, spread: bool
) -> tuple[float, int]:
    """Seconds to send ``requests`` through ``replicas`` clients of one token, and 429s."""
    options = ratelimit.RateLimitOptions(
        route_limits={ROUTE: (10, 1.0)}, default_route_limit=(10, 1.0)
    )
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    async with emulator.DiscordEmulator(rate_limits=options) as discord:
        guild = discord.add_guild("bench", channels=20)
        channels = [int(c["id"]) for c in discord.channels_of(int(guild["id"]))]
        made = clients(discord, redis, namespace, replicas, "redis")
        started = time.monotonic()
        try:
            await asyncio.gather(
                *(
                    made[i % replicas].create_message(
                        channels[i % len(channels)] if spread else channels[0], f"m{i}"
                    )
                    for i in range(requests)
                )
            )
        finally:
            elapsed = time.monotonic() - started
            for client in made:
                await client.close()
            await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, [])
        return elapsed, len(discord.records.rate_limited)


async def latency(redis: aioredis.Redis, limiter: str, requests: int) -> tuple[float, float]:
    namespace = f"bench{uuid.uuid4().hex[:8]}"
    options = ratelimit.RateLimitOptions(
        global_limit=100_000, default_route_limit=(100_000, 1.0), route_limits={}
    )
    async with emulator.DiscordEmulator(rate_limits=options) as discord:
        guild = discord.add_guild("bench")
        channel = int(discord.channels_of(int(guild["id"]))[0]["id"])
        # A limit that does not bind: what is measured is the limiter's own cost per call.
        (client,) = clients(discord, redis, namespace, 1, limiter, global_limit=100_000)
        samples = []
        try:
            for i in range(requests + 50):
                t0 = time.perf_counter()
                await client.create_message(channel, f"m{i}")
                if i >= 50:  # after warm-up
                    samples.append(time.perf_counter() - t0)
        finally:
            await client.close()
            await cleanup.cleanup(AMQP_URL, REDIS_URL, namespace, [])
    cuts = statistics.quantiles(samples, n=100)
    return cuts[49] * 1000, cuts[98] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--route-requests", type=int, default=60)
    parser.add_argument("--global-requests", type=int, default=150)
    parser.add_argument("--latency-requests", type=int, default=1000)
    args = parser.parse_args()
    redis = redis_client.connect(secret.Secret(REDIS_URL))
    try:
        print("| limit | replicas | requests | seconds | fastest the limit allows | share | 429s |")
        print("|---|---|---|---|---|---|---|")
        for label, count, fastest, spread in (
            # 10 per window of 1 s: the last window opens (n/10 - 1) s after the first.
            ("one route, 10 per 1 s", args.route_requests, args.route_requests / 10 - 1, False),
            # 50 per second sustained. (A burst at the start of each of Discord's fixed windows
            # could end a short run up to a second sooner; it cannot exceed 50/s for long.)
            ("global, 50/s (20 channels)", args.global_requests, args.global_requests / 50, True),
        ):
            for replicas in (1, 2, 3):
                elapsed, limited = await throughput(redis, replicas, count, spread=spread)
                print(
                    f"| {label} | {replicas} | {count} | {elapsed:.2f} | {fastest:.2f} "
                    f"| {fastest / elapsed:.0%} | {limited} |"
                )
        shared = await latency(redis, "redis", args.latency_requests)
        bare = await latency(redis, "off", args.latency_requests)
        print()
        print("| REST call (loopback emulator) | p50 | p99 |")
        print("|---|---|---|")
        print(f"| with the shared limiter | {shared[0]:.3f} ms | {shared[1]:.3f} ms |")
        print(f"| no limiter (REST_LIMITER=off) | {bare[0]:.3f} ms | {bare[1]:.3f} ms |")
        print(
            f"| added by the limiter | {shared[0] - bare[0]:+.3f} ms | {shared[1] - bare[1]:+.3f} ms |"
        )
    finally:
        await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main())
