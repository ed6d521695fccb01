"""Which events some worker group listens to, read from the real Redis where each group
announces its own (``gateway.interests``); a Redis that is away keeps the known ones."""

from __future__ import annotations

import logging
import typing

import pytest
import redis.asyncio as aioredis
from redis import backoff
from redis.asyncio import retry

from gateway import interests
from shared import keys
from tests import servers


class Forwarding:
    """The one part of ``EventPublisher`` that ``refresh`` sets: the events to publish."""

    def __init__(self, known: frozenset[str] = frozenset()) -> None:
        self.interests = known


async def refresh(redis: aioredis.Redis, names: keys.RedisKeys, events: Forwarding) -> None:
    await interests.refresh(redis, names, typing.cast("typing.Any", events))


@pytest.fixture
def names(namespace: str) -> keys.RedisKeys:
    return keys.RedisKeys(namespace, "main")


async def test_the_union_of_every_announcing_group(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    await redis_client.sadd(names.interest_groups(), "default", "music")
    await redis_client.sadd(names.interests("default"), "MESSAGE_CREATE", "GUILD_CREATE")
    await redis_client.sadd(names.interests("music"), "VOICE_STATE_UPDATE", "GUILD_CREATE")
    # A group that did not announce itself in the index is not read (gateways never SCAN).
    await redis_client.sadd(names.interests("unlisted"), "TYPING_START")
    events = Forwarding()
    await refresh(redis_client, names, events)
    assert events.interests == {"MESSAGE_CREATE", "GUILD_CREATE", "VOICE_STATE_UPDATE"}
    assert all(isinstance(name, str) for name in events.interests)

    await redis_client.srem(names.interests("music"), "VOICE_STATE_UPDATE")
    await refresh(redis_client, names, events)
    assert events.interests == {"MESSAGE_CREATE", "GUILD_CREATE"}


async def test_no_group_means_no_event_is_wanted(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    events = Forwarding(frozenset({"MESSAGE_CREATE"}))
    await refresh(redis_client, names, events)
    assert events.interests == frozenset()


async def test_redis_away_keeps_the_known_interests(
    names: keys.RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = aioredis.Redis(port=servers.free_port(), retry=retry.Retry(backoff.NoBackoff(), 0))
    known = frozenset({"MESSAGE_CREATE"})
    events = Forwarding(known)
    try:
        with caplog.at_level(logging.WARNING, logger="shardline.gateway.interests"):
            await refresh(nobody, names, events)
    finally:
        await nobody.aclose()
    assert events.interests is known
    assert [r.getMessage() for r in caplog.records] == [
        "Redis unavailable: keeping the known interests"
    ]
