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

from shared import clock as clock_module
from shared import keys, redis_client, sharding

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

_LOGGER = logging.getLogger("shardline.gateway.identify")

#: Added to Discord's 5 s window: clocks of Discord and of the gateways are not ours.
_MARGIN_MS: typing.Final[int] = 100
#: How long after a slot frees Redis keeps its key (it is only garbage by then).
_SLACK_MS: typing.Final[int] = 60_000
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

    __slots__ = ("_clock", "_last", "_lock", "window")

    def __init__(
        self, window: float = keys.IDENTIFY_WINDOW, *, clock: clock_module.Clock | None = None
    ) -> None:
        self.window = window
        self._clock = clock or clock_module.SystemClock()
        self._last: dict[int, float] = {}
        self._lock = asyncio.Lock()

    async def acquire(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        async with self._lock:
            wait = self._last.get(bucket, -self.window) + self.window - self._clock.monotonic()
            if wait > 0:
                await self._clock.sleep(wait)
            self._last[bucket] = self._clock.monotonic()

    async def sent(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        self._last[bucket] = self._clock.monotonic()


# KEYS[1] = a bucket's slot; ARGV = now (ms), the window (ms), Redis's expiry (ms). The slot
# holds when it frees (on the clock every gateway shares): taken when free, else the ms left.
_TAKE: typing.Final = """
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
local now = tonumber(ARGV[1])
if free_at > now then return free_at - now end
redis.call('SET', KEYS[1], now + tonumber(ARGV[2]), 'PX', ARGV[3])
return 0
"""


class RedisIdentifyQueue(IdentifyQueue):
    """Slots shared by every gateway of the pool: a key per bucket holding when it frees.

    The time is compared by the script against the caller's ``now`` (its injected clock's
    wall time, which every gateway shares); Redis's own expiry only collects the key a while
    after, so tests run on a fake clock and assert exact slot times.
    """

    __slots__ = ("_clock", "_fallback", "_keys", "_redis", "_take", "window")

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        window: float = keys.IDENTIFY_WINDOW,
        *,
        clock: clock_module.Clock | None = None,
    ) -> None:
        self._redis = redis
        self._keys = redis_keys
        self.window = window
        self._clock = clock or clock_module.SystemClock()
        self._fallback = InMemoryIdentifyQueue(window, clock=self._clock)
        self._take = redis.register_script(_TAKE)

    @property
    def _window_ms(self) -> int:
        # A little margin: clocks of Discord and of the gateways are not ours.
        return int(self.window * 1000) + _MARGIN_MS

    async def acquire(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        key = self._keys.identify_bucket(bucket)
        while True:
            try:
                wait_ms = int(
                    await self._take(
                        keys=[key],
                        args=[self._clock.now_ms(), self._window_ms, self._window_ms + _SLACK_MS],
                    )
                )
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.warning(
                    "Redis unavailable for identify coordination; using this process's limit",
                    extra={"shard": shard_id, "error": str(exc)},
                )
                await self._fallback.acquire(shard_id, max_concurrency)
                return
            if wait_ms <= 0:
                return
            await self._clock.sleep(max(wait_ms, 10) / 1000)

    async def sent(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        await self._fallback.sent(shard_id, max_concurrency)
        free_at = self._clock.now_ms() + self._window_ms
        try:
            await self._redis.set(
                self._keys.identify_bucket(bucket), free_at, px=self._window_ms + _SLACK_MS
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
