"""Cooldowns and max-concurrency on the real Redis: a burst from three replicas at once is
limited exactly as on one (the end-to-end test sends its commands one after another)."""

from __future__ import annotations

import asyncio
import contextlib
import typing

import redis.asyncio as aioredis

from shared import keys
from worker.commands import cooldowns, model

if typing.TYPE_CHECKING:
    import collections.abc


@contextlib.asynccontextmanager
async def three_replicas(redis_url: str) -> collections.abc.AsyncIterator[list[aioredis.Redis]]:
    """Three connections, as three worker processes have: nothing shared but the server."""
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def test_a_concurrent_burst_over_three_replicas_is_allowed_exactly_rate_times(
    redis_url: str, redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    cooldown = model.Cooldown(2, 60, "global")
    async with three_replicas(redis_url) as clients:
        limiters = [cooldowns.Cooldowns(c, redis_keys) for c in clients]
        waits = await asyncio.gather(
            *(limiters[i % 3].take("limited", cooldown, 0) for i in range(60))
        )
    assert waits.count(0) == 2
    # The others are told how long: until the oldest use leaves the 60 s window (each
    # replica reads its own clock before its call reaches Redis, so a few ms either way).
    assert all(55 < wait <= 60.5 for wait in waits if wait), sorted(waits)
    assert await redis_client.zcard(redis_keys.cooldown("limited", "global:0")) == 2


async def test_max_concurrency_over_three_replicas_admits_exactly_the_limit(
    redis_url: str, redis_client: aioredis.Redis, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    limit = model.MaxConcurrency(3, "guild")
    async with three_replicas(redis_url) as clients:
        slots = [cooldowns.Concurrency(c, redis_keys) for c in clients]
        entered = await asyncio.gather(*(slots[i % 3].enter("slow", limit, 7) for i in range(30)))
        assert entered.count(True) == 3
        # Leaving frees the slots for the next runs, whichever replica leaves.
        await asyncio.gather(*(slots[i].leave("slow", limit, 7) for i in range(3)))
        assert await redis_client.exists(redis_keys.concurrency("slow", "guild:7")) == 0
        assert await slots[1].enter("slow", limit, 7)
