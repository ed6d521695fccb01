"""The shared Redis client under Sentinel: the master killed under load, the replica promoted
by the sentinels, and the guarded client following it (``redis+sentinel://``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing

from shared import clock, keys, redis_client, secret

if typing.TYPE_CHECKING:
    from tests import servers


async def test_cluster_mode_sentinel_follows_a_failover_and_loses_no_acknowledged_write(
    redis_sentinel: servers.PrivateRedisSentinel, namespace: str
) -> None:
    client = redis_client.connect_guarded(
        secret.Secret(redis_sentinel.url), clock=clock.SystemClock()
    )
    names = keys.RedisKeys(namespace, "main")
    counter = names.guild_member_ids(7)
    script = client.register_script("return redis.call('SADD', KEYS[1], ARGV[1])")
    acknowledged: list[tuple[int, float]] = []
    enough = asyncio.Event()
    stop = asyncio.Event()
    killed_at, goal, errors = 0.0, 0, 0
    kinds: set[str] = set()

    async def write() -> None:
        nonlocal errors
        value = 0
        while not stop.is_set():
            started = time.monotonic()
            try:
                await script(keys=[counter], args=[value])
            except redis_client.REDIS_ERRORS as exc:
                kinds.add(type(exc).__name__)
                errors += 1
                await asyncio.sleep(0.05)
                continue
            acknowledged.append((value, started))
            if killed_at and acknowledged[-1][1] > killed_at and len(acknowledged) > goal:
                enough.set()
            value += 1

    try:
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(names.guild(1), "x")
            pipe.get(names.guild(1))
            assert await pipe.execute() == [True, b"x"]
        writer = asyncio.create_task(write())
        await asyncio.sleep(0.5)
        goal = len(acknowledged) + 200
        killed_at = time.monotonic()
        redis_sentinel.kill(redis_sentinel.master_port)
        with contextlib.suppress(TimeoutError):  # judged below
            await asyncio.wait_for(enough.wait(), 30)
        stop.set()
        await writer
        recovered = [t for _, t in acknowledged if t > killed_at]
        assert recovered, "no write succeeded after the master was killed"
        stored = {int(m) for m in await client.smembers(counter)}
        lost = [(v, killed_at - t) for v, t in acknowledged if v not in stored]
        print(  # noqa: T201 - the measurement this test exists for
            f"\nsentinel failover: {len(acknowledged)} writes acknowledged, {errors} refused,"
            f" writes again {recovered[0] - killed_at:.2f}s after the kill,"
            f" {len(lost)} acknowledged writes lost {lost[:5]} {kinds};"
            f" {len(recovered)} writes after it, the last {recovered[-1] - killed_at:.2f}s after"
        )
        assert all(before_kill < 0.1 for _, before_kill in lost), lost
    finally:
        stop.set()
        await client.aclose()
