"""Automatic shard assignment: gateways of a pool claim shards through Redis leases.

Each gateway heartbeats into ``ns:{pool}:gateways:{count}`` (the gateways of its shard layout)
and holds its shards as ``ns:{pool}:lease:{count}:{id}`` keys with a TTL (one hash tag: one
MGET reads them all, on a Redis Cluster too), renewed every third of it; two layouts (a
re-shard in progress) never share out each other's shards. Every gateway computes the same fair
share from the sorted list of live gateways, releases shards above its share (after closing
them with their sessions kept, so the next holder RESUMEs) and claims free shards up to it. A
lease not renewed expires, and its shard is taken over.
"""

from __future__ import annotations

import time
import typing

from gateway import drains, redis_history
from shared import keys, redis_client, sharding

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared.secret import Secret

#: A lease key that is gone (Redis restarted empty, or was failed over) is written back by
#: its holder, whose shard is still connected: unknown is not "taken". Only a lease another
#: gateway now holds is lost.
#:
#: A Redis that restarted empty holds no lease at all until each holder's next successful round
#: writes its own back, which can take a TTL and its breaker's reset (2 s) after Redis
#: answers. A gateway that had not seen the outage (one started just then: soak seed 330917)
#: would find every shard free and claim live ones, whose holder then stops them and whose
#: successor IDENTIFYs: no free lease is handed out by a Redis up for less than a TTL and
#: ``YOUNG_REDIS_MARGIN`` (the claim script reads Redis's own uptime, so every gateway, old or
#: new, is held alike). A holder renews every third of the TTL; its breaker lets a call through
#: at most 2 s after Redis answers; uptime counts whole seconds.
YOUNG_REDIS_MARGIN: typing.Final[int] = 3
_RENEW: typing.Final = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  return redis.call('EXPIRE', KEYS[1], ARGV[2])
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
  return 2
end
return 0
"""
# KEYS[1] = a lease, KEYS[2] = the pool's identify memory, KEYS[3] = its Redis history (one
# hash tag); ARGV = the gateway, the TTL (s), the youngest Redis (s held: restarted, or a
# replica promoted, ``gateway.redis_history``) that may hand out a free lease. Answers 1
# (taken), 0 (held by another), -1 (Redis too young). A Redis whose INFO cannot be read (an
# ACL without @dangerous, a proxy) counts as old, not as young forever.
_CLAIM: typing.Final = (
    redis_history.HELD_MS
    + """
local held = held_ms()
if held ~= nil and held < tonumber(ARGV[3]) * 1000 then return -1 end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then return 1 end
return 0
"""
)
_RELEASE: typing.Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class ShardLeases:
    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        gateway_id: str,
        ttl: int = keys.LEASE_TTL,
        *,
        shard_count: int,
        admin_key: Secret | None = None,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self.gateway_id = gateway_id
        self.shard_count = shard_count
        self.ttl = ttl
        #: An operator asked this gateway to hand all its shards over (``shardline drain``),
        #: with a request signed by the admin key.
        self.draining = False
        self._drains = drains.DrainRequests(admin_key, redis_keys.prefix, gateway_id)
        #: Shards whose lease key the last :meth:`renew` found gone and wrote back: Redis
        #: forgot the pool's leases (other gateways' too, which they have not rewritten yet).
        self.forgotten: list[int] = []
        self._renew = redis.register_script(_RENEW)
        self._release = redis.register_script(_RELEASE)
        self._claim = redis.register_script(_CLAIM)
        #: The last :meth:`claim` was refused because Redis started too recently.
        self.redis_too_young = False

    async def heartbeat(self) -> list[str]:
        """Announce this gateway; return the live gateways of the pool that take shards
        (not those an operator is draining), sorted."""
        now = time.time()
        everyone, key = self._keys.gateways(), self._keys.layout_gateways(self.shard_count)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zadd(everyone, {self.gateway_id: now})
            pipe.zremrangebyscore(everyone, "-inf", now - self.ttl)
            pipe.zadd(key, {self.gateway_id: now})
            pipe.zremrangebyscore(key, "-inf", now - self.ttl)
            pipe.zrange(key, 0, -1)
            pipe.smembers(self._keys.draining())
            pipe.hgetall(self._keys.drain_requests())
            *_, members, announcing, requests = await pipe.execute()
        live = [redis_client.text(m) for m in members]
        drained = self._drains.vouched_for(redis_client.text_map(requests), live)
        self.draining = self.gateway_id in drained
        announced = {redis_client.text(m) for m in announcing}
        if self.draining != (self.gateway_id in announced):
            if self.draining:
                await self._redis.sadd(self._keys.draining(), self.gateway_id)
            else:
                await self._redis.srem(self._keys.draining(), self.gateway_id)
        # Peers' own word counts too (see gateway.drains); ours is what we checked.
        out = (announced - {self.gateway_id}) | drained
        return sorted(g for g in live if g not in out)

    async def leave(self) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.zrem(self._keys.gateways(), self.gateway_id)
            pipe.zrem(self._keys.layout_gateways(self.shard_count), self.gateway_id)
            pipe.srem(self._keys.draining(), self.gateway_id)
            pipe.hdel(self._keys.drain_requests(), self.gateway_id)  # this id never returns
            await pipe.execute()

    def fair_share(self, live: typing.Sequence[str], shard_count: int | None = None) -> int:
        """How many shards this gateway should hold, given the live gateways."""
        if self.draining:
            return 0
        if self.gateway_id not in live:
            live = sorted([*live, self.gateway_id])
        ranges = sharding.split_shards(shard_count or self.shard_count, len(live))
        index = list(live).index(self.gateway_id)
        return len(ranges[index]) if index < len(ranges) else 0

    async def holders(self) -> list[str | None]:
        """Who holds each shard of the layout now (``None`` for free)."""
        count = self.shard_count
        values = await self._redis.mget([self._keys.lease(s, count) for s in range(count)])
        return [None if v is None else redis_client.text(v) for v in values]

    async def claim(self, shard_id: int) -> bool:
        """Take a free lease; False when another holds it or Redis is too young to say that
        it is free (:attr:`redis_too_young`)."""
        answer = int(
            await self._claim(
                keys=[
                    self._keys.lease(shard_id, self.shard_count),
                    self._keys.identify_memory(),
                    self._keys.redis_history(),
                ],
                args=[self.gateway_id, self.ttl, self.ttl + YOUNG_REDIS_MARGIN],
            )
        )
        self.redis_too_young = answer < 0
        return answer > 0

    async def renew(self, shard_ids: typing.Iterable[int]) -> list[int]:
        """Renew our leases; return the shards whose lease we no longer hold."""
        lost = []
        forgotten = []
        for shard_id in shard_ids:
            kept = await self._renew(
                keys=[self._keys.lease(shard_id, self.shard_count)],
                args=[self.gateway_id, self.ttl],
            )
            if not kept:
                lost.append(shard_id)
            elif int(kept) == 2:  # the script wrote it back
                forgotten.append(shard_id)
        self.forgotten = forgotten
        return lost

    async def release(self, shard_id: int) -> None:
        await self._release(
            keys=[self._keys.lease(shard_id, self.shard_count)], args=[self.gateway_id]
        )
