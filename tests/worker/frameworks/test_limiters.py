"""The frameworks' cooldowns and concurrency limits kept in Redis: what one replica takes, another
sees (two connections, as two worker processes have), on the real Redis and a fake clock."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import types
import typing

import arc
import pytest
import redis.asyncio as aioredis
import tanjun
from redis import backoff
from redis.asyncio import retry

from shared import clock as clock_module
from shared import keys
from worker.frameworks import arc as arc_glue
from worker.frameworks import tanjun as tanjun_glue

if typing.TYPE_CHECKING:
    import collections.abc


@pytest.fixture
async def clock() -> collections.abc.AsyncIterator[clock_module.FakeClock]:
    async with clock_module.FakeClock() as fake:
        yield fake


@contextlib.asynccontextmanager
async def two_replicas(redis_url: str) -> collections.abc.AsyncIterator[list[aioredis.Redis]]:
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


def context(user: int, guild: int = 10, channel: int = 20) -> typing.Any:
    """What the limiters read of a tanjun or arc context: who, where."""
    return types.SimpleNamespace(
        author=types.SimpleNamespace(id=user), guild_id=guild, channel_id=channel
    )


async def test_a_tanjun_cooldown_taken_on_one_replica_holds_on_the_other(
    redis_url: str, namespace: str, clock: clock_module.FakeClock
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    async with two_replicas(redis_url) as clients:
        first, second = (
            tanjun_glue.RedisCooldownManager(c, redis_keys, clock=clock).set_bucket(
                "hi", tanjun.BucketResource.USER, 1, dt.timedelta(seconds=10)
            )
            for c in clients
        )
        alice = context(1)
        await first.try_acquire("hi", alice)
        await first.release("hi", alice)
        with pytest.raises(tanjun.dependencies.CooldownDepleted) as depleted:
            await second.try_acquire("hi", context(1))
        assert depleted.value.wait_until == dt.datetime.fromtimestamp(
            clock.now_ms() / 1000 + 10, tz=dt.UTC
        )
        await second.try_acquire("hi", context(2))  # another user's own bucket
        with pytest.raises(tanjun.dependencies.ResourceNotTracked):
            await second.release("hi", context(1))  # refused, so never tracked
        await clock.sleep(10)
        await second.try_acquire("hi", context(1))


async def test_a_tanjun_member_bucket_is_per_guild_and_unknown_buckets_use_the_default(
    redis_client: aioredis.Redis, namespace: str, clock: clock_module.FakeClock
) -> None:
    manager = (
        tanjun_glue.RedisCooldownManager(
            redis_client, keys.RedisKeys(namespace, "main"), clock=clock
        )
        .set_bucket("mod", tanjun.BucketResource.MEMBER, 1, 60)
        .set_bucket("default", tanjun.BucketResource.GLOBAL, 1, 5)
        .disable_bucket("free")
    )
    await manager.try_acquire("mod", context(1, guild=10))
    await manager.try_acquire("mod", context(1, guild=11))  # the same user in another guild
    with pytest.raises(tanjun.dependencies.CooldownDepleted):
        await manager.try_acquire("mod", context(1, guild=10))
    await manager.try_acquire("unset", context(1))
    with pytest.raises(tanjun.dependencies.CooldownDepleted):
        await manager.try_acquire("unset", context(2))  # the default here is global
    for _ in range(5):
        await manager.try_acquire("free", context(1))  # a disabled bucket never limits
    with pytest.raises(ValueError, match="TOP_ROLE"):
        manager.set_bucket("roles", tanjun.BucketResource.TOP_ROLE, 1, 5)


async def test_a_tanjun_concurrency_slot_is_shared_by_the_replicas(
    redis_url: str, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    async with two_replicas(redis_url) as clients:
        first, second = (
            tanjun_glue.RedisConcurrencyLimiter(c, redis_keys).set_bucket(
                "render", tanjun.BucketResource.GLOBAL, 1
            )
            for c in clients
        )
        running = context(1)
        await first.try_acquire("render", running)
        with pytest.raises(tanjun.dependencies.ResourceDepleted):
            await second.try_acquire("render", context(2))
        with pytest.raises(tanjun.dependencies.ResourceNotTracked):
            await second.release("render", context(2))
        await first.release("render", running)
        await second.try_acquire("render", context(2))


async def test_arc_limiter_hooks_count_in_redis_across_replicas(
    redis_url: str, namespace: str, clock: clock_module.FakeClock
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    async with two_replicas(redis_url) as clients:
        first, second = (
            arc_glue.RedisLimiter(c, redis_keys, "hi", 10, 1, "user", clock=clock) for c in clients
        )
        assert not (await first(context(1)))._abort
        with pytest.raises(arc.UnderCooldownError) as refused:
            await second(context(1))
        assert refused.value.retry_after == 10.0
        assert second.is_rate_limited(context(1))  # what this replica saw
        assert not first.is_rate_limited(context(1))  # arc asks synchronously: no Redis
        second.reset(context(1))
        await asyncio.gather(*second._tasks)
        assert not (await first(context(1)))._abort


async def test_arc_concurrency_slots_are_shared_and_a_refusal_gives_nothing_back(
    redis_url: str, namespace: str
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    async with two_replicas(redis_url) as clients:
        first, second = (
            arc_glue.RedisConcurrencyLimiter(c, redis_keys, "render", 1, "global") for c in clients
        )
        running, waiting = context(1), context(2)
        assert not second.is_exhausted(waiting)  # arc asks first, synchronously: acquire decides
        await first.acquire(running)
        with pytest.raises(arc.MaxConcurrencyReachedError):
            await second.acquire(waiting)
        second.release(waiting)  # arc releases after a refusal too: nothing to give back
        assert not second._tasks
        with pytest.raises(arc.MaxConcurrencyReachedError):
            await second.acquire(waiting)
        first.release(running)
        await asyncio.gather(*first._tasks)
        await second.acquire(waiting)


async def test_redis_away_is_not_a_refusal(namespace: str, unused_tcp_port: int) -> None:
    away = aioredis.Redis(port=unused_tcp_port, retry=retry.Retry(backoff.NoBackoff(), 0))
    redis_keys = keys.RedisKeys(namespace, "main")
    try:
        cooldowns = tanjun_glue.RedisCooldownManager(away, redis_keys).set_bucket(
            "hi", tanjun.BucketResource.USER, 1, 60
        )
        await cooldowns.try_acquire("hi", context(1))
        await cooldowns.try_acquire("hi", context(1))
        limiter = tanjun_glue.RedisConcurrencyLimiter(away, redis_keys).set_bucket(
            "hi", tanjun.BucketResource.USER, 1
        )
        await limiter.try_acquire("hi", context(1))
        await limiter.try_acquire("hi", context(1))
        assert not (await arc_glue.RedisLimiter(away, redis_keys, "hi", 60, 1)(context(1)))._abort
        await arc_glue.RedisConcurrencyLimiter(away, redis_keys, "hi", 1).acquire(context(1))
    finally:
        await away.aclose()
