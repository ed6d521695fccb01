"""What a gateway tells the pool about itself (``gateway.status``): described from its parts,
written to the real Redis and read back the way operators and peers read it
(``shared.fleet.gateway_statuses``)."""

from __future__ import annotations

import dataclasses
import logging
import time
import typing

import pytest
import redis.asyncio as aioredis
from redis import backoff
from redis.asyncio import retry

from gateway import shards
from gateway import status as gateway_status
from shared import fleet, keys, status
from tests import servers


@dataclasses.dataclass
class Group:
    """The parts of a ``ShardGroup`` a status reads: its count, stats and latencies."""

    shard_count: int
    stats: dict[int, shards.ShardStats]
    latencies: dict[int, float | None]

    def latency(self, shard_id: int) -> float | None:
        return self.latencies.get(shard_id)


@dataclasses.dataclass
class Leases:
    draining: bool


@dataclasses.dataclass
class Bridge:
    sessions: dict[str, str]
    stats: dict[str, int]


def describe(**overrides: typing.Any) -> status.GatewayStatus:
    parts: dict[str, typing.Any] = {
        "leased": None, "standby": False, "retired": False, "stopping": False,
        "backlog": 0, "bridge": None,
    }  # fmt: skip
    parts.update(overrides)
    group = parts.pop("group", None)
    return gateway_status.describe("g1", "main", group, **parts)


@pytest.fixture
def names(namespace: str) -> keys.RedisKeys:
    return keys.RedisKeys(namespace, "main")


def test_a_gateway_before_its_shards_describes_no_layout() -> None:
    before = time.time()
    found = describe()
    assert (found.gateway, found.pool, found.shard_count) == ("g1", "main", None)
    assert found.shards == {}
    assert found.lavalink is None
    assert not found.leased
    assert not found.draining
    assert found.fresh(time.time())
    assert found.at >= before


def test_shards_leases_and_the_voice_bridge_are_described() -> None:
    group = Group(
        shard_count=4,
        stats={
            2: shards.ShardStats(connected=True, identifies=1, resumes=2, events=30),
            0: shards.ShardStats(connected=False, identifies=1, queued=True),
        },
        latencies={2: 0.0412345},
    )
    found = describe(
        group=group,
        leased=Leases(draining=True),
        backlog=7,
        bridge=Bridge({"node-a": "s1", "node-b": "s2"}, {"published": 3, "resumed": 1}),
    )
    assert found.shard_count == 4
    assert list(found.shards) == [0, 2], "shards in order"
    assert found.shards[2] == status.ShardStatus(
        connected=True, latency=0.0412, identifies=1, resumes=2, events=30, queued=False
    )
    assert found.shards[0].latency is None, "no heartbeat ACK yet"
    assert found.shards[0].queued
    assert found.leased
    assert found.draining
    assert found.backlog == 7
    assert found.lavalink == {"sessions": 2, "published": 3, "resumed": 1}
    assert found.connected == 1


def test_a_fixed_gateway_is_never_draining() -> None:
    assert not describe(leased=None).draining
    assert not describe(leased=Leases(draining=False)).draining


async def test_written_statuses_are_what_the_fleet_reads_back(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    group = Group(1, {0: shards.ShardStats(connected=True, identifies=1)}, {0: 0.05})
    first = describe(group=group, standby=True)
    second = dataclasses.replace(describe(), gateway="g2", stopping=True)
    await gateway_status.write(redis_client, names, first)
    await gateway_status.write(redis_client, names, second)
    read = {found.gateway: found for found in await fleet.gateway_statuses(redis_client, names)}
    assert read == {"g1": first, "g2": second}
    ttl = await redis_client.ttl(names.gateway_status("g1"))
    assert 0 < ttl <= keys.HEALTH_TTL


async def test_a_write_drops_gateways_long_gone_from_the_index(
    redis_client: aioredis.Redis, names: keys.RedisKeys
) -> None:
    long_ago = time.time() - 2 * keys.HEALTH_TTL - 60
    await redis_client.zadd(names.gateway_index(), {"gone": long_ago})
    await gateway_status.write(redis_client, names, describe())
    index = {m.decode() for m in await redis_client.zrange(names.gateway_index(), 0, -1)}
    assert index == {"g1"}


async def test_redis_away_only_skips_the_write(
    names: keys.RedisKeys, caplog: pytest.LogCaptureFixture
) -> None:
    nobody = aioredis.Redis(port=servers.free_port(), retry=retry.Retry(backoff.NoBackoff(), 0))
    try:
        with caplog.at_level(logging.DEBUG, logger="shardline.gateway.status"):
            await gateway_status.write(nobody, names, describe())  # raises nothing
    finally:
        await nobody.aclose()
    assert [r.getMessage() for r in caplog.records] == ["status not written"]
