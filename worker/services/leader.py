"""A leader lease in Redis: one holder at a time, renewed while alive, expiring when it dies."""

from __future__ import annotations

import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

__all__: typing.Sequence[str] = ("Lease",)

# Take the lease if free, or extend it if ours. Returns 0 when we hold it now, else the
# milliseconds left on the holder's lease (so a candidate can wake exactly when it ends).
_CLAIM = """
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 0
end
local left = redis.call('PTTL', KEYS[1])
if left < 1 then left = 1 end
return left
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class Lease:
    """``key`` held by ``holder`` for ``ttl`` seconds at a time."""

    def __init__(self, redis: aioredis.Redis, key: str, holder: str, ttl: float) -> None:
        self._redis = redis
        self.key = key
        self.holder = holder
        self.ttl = ttl
        self._claim = redis.register_script(_CLAIM)
        self._release = redis.register_script(_RELEASE)

    async def claim(self) -> float:
        """Take or renew the lease: 0.0 when held now, else seconds until the holder's ends.

        Raises Redis errors: the caller decides what not knowing means (step down).
        """
        left = await self._claim(keys=[self.key], args=[self.holder, max(1, int(self.ttl * 1000))])
        return int(left) / 1000

    async def release(self) -> bool:
        """Give the lease up now (if still ours), so a successor need not wait for expiry."""
        return bool(await self._release(keys=[self.key], args=[self.holder]))

    async def holder_now(self) -> str | None:
        value = await self._redis.get(self.key)
        return None if value is None else redis_client.text(value)
