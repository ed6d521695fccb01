"""Identify coordination across every gateway of a pool.

Discord allows one IDENTIFY per ``shard_id % max_concurrency`` bucket per 5 seconds, and a
daily budget of session starts; exhausting the budget resets the bot's token. Every gateway of
a pool takes the same Redis slots, and refuses to start a session when the budget is nearly
spent, instead of spending the last ones.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import time
import typing

from shared import keys, redis_client, sharding

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

_LOGGER = logging.getLogger("shardline.gateway.identify")

#: Session starts kept in reserve: below this, the gateway refuses to IDENTIFY.
SESSION_START_RESERVE: typing.Final[int] = 5


class SessionStartBudgetError(RuntimeError):
    """Too few session starts remain; identifying now would risk a token reset."""


class IdentifyQueue(abc.ABC):
    """Hands out identify slots: at most one per bucket per window, across the pool."""

    __slots__ = ()

    @abc.abstractmethod
    async def acquire(self, shard_id: int, max_concurrency: int) -> None:
        """Wait until ``shard_id`` may IDENTIFY, and take the slot."""

    @abc.abstractmethod
    async def sent(self, shard_id: int, max_concurrency: int) -> None:
        """IDENTIFY went out now: hold the slot for a whole window from this moment."""


class InMemoryIdentifyQueue(IdentifyQueue):
    """One process's view; the test double and the fallback when Redis is down."""

    __slots__ = ("_last", "_lock", "window")

    def __init__(self, window: float = keys.IDENTIFY_WINDOW) -> None:
        self.window = window
        self._last: dict[int, float] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        async with self._lock:
            wait = self._last.get(bucket, -self.window) + self.window - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            self._last[bucket] = time.monotonic()

    async def sent(self, shard_id: int, max_concurrency: int) -> None:
        self._last[sharding.identify_bucket(shard_id, max_concurrency)] = time.monotonic()


class RedisIdentifyQueue(IdentifyQueue):
    """Slots as ``SET NX PX`` keys shared by every gateway of the pool."""

    __slots__ = ("_fallback", "_keys", "_redis", "window")

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        window: float = keys.IDENTIFY_WINDOW,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self.window = window
        self._fallback = InMemoryIdentifyQueue(window)

    async def acquire(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        key = self._keys.identify_bucket(bucket)
        # A little margin: clocks of Discord and Redis are not ours.
        window_ms = int(self.window * 1000) + 100
        while True:
            try:
                if await self._redis.set(key, shard_id, nx=True, px=window_ms):
                    return
                ttl = await self._redis.pttl(key)
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.warning(
                    "Redis unavailable for identify coordination; using this process's limit",
                    extra={"shard": shard_id, "error": str(exc)},
                )
                await self._fallback.acquire(shard_id, max_concurrency)
                return
            await asyncio.sleep(max(ttl, 10) / 1000)

    async def sent(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        await self._fallback.sent(shard_id, max_concurrency)
        try:
            await self._redis.set(
                self._keys.identify_bucket(bucket), shard_id, px=int(self.window * 1000) + 100
            )
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: identify slot not extended", extra={"error": str(exc)}
            )


@dataclasses.dataclass(frozen=True, slots=True)
class SessionStartBudget:
    """What this gateway last knew of the pool's session starts (for metrics and status)."""

    total: int
    remaining: int
    #: Seconds until Discord resets the budget, from when it was read.
    reset_after: float


class SessionStartLedger:
    """The pool's remaining session starts, as Discord last reported them, minus our own."""

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        reserve: int = SESSION_START_RESERVE,
        *,
        clock: typing.Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis = redis
        self._key = redis_keys.session_start_ledger()
        self.reserve = reserve
        self._clock = clock
        self._known: tuple[int, int, float] | None = None  # total, remaining, reset at

    async def record_limit(self, total: int, remaining: int, reset_after: float) -> None:
        """Store what ``/gateway/bot`` said; Discord's figure is authoritative."""
        self._known = (total, remaining, self._clock() + reset_after)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(self._key, mapping={"total": total, "remaining": remaining})
            pipe.pexpire(self._key, max(int(reset_after * 1000), 1000))
            await pipe.execute()

    def budget(self) -> SessionStartBudget | None:
        """The last known budget; ``None`` before Discord said anything."""
        if self._known is None:
            return None
        total, remaining, reset_at = self._known
        return SessionStartBudget(total, remaining, max(reset_at - self._clock(), 0.0))

    async def spend(self) -> int:
        """Take one session start; raise :class:`SessionStartBudgetError` when too few remain."""
        try:
            remaining = int(await self._redis.hincrby(self._key, "remaining", -1))
        except redis_client.REDIS_ERRORS:
            _LOGGER.warning("Redis unavailable: session start not recorded in the ledger")
            return -1
        refused = remaining < self.reserve
        if self._known is not None:
            self._known = (self._known[0], max(remaining + refused, 0), self._known[2])
        if refused:
            await self._redis.hincrby(self._key, "remaining", 1)
            raise SessionStartBudgetError(
                f"only {remaining + 1} session starts remain today (reserve {self.reserve}); "
                "refusing to IDENTIFY so Discord does not reset the token"
            )
        return remaining

    async def remaining(self) -> int | None:
        value = await self._redis.hget(self._key, "remaining")
        return None if value is None else int(value)
