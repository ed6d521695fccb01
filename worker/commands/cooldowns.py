"""Cooldowns and max-concurrency held in Redis, so a burst spread over many replicas is
limited as on one.

Cooldowns read the time from an injected :class:`shared.clock.Clock` (the real one unless
given). Their scripts decide by comparing that ``now`` with absolute times stored in the keys
(the uses' scores, the notice's end); Redis's expiry only collects keys those times have left
behind, :data:`_GC_SLACK_MS` later, so a fake clock gets exactly the real clock's answers.
Max-concurrency decides nothing by time: its slot counter's TTL is only the safety net for a
replica that dies mid-command, on Redis's clock.

When Redis fails or its breaker is open, the state is unknown, and a command is neither refused
nor let through unlimited: each replica limits it on its own (the same sliding log and slot
counts, in memory, on the same clock) until Redis answers again. A burst spread over K replicas
may then pass up to K times the rate; one user flooding one replica is still held.
"""

from __future__ import annotations

import collections
import logging
import secrets
import typing

from shared import clock as clock_module
from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys
    from worker.commands import model

__all__: typing.Sequence[str] = ("Concurrency", "Cooldowns")

_LOGGER = logging.getLogger("shardline.worker.commands")

# A sliding log: the uses of the last ``per`` seconds, trimmed and counted in one atomic step.
# KEYS[1] = the scope's sorted set; ARGV = now ms, window ms, rate, unique member
# -> 0 (allowed, recorded) or the ms until the oldest use leaves the window
_TAKE: typing.Final = """
local now, window, rate = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) >= rate then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(math.ceil(tonumber(oldest[2]) + window - now), 1)
end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], window + tonumber(ARGV[5]))
return 0
"""
# KEYS[1] = the user's notice key; ARGV = now ms, notice until ms, GC slack ms -> 1 first, 0 not
_NOTICE: typing.Final = """
local now, notice_until = tonumber(ARGV[1]), tonumber(ARGV[2])
if tonumber(redis.call('GET', KEYS[1]) or '0') > now then return 0 end
redis.call('SET', KEYS[1], notice_until, 'PX', notice_until - now + tonumber(ARGV[3]))
return 1
"""
#: How long a key outlives the time stored in it (Redis's clock and the caller's may differ).
_GC_SLACK_MS: typing.Final = 60_000


class Cooldowns:
    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        *,
        clock: clock_module.Clock | None = None,
    ) -> None:
        self._keys = redis_keys
        self._clock = clock or clock_module.SystemClock()
        self._take = redis.register_script(_TAKE)
        self._notice = redis.register_script(_NOTICE)
        # This replica's own logs and notices, used only while Redis does not answer.
        self._local_uses: dict[str, collections.deque[int]] = {}
        self._local_notices: dict[str, int] = {}

    async def first_notice(
        self, command: str, cooldown: model.Cooldown, scope_id: int, user_id: int, wait: float
    ) -> bool:
        """True once per wait for each user: a flood is told to slow down once, not once a
        message (each reply would cost a REST call in a rate-limited channel, and hold a
        worker while it waits)."""
        key = self._keys.cooldown_notice(command, f"{cooldown.scope}:{scope_id}:{user_id}")
        now = self._clock.now_ms()
        until = now + max(1, int(wait * 1000))
        try:
            return bool(await self._notice(keys=[key], args=[now, until, _GC_SLACK_MS]))
        except redis_client.REDIS_ERRORS:
            if self._local_notices.get(key, 0) > now:
                return False
            self._local_notices = {k: t for k, t in self._local_notices.items() if t > now}
            self._local_notices[key] = until
            return True

    async def take(self, command: str, cooldown: model.Cooldown, scope_id: int) -> float:
        """Record a use; 0 when allowed, else the seconds until one is."""
        scope = f"{cooldown.scope}:{scope_id}"
        key, now, window = (
            self._keys.cooldown(command, scope),
            self._clock.now_ms(),
            int(cooldown.per * 1000),
        )
        try:
            wait_ms = await self._take(
                keys=[key], args=[now, window, cooldown.rate, secrets.token_hex(8), _GC_SLACK_MS]
            )
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "cooldown held by this replica alone: Redis did not answer",
                extra={"command": command, "error": type(exc).__name__},
            )
            return self._take_locally(key, now, window, cooldown.rate) / 1000
        return int(wait_ms) / 1000

    def _take_locally(self, key: str, now: int, window: int, rate: int) -> int:
        """What ``_TAKE`` decides, on this replica's own log."""
        for other in [k for k, log in self._local_uses.items() if log[-1] <= now - window]:
            del self._local_uses[other]
        log = self._local_uses.setdefault(key, collections.deque())
        while log and log[0] <= now - window:
            log.popleft()
        if len(log) >= rate:
            return max(log[0] + window - now, 1)
        log.append(now)
        return 0


# KEYS[1] = the scope's counter; ARGV = limit, safety TTL (s) -> 1 taken, 0 full
_ENTER: typing.Final = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(ARGV[1]) then
  redis.call('DECR', KEYS[1])
  return 0
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""
_LEAVE: typing.Final = """
if tonumber(redis.call('DECR', KEYS[1])) <= 0 then redis.call('DEL', KEYS[1]) end
return 1
"""
#: A replica that dies mid-command leaves its slot taken at most this long.
_SLOT_TTL: typing.Final = 15 * 60


class Concurrency:
    """At most ``limit`` runs of a command at once per scope, across every replica."""

    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys) -> None:
        self._keys = redis_keys
        self._enter = redis.register_script(_ENTER)
        self._leave = redis.register_script(_LEAVE)
        # Slots this replica took on its own, while Redis did not answer.
        self._local: collections.Counter[str] = collections.Counter()

    async def enter(self, command: str, limit: model.MaxConcurrency, scope_id: int) -> bool:
        key = self._keys.concurrency(command, f"{limit.scope}:{scope_id}")
        try:
            return bool(await self._enter(keys=[key], args=[limit.limit, _SLOT_TTL]))
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "max-concurrency held by this replica alone: Redis did not answer",
                extra={"command": command, "error": type(exc).__name__},
            )
            if self._local[key] >= limit.limit:
                return False
            self._local[key] += 1
            return True

    async def leave(self, command: str, limit: model.MaxConcurrency, scope_id: int) -> None:
        key = self._keys.concurrency(command, f"{limit.scope}:{scope_id}")
        if self._local[key] > 0:
            self._local[key] -= 1
            if not self._local[key]:
                del self._local[key]
            return
        try:
            await self._leave(keys=[key])
        except redis_client.REDIS_ERRORS:
            # The slot is freed by its TTL (_SLOT_TTL) at the latest.
            _LOGGER.warning("max-concurrency slot left to expire: Redis did not answer")
