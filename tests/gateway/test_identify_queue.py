"""The identify queue on a fake clock: exact slot times across gateways, on the real Redis.

Discord allows one IDENTIFY per ``shard_id % max_concurrency`` bucket per 5 s (discord-api-docs,
Gateway, "Sharding": max_concurrency); the queue adds a 100 ms margin.
"""

from __future__ import annotations

import asyncio
import typing

import pytest
import redis.asyncio as aioredis

from gateway import identify
from shared import clock as clock_module
from shared import keys

if typing.TYPE_CHECKING:
    import collections.abc

WINDOW_MS: typing.Final = 5100


@pytest.fixture
async def clock() -> collections.abc.AsyncIterator[clock_module.FakeClock]:
    async with clock_module.FakeClock() as fake:
        yield fake


async def test_two_gateways_share_each_bucket_one_identify_per_window(
    redis_url: str, namespace: str, clock: clock_module.FakeClock
) -> None:
    redis_keys = keys.RedisKeys(namespace, "main")
    gateways = [aioredis.Redis.from_url(redis_url) for _ in range(2)]
    try:
        queues = [identify.RedisIdentifyQueue(r, redis_keys, clock=clock) for r in gateways]
        start = clock.now_ms()
        granted: list[tuple[int, int]] = []

        async def identify_shard(shard_id: int) -> None:
            queue = queues[shard_id // 4]  # shards 0-3 on one gateway, 4-7 on the other
            await queue.acquire(shard_id, max_concurrency=2)
            granted.append((shard_id, clock.now_ms() - start))
            await queue.sent(shard_id, max_concurrency=2)  # READY came back at once

        await asyncio.gather(*(clock.spawn(identify_shard(s)) for s in range(8)))
        by_bucket: dict[int, list[int]] = {0: [], 1: []}
        for shard_id, at in granted:
            by_bucket[shard_id % 2].append(at)
        # Four identifies per bucket, exactly one window (and its margin) apart, both
        # buckets side by side, whichever gateway asked.
        expected = [0, WINDOW_MS, 2 * WINDOW_MS, 3 * WINDOW_MS]
        assert sorted(by_bucket[0]) == expected
        assert sorted(by_bucket[1]) == expected
    finally:
        for client in gateways:
            await client.aclose()


async def test_a_slot_is_held_a_window_from_when_the_identify_was_sent(
    redis_client: aioredis.Redis, namespace: str, clock: clock_module.FakeClock
) -> None:
    queue = identify.RedisIdentifyQueue(
        redis_client, keys.RedisKeys(namespace, "main"), clock=clock
    )
    start = clock.now_ms()
    await queue.acquire(0, 1)
    await clock.sleep(2)  # the handshake took 2 s: the window counts from READY
    await queue.sent(0, 1)
    await clock.spawn(queue.acquire(1, 1))
    assert clock.now_ms() - start == 2000 + WINDOW_MS


async def test_without_redis_the_process_keeps_discords_limit_alone(
    clock: clock_module.FakeClock,
) -> None:
    queue = identify.InMemoryIdentifyQueue(clock=clock)
    start = clock.monotonic()

    async def shards_in_turn() -> list[float]:
        # One after another: shards waiting on the queue's lock wait on each other, which
        # a fake clock cannot jump past (shared.clock.FakeClock).
        times = []
        for shard_id in (0, 2, 1, 4):
            await queue.acquire(shard_id, 2)
            times.append(round(clock.monotonic() - start, 3))
        return times

    assert await clock.spawn(shards_in_turn()) == [
        0.0,
        5.0,
        5.0,
        10.0,
    ]  # shard 1 is bucket 1: no wait
