"""The gateway's voice bridge against real Redis, without a Lavalink node: what it keeps true
in the player records, and which Lavalink sessions it takes over."""

from __future__ import annotations

import time
import typing

import orjson
import pytest

from gateway import voice as gateway_voice
from shared import config, keys, voice
from shared.secret import Secret

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

NODE = "http://127.0.0.1:1"


@pytest.fixture
def bridge(redis_client: aioredis.Redis, namespace: str) -> gateway_voice.VoiceBridge:
    made = gateway_voice.VoiceBridge(
        config.LavalinkSettings(urls=(NODE,), password=Secret("pw")),
        redis=redis_client,
        keys=keys.RedisKeys(namespace, "main"),
        publisher=typing.cast("typing.Any", None),
        gateway_id="main-me",
        user_id=1,
        shard_count=lambda: 1,
    )
    made._urls = {"node0": NODE}
    made.sessions = {"node0": "mine"}
    return made


async def test_a_track_end_clears_the_record_only_if_that_track_still_plays(
    bridge: gateway_voice.VoiceBridge, redis_client: aioredis.Redis
) -> None:
    track_a = {"encoded": "AAA", "info": {"length": 1000}}
    track_b = {"encoded": "BBB", "info": {"length": 1000}}
    await voice.write_player(redis_client, bridge.keys, 7, session="mine", track=track_b)
    ended_a = {"op": "event", "type": "TrackEndEvent", "guildId": "7", "track": track_a}
    await bridge._follow(7, "mine", ended_a)
    record = await voice.read_player(redis_client, bridge.keys, 7)
    assert record is not None
    assert record.track == track_b  # a worker already started the next one: kept
    ended_b = {**ended_a, "track": track_b}
    await bridge._follow(7, "mine", ended_b)
    record = await voice.read_player(redis_client, bridge.keys, 7)
    assert record is not None
    assert record.track is None


async def test_a_dead_gateways_session_is_taken_at_the_second_look_only(
    bridge: gateway_voice.VoiceBridge, redis_client: aioredis.Redis
) -> None:
    held = bridge.keys.lavalink_sessions()
    entry = {"node": NODE, "gateway": "main-other", "at": time.time()}
    await redis_client.hset(held, mapping={"theirs": orjson.dumps(entry), "junk": b"{not json"})
    await redis_client.set(bridge.keys.gateway_status("main-other"), b"{}")
    await bridge.adopt_abandoned()
    assert await redis_client.hexists(held, "theirs")  # alive: left alone
    await redis_client.delete(bridge.keys.gateway_status("main-other"))
    await bridge.adopt_abandoned()
    assert await redis_client.hexists(held, "theirs")  # missing once: perhaps starting
    await bridge.adopt_abandoned()
    assert not await redis_client.hexists(held, "theirs")  # missing twice: taken over
    assert await redis_client.hexists(held, "junk")  # unreadable entries are skipped, not fatal
