"""What the pool's shared state says: gateways, shards, sessions, workers, queues."""

from __future__ import annotations

import collections
import dataclasses
import time
import typing

import aio_pika
import orjson
from aiormq import exceptions as amqp_errors

from shared import fleet, keys, redis_client, sharding, topology
from shared import status as status_module

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis
    from aio_pika import abc as pika_abc


@dataclasses.dataclass(slots=True)
class Snapshot:
    gateways: list[dict[str, typing.Any]]
    shards: list[dict[str, typing.Any]]
    workers: list[dict[str, typing.Any]]
    queues: list[tuple[str, int | None, int | None]]
    dead_letters: int | None
    shard_count: int | None


async def _json_values(redis: aioredis.Redis, names: list[str]) -> list[dict[str, typing.Any]]:
    if not names:
        return []
    raw = await redis.mget(names)
    return [orjson.loads(value) for value in raw if value]


async def snapshot(
    redis: aioredis.Redis,
    channel: pika_abc.AbstractChannel,
    redis_keys: keys.RedisKeys,
    names: topology.Topology,
    pool: str,
) -> Snapshot:
    now = time.time()
    # Every live gateway (leased shards or static SHARD_IDS) refreshes its status key.
    statuses = {s.gateway: s for s in await fleet.gateway_statuses(redis, redis_keys)}
    draining = {redis_client.text(m) for m in await redis.smembers(redis_keys.draining())}
    # The layout that serves (shared.status's rule), else whatever there is.
    serving = [s for s in statuses.values() if s.publishes] or list(statuses.values())
    shard_count = next((s.shard_count for s in serving if s.shard_count), None)
    gateways = [
        {
            "gateway": gid,
            "shards": len(status.shards),
            "connected": status.connected,
            "backlog": status.backlog,
            "breakers": dict(status.breakers),
            "state": status.state(draining=gid in draining),
            "seen": round(now - (status.at or now), 1),
            "session_start_wait": None
            if status.session_start_wait_until is None
            else round(max(status.session_start_wait_until - now, 0.0), 1),
        }
        for gid, status in sorted(statuses.items())
    ]
    shards = await _shards(redis, redis_keys, statuses, shard_count, now)
    live = await redis.zrangebyscore(redis_keys.workers(), now - keys.HEALTH_TTL, "+inf")
    worker_ids = sorted(redis_client.text(typing.cast("bytes", m)) for m in live)
    workers = await _json_values(redis, [redis_keys.worker_status(w) for w in worker_ids])
    groups = sorted(
        redis_client.text(g) for g in await redis.smembers(redis_keys.interest_groups())
    )
    queues: list[tuple[str, int | None, int | None]] = []
    for group in groups:
        for queue in (names.worker_queue(pool, group), names.interaction_queue(pool, group)):
            ready, consumers = await _depth(channel, queue)
            queues.append((queue, ready, consumers))
    dead, _ = await _depth(channel, names.dead_letter_queue)
    return Snapshot(gateways, shards, workers, queues, dead, shard_count)


async def _shards(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    statuses: dict[str, status_module.GatewayStatus],
    shard_count: int | None,
    now: float,
) -> list[dict[str, typing.Any]]:
    if not shard_count:
        return []
    holders = await redis.mget([redis_keys.lease(s, shard_count) for s in range(shard_count)])
    by_shard: dict[int, tuple[str, status_module.ShardStatus]] = {}
    for gid, status in statuses.items():
        if status.shard_count != shard_count:
            continue
        for sid, reported in status.shards.items():
            by_shard[sid] = (gid, reported)
    guilds: collections.Counter[int] = collections.Counter(
        sharding.shard_for_guild(int(g), shard_count)
        for g in await redis.smembers(redis_keys.guilds())
    )
    async with redis.pipeline(transaction=False) as pipe:
        for shard_id in range(shard_count):
            pipe.hmget(redis_keys.session(shard_id, shard_count), "session_id", "seq", "started_at")
        sessions = await pipe.execute()
    rows = []
    for shard_id in range(shard_count):
        gateway: str | None = None
        shard: status_module.ShardStatus | None = None
        if shard_id in by_shard:
            gateway, shard = by_shard[shard_id]
        holder = holders[shard_id]
        session_id, seq, started = sessions[shard_id]
        rows.append(
            {
                "shard": shard_id,
                "gateway": gateway or (redis_client.text(holder) if holder else None),
                "state": "connected" if shard is not None and shard.connected else "down",
                "latency_ms": round(shard.latency * 1000, 1)
                if shard is not None and shard.latency is not None
                else None,
                "guilds": guilds.get(shard_id, 0),
                "session_age_s": round(now - float(started)) if started else None,
                "seq": int(seq) if seq else None,
                "session": redis_client.text(session_id)[:8] if session_id else None,
            }
        )
    return rows


async def _depth(channel: pika_abc.AbstractChannel, queue: str) -> tuple[int | None, int | None]:
    """Messages ready and consumers of a queue (None when it does not exist)."""
    try:
        declared = await channel.declare_queue(queue, passive=True)
    except (amqp_errors.ChannelNotFoundEntity, aio_pika.exceptions.ChannelClosed):
        await channel.reopen()
        return None, None
    result = declared.declaration_result
    return result.message_count, result.consumer_count
