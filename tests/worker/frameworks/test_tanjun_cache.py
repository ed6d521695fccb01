"""tanjun's asynchronous cache interfaces on the Redis cache: a miss, or Redis not answering, is
tanjun's ``CacheMissError`` (so tanjun asks REST), never ``EntryNotFound``."""

from __future__ import annotations

import typing

import pytest
import redis.asyncio as aioredis
from hikari.impl import entity_factory
from redis import backoff
from redis.asyncio import retry
from tanjun.dependencies import async_cache

from shared import keys
from shared.cache import reader
from worker.frameworks import tanjun_cache

if typing.TYPE_CHECKING:
    import hikari


def cache_on(redis: aioredis.Redis, namespace: str) -> reader.CacheReader:
    factory = entity_factory.EntityFactoryImpl(typing.cast("typing.Any", None))
    return reader.CacheReader(redis, keys.RedisKeys(namespace, "main"), factory)


async def test_what_redis_does_not_hold_is_a_miss_or_the_default(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    cache = cache_on(redis_client, namespace)
    members = tanjun_cache.MemberCache(cache)
    with pytest.raises(async_cache.CacheMissError) as missed:
        await members.get_from_guild(1, 2)
    assert not isinstance(missed.value, async_cache.EntryNotFound)  # unknown is not absent
    assert await members.get_from_guild(1, 2, default=None) is None
    assert await tanjun_cache.GuildCache(cache).get(1, default="none") == "none"
    with pytest.raises(async_cache.CacheMissError):
        await members.iter_all()
    assert await tanjun_cache.RoleCache(cache).iter_for_guild(1) == []


async def test_the_bots_own_user_is_the_one_the_worker_fetched() -> None:
    me: list[hikari.OwnUser] = []
    own = tanjun_cache.OwnUserCache(lambda: me[0] if me else None)
    with pytest.raises(async_cache.CacheMissError):
        await own.get()
    me.append(typing.cast("hikari.OwnUser", object()))
    assert await own.get() is me[0]


async def test_redis_away_is_a_miss(namespace: str, unused_tcp_port: int) -> None:
    away = aioredis.Redis(port=unused_tcp_port, retry=retry.Retry(backoff.NoBackoff(), 0))
    try:
        cache = cache_on(away, namespace)
        with pytest.raises(async_cache.CacheMissError):
            await tanjun_cache.UserCache(cache).get(1)
        with pytest.raises(async_cache.CacheMissError):
            await tanjun_cache.RoleCache(cache).iter_for_guild(1)
    finally:
        await away.aclose()
