"""A replica's interests (``worker.interests``) against a real Redis of the test's own (it is
FLUSHALLed), on the fake clock: announced with a notification, re-announced after Redis lost
them, and ready only once every live gateway acknowledged them (or after a bounded wait)."""

from __future__ import annotations

import asyncio
import logging
import time
import typing

import pytest
import redis.asyncio as aioredis

from shared import clock, keys, redis_client, status
from shared import interests as shared_interests
from tests import servers
from worker import interests

if typing.TYPE_CHECKING:
    import pathlib

EVENTS: typing.Final = ("GUILD_CREATE", "MESSAGE_CREATE")


@pytest.fixture
def names(namespace: str) -> keys.RedisKeys:
    return keys.RedisKeys(namespace, "main")


@pytest.fixture
async def private(tmp_path: pathlib.Path) -> typing.AsyncIterator[aioredis.Redis]:
    server = servers.PrivateRedis(tmp_path)
    server.start()
    client = aioredis.Redis.from_url(server.url)
    yield client
    await client.aclose()
    server.stop()


async def members(redis: aioredis.Redis, names: keys.RedisKeys) -> set[str]:
    return {redis_client.text(m) for m in await redis.smembers(names.interests("default"))}


async def gateway_says(
    redis: aioredis.Redis,
    names: keys.RedisKeys,
    gateway: str,
    acks: typing.Mapping[str, str] | None,
    *,
    stopping: bool = False,
) -> None:
    record = status.GatewayStatus(
        gateway=gateway, pool="main", shard_count=1, at=time.time(), interests=acks,
        stopping=stopping,
    )  # fmt: skip
    await redis.set(names.gateway_status(gateway), record.to_json())
    await redis.zadd(names.gateway_index(), {gateway: time.time()})


async def test_announced_with_its_marker_and_a_notification(
    private: aioredis.Redis, names: keys.RedisKeys
) -> None:
    pubsub = private.pubsub()
    await pubsub.subscribe(names.interests_channel())
    announcer = interests.InterestAnnouncer(
        private, names, "default", EVENTS, clock=clock.SystemClock()
    )
    await private.sadd(names.interests("default"), "TYPING_START")  # the previous deploy's
    assert await announcer.announce()
    assert await members(private, names) == {*EVENTS, shared_interests.MARKER}
    assert await private.smembers(names.interest_groups()) == {b"default"}
    message = None
    for _ in range(50):
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
        if message is not None:
            break
    assert message is not None
    assert message["data"] == b"default"
    await pubsub.aclose()
    found = await shared_interests.read(private, names)
    assert found is not None
    assert found.events == set(EVENTS)
    assert found.versions == {"default": shared_interests.version(EVENTS)}


async def test_a_flushall_heals_on_the_next_announcement(
    private: aioredis.Redis, names: keys.RedisKeys
) -> None:
    async with clock.FakeClock() as fake:
        announcer = interests.InterestAnnouncer(private, names, "default", EVENTS, clock=fake)
        assert await announcer.announce()

        async def start() -> None:
            announcer.start()

        await fake.spawn(start())
        try:
            await private.flushall()
            assert await shared_interests.read(private, names) is None  # unknown, not empty
            before = announcer.announcements
            deadline = time.monotonic() + 5
            while await shared_interests.read(private, names) is None:
                assert time.monotonic() < deadline, "never re-announced"
                await asyncio.sleep(0.01)
            assert announcer.announcements > before  # the loop's re-announcement, nobody else
            assert await members(private, names) == {*EVENTS, shared_interests.MARKER}
            assert await private.smembers(names.interest_groups()) == {b"default"}
        finally:
            await announcer.close()


async def test_ready_only_once_every_live_gateway_acknowledged(
    private: aioredis.Redis, names: keys.RedisKeys
) -> None:
    announcer = interests.InterestAnnouncer(
        private, names, "default", EVENTS, clock=clock.SystemClock()
    )
    assert await announcer.announce()
    current = shared_interests.version(EVENTS)
    await gateway_says(private, names, "gw-a", {"default": current})
    await gateway_says(private, names, "gw-b", {"default": "older"})
    await gateway_says(private, names, "gw-c", {})  # an older release acknowledges nothing
    await gateway_says(private, names, "gw-d", None)  # publishes every event: covers us
    await gateway_says(private, names, "gw-e", {}, stopping=True)  # handing over: not counted
    assert sorted(await announcer.unacknowledged()) == ["gw-b", "gw-c"]
    await gateway_says(private, names, "gw-b", {"default": current, "music": "x"})
    await gateway_says(private, names, "gw-c", {"default": current})
    assert await announcer.unacknowledged() == []
    async with clock.FakeClock() as fake:
        announcer = interests.InterestAnnouncer(private, names, "default", EVENTS, clock=fake)
        await fake.spawn(announcer.wait_acknowledged())
        assert announcer.acknowledged


async def test_ready_anyway_after_a_bounded_wait_and_says_so(
    private: aioredis.Redis, names: keys.RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    await gateway_says(private, names, "gw-old", {})
    async with clock.FakeClock() as fake:
        announcer = interests.InterestAnnouncer(private, names, "default", EVENTS, clock=fake)
        assert await announcer.announce()
        started = fake.monotonic()
        with caplog.at_level(logging.WARNING, logger="shardline.worker.interests"):
            await fake.spawn(announcer.wait_acknowledged())
        assert announcer.acknowledged
        assert fake.monotonic() - started == pytest.approx(interests.ACK_TIMEOUT, abs=0.5)
    [record] = caplog.records
    assert "have not acknowledged" in record.getMessage()
    assert record.gateways == ["gw-old"]  # type: ignore[attr-defined]
