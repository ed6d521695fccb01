"""Cooldowns and max-concurrency on the real Redis and a fake clock: a burst from three
replicas at once is limited exactly as on one (the end-to-end test sends its commands one
after another), and the cooldown ends exactly when its window says."""

from __future__ import annotations

import asyncio
import contextlib
import typing

import pytest
import redis.asyncio as aioredis

from shared import clock as clock_module
from shared import keys
from tests import servers
from worker.commands import cooldowns, model

if typing.TYPE_CHECKING:
    import collections.abc


@pytest.fixture
async def clock() -> collections.abc.AsyncIterator[clock_module.FakeClock]:
    async with clock_module.FakeClock() as fake:
        yield fake


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
    redis_url: str, redis_client: aioredis.Redis, namespace: str, clock: clock_module.FakeClock
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    cooldown = model.Cooldown(2, 60, "global")
    async with three_replicas(redis_url) as clients:
        limiters = [cooldowns.Cooldowns(c, redis_keys, clock=clock) for c in clients]
        waits = await asyncio.gather(
            *(limiters[i % 3].take("limited", cooldown, 0) for i in range(60))
        )
        assert sorted(waits) == [0, 0] + [60.0] * 58  # until the oldest use leaves the window
        assert await redis_client.zcard(redis_keys.cooldown("limited", "global:0")) == 2
        # 20 s on, 40 s are left; at exactly 60 s the window has room for two uses again.
        await clock.sleep(20)
        assert await limiters[1].take("limited", cooldown, 0) == 40.0
        await clock.sleep(40)
        assert [await limiters[i].take("limited", cooldown, 0) for i in range(3)] == [0, 0, 60.0]


async def test_a_sliding_window_frees_one_use_at_a_time(
    redis_client: aioredis.Redis, namespace: str, clock: clock_module.FakeClock
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    cooldown = model.Cooldown(2, 10, "user")
    limiter = cooldowns.Cooldowns(redis_client, redis_keys, clock=clock)
    assert await limiter.take("slow", cooldown, 1) == 0
    await clock.sleep(3)
    assert await limiter.take("slow", cooldown, 1) == 0
    assert await limiter.take("slow", cooldown, 1) == 7.0  # the use at 0 leaves at 10 s
    assert await limiter.take("slow", cooldown, 2) == 0  # another user's own window
    await clock.sleep(7)
    assert await limiter.take("slow", cooldown, 1) == 0
    assert await limiter.take("slow", cooldown, 1) == 3.0  # now the use at 3 s is the oldest


async def test_a_user_is_told_to_slow_down_once_per_wait(
    redis_client: aioredis.Redis, namespace: str, clock: clock_module.FakeClock
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    cooldown = model.Cooldown(1, 5, "user")
    limiter = cooldowns.Cooldowns(redis_client, redis_keys, clock=clock)
    assert await limiter.first_notice("cmd", cooldown, 1, 7, 5.0)
    assert not await limiter.first_notice("cmd", cooldown, 1, 7, 5.0)
    assert await limiter.first_notice("cmd", cooldown, 1, 8, 5.0)  # another user
    await clock.sleep(4.999)
    assert not await limiter.first_notice("cmd", cooldown, 1, 7, 0.001)
    await clock.sleep(0.001)  # the wait is over: the next flood is told again
    assert await limiter.first_notice("cmd", cooldown, 1, 7, 5.0)


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


@contextlib.asynccontextmanager
async def redis_away() -> collections.abc.AsyncIterator[aioredis.Redis]:
    """A client of a Redis that refuses connections (the port of a stopped server)."""
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{servers.free_port()}/0")
    try:
        yield client
    finally:
        await client.aclose()


async def test_with_redis_away_a_cooldown_is_held_by_each_replica_on_its_own(
    namespace: str, clock: clock_module.FakeClock
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    cooldown = model.Cooldown(2, 10, "user")
    async with redis_away() as client:
        limiter = cooldowns.Cooldowns(client, redis_keys, clock=clock)
        # Unknown is not "no limit" and not "refuse": the same sliding log, in memory.
        assert [await limiter.take("slow", cooldown, 1) for _ in range(3)] == [0, 0, 10.0]
        assert await limiter.take("slow", cooldown, 2) == 0
        assert await limiter.first_notice("slow", cooldown, 1, 1, 10.0)
        assert not await limiter.first_notice("slow", cooldown, 1, 1, 10.0)
        await clock.sleep(4)
        assert await limiter.take("slow", cooldown, 1) == 6.0
        await clock.sleep(6)
        assert await limiter.first_notice("slow", cooldown, 1, 1, 1.0)  # the wait is over
        assert await limiter.take("slow", cooldown, 1) == 0


async def test_with_redis_away_max_concurrency_is_held_by_each_replica_on_its_own(
    namespace: str,
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    limit = model.MaxConcurrency(2, "guild")
    async with redis_away() as client:
        slots = cooldowns.Concurrency(client, redis_keys)
        entered = [await slots.enter("slow", limit, 7) for _ in range(4)]
        assert entered == [True, True, False, False]
        await slots.leave("slow", limit, 7)
        assert await slots.enter("slow", limit, 7)
        assert not await slots.enter("slow", limit, 7)
        for _ in range(2):
            await slots.leave("slow", limit, 7)
        await slots.leave("slow", limit, 7)  # one leave too many: Redis is asked, and fails
