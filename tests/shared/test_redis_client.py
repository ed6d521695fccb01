"""The shared Redis client: bursts wait for a connection instead of failing."""

from __future__ import annotations

import asyncio

from shared import redis_client, secret


async def test_a_burst_beyond_the_pool_waits_instead_of_failing(
    redis_url: str, namespace: str
) -> None:
    client = redis_client.connect(secret.Secret(redis_url))
    try:
        # Three times the pool, each holding its connection for a moment (BLPOP on nothing).
        many = redis_client.MAX_CONNECTIONS * 3
        results = await asyncio.gather(
            *(client.blpop([f"{namespace}:never:{i}"], timeout=0.1) for i in range(many))
        )
    finally:
        await client.aclose()
    assert results == [None] * many
