"""A re-shard plan: what moving the pool to a new shard count takes, before anything moves.

Discord's zero-downtime way (and the one Shardline's gateways follow) is to start the new
shard layout's sessions beside the old ones and switch over once all are READY. The plan says
how many session starts that spends, how long identifying takes at the pool's
``max_concurrency``, and which gateway gets which shards.
"""

from __future__ import annotations

import dataclasses
import math
import typing

from shared import keys, sharding

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

#: Discord lets each identify bucket start one session per this many seconds.
IDENTIFY_SECONDS: typing.Final = keys.IDENTIFY_WINDOW


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    current: int | None
    target: int
    max_concurrency: int
    gateways: list[str]
    ranges: list[range]
    session_starts_needed: int
    session_starts_remaining: int | None
    identify_seconds: float
    guilds_per_shard: float | None

    @property
    def problems(self) -> list[str]:
        found = []
        if self.current == self.target:
            found.append(f"the pool already runs {self.target} shards")
        if not self.gateways:
            found.append("no live gateway would take the new shards")
        if (
            self.session_starts_remaining is not None
            and self.session_starts_remaining < self.session_starts_needed
        ):
            found.append(
                f"only {self.session_starts_remaining} session starts remain today; "
                f"{self.session_starts_needed} are needed"
            )
        if self.guilds_per_shard is not None and self.guilds_per_shard > 2500:
            found.append(
                f"{self.guilds_per_shard:.0f} guilds per shard: Discord allows at most 2,500"
            )
        return found


async def plan(
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
    *,
    current: int | None,
    target: int,
    max_concurrency: int,
    gateways: list[str],
) -> Plan:
    if target < 1:
        raise ValueError("the new shard count must be at least 1")
    if max_concurrency < 1:
        raise ValueError("max_concurrency must be at least 1")
    remaining = await redis.hget(redis_keys.session_start_ledger(), "remaining")
    guilds = await redis.scard(redis_keys.guilds())
    waves = math.ceil(target / max_concurrency)
    return Plan(
        current=current,
        target=target,
        max_concurrency=max_concurrency,
        gateways=gateways,
        ranges=sharding.split_shards(target, len(gateways)) if gateways else [],
        session_starts_needed=target,
        session_starts_remaining=int(remaining) if remaining is not None else None,
        identify_seconds=(waves - 1) * IDENTIFY_SECONDS,
        guilds_per_shard=guilds / target if guilds else None,
    )
