"""What this gateway tells its peers, operators and workers about itself
(``shared.status.GatewayStatus``), and writing it to Redis every few seconds."""

from __future__ import annotations

import logging
import time
import typing

from shared import keys, redis_client, status

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway import leases, shards, voice

_LOGGER = logging.getLogger("shardline.gateway.status")


def describe(  # noqa: PLR0913 - the record's fields, by name
    gateway_id: str,
    pool: str,
    group: shards.ShardGroup | None,
    *,
    leased: leases.ShardLeases | None,
    standby: bool,
    retired: bool,
    stopping: bool,
    backlog: int,
    bridge: voice.VoiceBridge | None,
    interests: typing.Mapping[str, str] | None = None,
    session_start_wait_until: float | None = None,
) -> status.GatewayStatus:
    return status.GatewayStatus(
        gateway=gateway_id,
        pool=pool,
        shard_count=group.shard_count if group is not None else None,
        leased=leased is not None,
        standby=standby,
        retired=retired,
        stopping=stopping,
        draining=bool(leased is not None and leased.draining),
        backlog=backlog,
        at=time.time(),
        shards=shard_statuses(group),
        lavalink={"sessions": len(bridge.sessions), **bridge.stats} if bridge else None,
        interests=interests,
        session_start_wait_until=session_start_wait_until,
    )


def shard_statuses(group: shards.ShardGroup | None) -> dict[int, status.ShardStatus]:
    if group is None:
        return {}
    found: dict[int, status.ShardStatus] = {}
    for shard_id, stats in sorted(group.stats.items()):
        latency = group.latency(shard_id)
        found[shard_id] = status.ShardStatus(
            connected=stats.connected,
            latency=None if latency is None else round(latency, 4),
            identifies=stats.identifies,
            resumes=stats.resumes,
            events=stats.events,
            queued=stats.queued,
        )
    return found


async def write(
    redis: aioredis.Redis, redis_keys: keys.RedisKeys, current: status.GatewayStatus
) -> None:
    """Store it (expiring after ``keys.HEALTH_TTL``) and keep the pool's index of gateways;
    a Redis that is away only delays it to the next round."""
    now = time.time()
    index = redis_keys.gateway_index()
    try:
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(
                redis_keys.gateway_status(current.gateway), current.to_json(), ex=keys.HEALTH_TTL
            )
            pipe.zadd(index, {current.gateway: now})
            pipe.zremrangebyscore(index, "-inf", now - 2 * keys.HEALTH_TTL)
            await pipe.execute()
    except redis_client.REDIS_ERRORS as exc:
        _LOGGER.debug("status not written", extra={"error": str(exc)})
