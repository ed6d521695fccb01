"""Shard leases (``gateway.leases``) against a real Redis."""

from __future__ import annotations

import typing

from gateway import leases
from shared import keys

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis


def _leases(redis: aioredis.Redis, namespace: str, gateway_id: str) -> leases.ShardLeases:
    return leases.ShardLeases(
        redis, keys.RedisKeys(namespace, "main"), gateway_id, ttl=5, shard_count=2
    )


async def test_a_lease_redis_forgot_is_taken_back_by_its_holder(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """Redis restarted empty: the holder's lease key is gone, nobody else holds it, and the
    shard is still connected. Unknown is not "lost": the holder writes it again instead of
    stopping a live shard (found by the soak, seed 1)."""
    mine = _leases(redis_client, namespace, "gw-a")
    assert await mine.claim(0)
    await redis_client.delete(keys.RedisKeys(namespace, "main").lease(0, 2))
    assert await mine.renew([0]) == []
    assert await mine.holders() == ["gw-a", None]
    assert 0 < await redis_client.ttl(keys.RedisKeys(namespace, "main").lease(0, 2)) <= 5


async def test_a_lease_another_gateway_took_is_lost(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    mine = _leases(redis_client, namespace, "gw-a")
    theirs = _leases(redis_client, namespace, "gw-b")
    assert await mine.claim(0)
    await redis_client.delete(keys.RedisKeys(namespace, "main").lease(0, 2))
    assert await theirs.claim(0)
    assert await mine.renew([0]) == [0]
    assert await mine.holders() == ["gw-b", None]
