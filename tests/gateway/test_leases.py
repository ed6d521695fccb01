"""Shard leases (``gateway.leases``) against a real Redis."""

from __future__ import annotations

import asyncio
import logging
import typing

import redis.asyncio as aioredis_module

from gateway import assignment, leases
from shared import keys, lifecycle
from tests import servers

if typing.TYPE_CHECKING:
    import pathlib

    import redis.asyncio as aioredis

    from gateway import holder


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


class _Holder:
    """The shards a gateway runs, in memory (what ``LeaseAssignment`` asks of them)."""

    def __init__(self) -> None:
        self.running: set[int] = set()

    async def start(self, shard_id: int) -> None:
        self.running.add(shard_id)

    async def stop(self, shard_id: int) -> None:
        self.running.discard(shard_id)


async def test_after_redis_forgot_the_leases_no_gateway_claims_a_live_shard(
    redis_client: aioredis.Redis, namespace: str
) -> None:
    """Redis restarted empty while gateways A and B each ran one shard. A's round comes
    first: it writes its own lease back and, for one TTL, claims nothing, so B writes its
    own back before anyone takes its live shard (found by the soak, seed 1)."""
    now = [0.0]
    group = lifecycle.TaskGroup(logging.getLogger("test"))
    held = {name: _Holder() for name in ("gw-a", "gw-b")}
    both = {
        name: assignment.LeaseAssignment(
            _leases(redis_client, namespace, name),
            typing.cast("holder.ShardHolder", held[name]),
            group,
            clock=lambda: now[0],
        )
        for name in held
    }
    for name in ("gw-a", "gw-b"):
        await both[name].round()
    await asyncio.sleep(0)
    await both["gw-a"].round()  # B's heartbeat is in: A hands its extra shard back
    await both["gw-b"].round()
    await asyncio.sleep(0)
    assert sorted(both["gw-a"].claimed | both["gw-b"].claimed) == [0, 1]
    b_shard = next(iter(both["gw-b"].claimed))
    await redis_client.delete(*[k async for k in redis_client.scan_iter(f"{namespace}:*")])
    await both["gw-a"].round()
    await asyncio.sleep(0)
    assert b_shard not in both["gw-a"].claimed  # held off: B's lease may just be unwritten
    await both["gw-b"].round()
    now[0] += 10
    await both["gw-a"].round()
    await asyncio.sleep(0)
    assert b_shard in both["gw-b"].claimed
    assert b_shard not in both["gw-a"].claimed
    assert held["gw-b"].running == {b_shard}


async def test_a_gateway_started_while_redis_is_away_keeps_running(namespace: str) -> None:
    """The first claim fails on Redis: the gateway does not exit (found by the soak, seed
    311771, where a gateway started during a Redis hang died of it); its loop claims later."""
    away = aioredis_module.Redis.from_url("redis://127.0.0.1:1/0")
    group = lifecycle.TaskGroup(logging.getLogger("test"))
    try:
        found = await assignment.start(
            _leases(away, namespace, "gw-a"), typing.cast("holder.ShardHolder", _Holder()), group
        )
        assert found.claimed == set()
        assert found.claims_after > 0
    finally:
        await group.close()
        await away.aclose()


async def test_a_redis_restarted_empty_hands_out_no_free_lease_until_holders_wrote_theirs_back(
    tmp_path: pathlib.Path, namespace: str
) -> None:
    """Soak seed 330917: Redis restarted empty while a holder's rounds still failed on its
    breaker; a gateway started just then found every lease free, claimed the live shards (their
    holder stopped them) and IDENTIFYed: what was said in between was lost. A Redis up for less
    than a TTL (and a margin) hands out no free lease; the holder's write-back is never
    refused."""
    server = servers.PrivateRedis(tmp_path)
    server.start()
    client = aioredis_module.Redis.from_url(server.url)
    try:
        redis_keys = keys.RedisKeys(namespace, "main")
        holder_ = leases.ShardLeases(client, redis_keys, "gw-a", ttl=3, shard_count=2)
        newcomer = leases.ShardLeases(client, redis_keys, "gw-b", ttl=3, shard_count=2)
        assert not await newcomer.claim(0)
        assert newcomer.redis_too_young
        assert await holder_.renew([0]) == []  # written back at once: the shard was live
        assert holder_.forgotten == [0]
        assert await newcomer.holders() == ["gw-a", None]
        await asyncio.sleep(3 + leases.YOUNG_REDIS_MARGIN + 0.5)  # Redis's uptime, its clock
        assert await newcomer.claim(1)
        assert not newcomer.redis_too_young
        assert await holder_.renew([0]) == []  # its rounds go on meanwhile
        assert not await newcomer.claim(0)  # held: refused as held, not as young
        assert not newcomer.redis_too_young
    finally:
        await client.aclose()
        server.stop()


async def test_a_promoted_replica_hands_out_no_free_lease_until_holders_wrote_theirs_back(
    tmp_path: pathlib.Path, namespace: str
) -> None:
    """A review of the young-Redis rule: a replica that a failover promoted has been up for a
    long time, but a lease written on the old master just before may not have reached it. A
    promotion changes Redis's replication id (``gateway.redis_history``): from then on it
    counts as new, as a restarted one does; its identify memory is dropped too."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    master, replica = servers.PrivateRedis(tmp_path / "a"), servers.PrivateRedis(tmp_path / "b")
    master.start()
    replica.start()
    on_master = aioredis_module.Redis.from_url(master.url)
    on_replica = aioredis_module.Redis.from_url(replica.url)
    try:
        redis_keys = keys.RedisKeys(namespace, "main")
        await on_master.set(redis_keys.identify_memory(), 0)
        await asyncio.sleep(1 + leases.YOUNG_REDIS_MARGIN + 0.5)  # both old enough for ttl=1
        holder_ = leases.ShardLeases(on_master, redis_keys, "gw-a", ttl=1, shard_count=2)
        assert await holder_.claim(0)  # the master's history is written
        # Its first replica makes the master create a backlog, with a new replication id and
        # none before it: the same data set, not a new Redis (a review).
        await on_replica.replicaof("127.0.0.1", master.port)
        for _ in range(100):  # the first sync, then every write acknowledged by the replica
            if await on_master.execute_command("WAIT", 1, 100) == 1:
                break
        assert await on_master.execute_command("WAIT", 1, 100) == 1
        assert await holder_.claim(1)
        assert not holder_.redis_too_young
        await holder_.release(1)  # free again, for the newcomer below
        assert await on_master.execute_command("WAIT", 1, 5000) == 1  # and replicated
        assert await on_replica.exists(redis_keys.redis_history())
        await on_replica.replicaof("NO", "ONE")  # the failover
        newcomer = leases.ShardLeases(on_replica, redis_keys, "gw-b", ttl=1, shard_count=2)
        assert not await newcomer.claim(1)
        assert newcomer.redis_too_young
        assert not await on_replica.exists(redis_keys.identify_memory())
        await asyncio.sleep(1 + leases.YOUNG_REDIS_MARGIN + 0.5)  # Redis's own clock
        assert await newcomer.claim(1)
        assert not newcomer.redis_too_young
    finally:
        await on_master.aclose()
        await on_replica.aclose()
        master.stop()
        replica.stop()
