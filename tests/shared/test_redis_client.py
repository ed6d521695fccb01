"""The shared Redis client: bursts wait for a connection instead of failing; a hung Redis
costs a deadline, then the breaker answers at once."""

from __future__ import annotations

import asyncio
import time
import typing

import pytest

from shared import breaker, clock, redis_client, secret
from tests import netproxy, servers

if typing.TYPE_CHECKING:
    import pathlib


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


async def test_a_hung_redis_costs_one_deadline_then_fails_at_once_and_heals(
    tmp_path: pathlib.Path,
) -> None:
    private = servers.PrivateRedis(tmp_path)
    private.start()
    proxy = netproxy.TcpProxy(private.port)
    await proxy.start()
    client = redis_client.connect_guarded(
        secret.Secret(f"redis://127.0.0.1:{proxy.port}/0"), clock=clock.SystemClock()
    )
    try:
        await client.set("k", "1")
        proxy.hang()
        started = time.monotonic()
        # Many callers at once: they all miss the same deadline, and the breaker opens.
        results = await asyncio.gather(
            *(client.get("k") for _ in range(breaker.FAILURES * 2)), return_exceptions=True
        )
        assert time.monotonic() - started < breaker.DEADLINE + 0.5
        assert all(isinstance(r, redis_client.RedisDeadlineExceeded) for r in results), results
        assert all(isinstance(r, redis_client.REDIS_ERRORS) for r in results)
        assert client.breaker.state is breaker.State.OPEN
        started = time.monotonic()
        with pytest.raises(redis_client.RedisBreakerOpen):
            await client.pipeline().get("k").execute()
        assert time.monotonic() - started < 0.05
        proxy.resume()
        await asyncio.sleep(breaker.RESET_AFTER)
        assert await client.get("k") == b"1"  # the probe: answered, so closed again
        assert client.breaker.state is breaker.State.CLOSED
    finally:
        await client.aclose()
        await proxy.close()
        private.stop()
