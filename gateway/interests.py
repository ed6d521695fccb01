"""Which events some worker group listens to (selective forwarding): read from Redis, where
each group announces its own, every :data:`INTERVAL` seconds. While Redis is away the
known interests are kept."""

from __future__ import annotations

import logging
import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from gateway import publisher
    from shared import keys

_LOGGER = logging.getLogger("shardline.gateway.interests")

#: How often the set of events worker groups listen to is re-read.
INTERVAL: typing.Final[float] = 2.0


async def refresh(
    redis: aioredis.Redis, redis_keys: keys.RedisKeys, events: publisher.EventPublisher
) -> None:
    try:
        groups = await redis.smembers(redis_keys.interest_groups())
        names: set[str] = set()
        if groups:
            members = await redis.sunion(
                [redis_keys.interests(redis_client.text(g)) for g in groups]
            )
            names = {redis_client.text(m) for m in members}
    except redis_client.REDIS_ERRORS as exc:
        _LOGGER.warning("Redis unavailable: keeping the known interests", extra={"error": str(exc)})
        return
    events.interests = frozenset(names)
