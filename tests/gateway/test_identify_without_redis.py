"""The identify queue while Redis is away: no IDENTIFY until Redis hands out the slot.

Discord allows one IDENTIFY per ``shard_id % max_concurrency`` bucket per 5 s across the whole
bot (discord-api-docs, Gateway, "Sharding for Large Bots"). Two gateways that cannot reach
Redis cannot know what the other did, so neither identifies until Redis answers again (soak
seed 311771 found per-process fallback buckets violating the rule). A private Redis, refused
(not yet started) or hung (SIGSTOP), then back; time on the fake clock.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import typing

import pytest
import redis.asyncio as aioredis

from gateway import identify
from shared import clock as clock_module
from shared import keys
from tests import servers

if typing.TYPE_CHECKING:
    import collections.abc
    import pathlib

WINDOW_MS: typing.Final = 5100
OUTAGE_S: typing.Final = 30


@pytest.fixture
async def clock() -> collections.abc.AsyncIterator[clock_module.FakeClock]:
    async with clock_module.FakeClock() as fake:
        yield fake


@pytest.mark.parametrize("outage", ["refused", "hung"])
async def test_two_gateways_without_redis_never_share_a_bucket_within_a_window(
    tmp_path: pathlib.Path, clock: clock_module.FakeClock, outage: str
) -> None:
    server = servers.PrivateRedis(tmp_path)
    if outage == "hung":
        server.start()
    # Short socket timeouts: a hung Redis costs each attempt real time, while the fake clock
    # stands still (a gateway's own timeouts are longer; the outcome is the same).
    gateways = [
        aioredis.Redis.from_url(server.url, socket_timeout=0.3, socket_connect_timeout=0.3)
        for _ in range(2)
    ]
    redis_keys = keys.RedisKeys("identify-outage", "main")
    queues = [identify.RedisIdentifyQueue(r, redis_keys, clock=clock) for r in gateways]
    start = clock.now_ms()
    granted: list[int] = []

    async def identify_shard(shard_id: int) -> None:
        queue = queues[shard_id // 2 % 2]  # shards 0, 4 on one gateway, 2, 6 on the other
        await queue.acquire(shard_id, max_concurrency=2)  # all four in bucket 0
        granted.append(clock.now_ms() - start)
        await queue.sent(shard_id, max_concurrency=2)

    async def redis_away_then_back() -> None:
        if outage == "hung":
            os.kill(int((tmp_path / "redis.pid").read_text()), signal.SIGSTOP)
        await clock.sleep(OUTAGE_S)
        if outage == "hung":
            os.kill(int((tmp_path / "redis.pid").read_text()), signal.SIGCONT)
        else:
            server.start()

    try:
        await asyncio.gather(
            clock.spawn(redis_away_then_back()),
            *(clock.spawn(identify_shard(s)) for s in (0, 2, 4, 6)),
        )
    finally:
        if outage == "hung":
            os.kill(int((tmp_path / "redis.pid").read_text()), signal.SIGCONT)
        for client in gateways:
            await client.aclose()
        server.stop()
    granted.sort()
    assert len(granted) == 4
    # Nobody identified while Redis was away, and once back, one identify per window.
    assert granted[0] >= OUTAGE_S * 1000
    assert all(b - a >= WINDOW_MS for a, b in itertools.pairwise(granted)), granted


async def test_a_redis_restarted_empty_does_not_hand_out_a_slot_it_forgot(
    tmp_path: pathlib.Path, clock: clock_module.FakeClock
) -> None:
    """A gateway IDENTIFYs; Redis is killed and comes back empty (its slot gone) before the
    window ends; another gateway asks for the same bucket. Without the pool's identify memory it
    got the slot at once: two IDENTIFYs in one bucket within 5 s."""
    server = servers.PrivateRedis(tmp_path)
    server.start()
    redis_keys = keys.RedisKeys("identify-restart", "main")
    first_client = aioredis.Redis.from_url(server.url)
    second_client = aioredis.Redis.from_url(server.url)
    try:
        first = identify.RedisIdentifyQueue(first_client, redis_keys, clock=clock)
        second = identify.RedisIdentifyQueue(second_client, redis_keys, clock=clock)
        start = clock.now_ms()
        await clock.spawn(first.acquire(0, max_concurrency=2))
        # A Redis up for less than a reservation (two windows) may have lost a slot taken that
        # long ago and not yet used: its first ask waits that long.
        assert clock.now_ms() - start == 2 * WINDOW_MS
        await clock.spawn(first.sent(0, max_concurrency=2))
        identified = clock.now_ms()
        server.stop()  # SIGKILL, nothing saved
        server.start()
        await clock.spawn(second.acquire(2, max_concurrency=2))  # bucket 0 too
        assert clock.now_ms() - identified >= WINDOW_MS
    finally:
        await first_client.aclose()
        await second_client.aclose()
        server.stop()


async def test_a_redis_up_for_longer_than_a_window_hands_out_its_first_slot_at_once(
    redis_client: aioredis.Redis, namespace: str, clock: clock_module.FakeClock
) -> None:
    queue = identify.RedisIdentifyQueue(
        redis_client, keys.RedisKeys(namespace, "main"), clock=clock
    )
    start = clock.now_ms()
    await clock.spawn(queue.acquire(0, max_concurrency=1))
    assert clock.now_ms() == start
