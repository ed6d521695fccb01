"""The Redis side of the shared REST limiter: its Lua scripts and the state they keep.

Every script takes ``now`` (ms, from the caller's :class:`shared.clock.Clock`) and decides by
comparing it with absolute times stored in the keys: a bucket's ``reset_at``, the global
limit's theoretical arrival time, the global pause's end, the invalid-request window (named by
``now // INVALID_WINDOW_MS``). Redis's own expiry (``PX``/``PEXPIRE``) only collects keys whose
stored time has passed, with :data:`GC_SLACK_MS` to spare, so it never decides anything: a fake
clock that jumps ahead or stands still while real time passes gets exactly the answers the real
clock would at the same ``now``. The one exception is the discovery lock's 5 s lease, which
only matters when the replica holding it dies mid-request; it runs on Redis's clock.
"""

from __future__ import annotations

import typing

from shared import redis_client

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys

__all__: typing.Sequence[str] = ("INVALID_BUDGET", "INVALID_WINDOW_MS", "MARGIN_MS", "LimitState")

#: Discord's invalid-request budget: this many per window, then a Cloudflare ban.
INVALID_BUDGET: typing.Final = 10_000
INVALID_WINDOW_MS: typing.Final = 600_000
#: Added to every reset we estimate: our clock and Discord's never agree to the millisecond.
MARGIN_MS: typing.Final = 30
#: How long a key outlives the time stored in it (Redis's clock and the caller's may differ).
GC_SLACK_MS: typing.Final = 60_000
#: What the reservation answers instead of a delay.
ASK_AGAIN: typing.Final = -1  # another request is learning this bucket
BLOCKED: typing.Final = -2  # most of the invalid-request budget is spent
_OTHER_BUCKET: typing.Final = -3  # the route's bucket is not the one the caller believed

# KEYS: routes, global TAT, global pause, invalid (this window), invalid (previous window),
#       the state of the bucket the caller believes the route has, the route's discovery key,
#       that bucket's discovery key (KEYS[1] stands in for those of no bucket)
# ARGV: now, route, major, exempt, interval, margin, the bucket believed ('' unknown, '-' none),
#       (unused), budget, invalid window, holder, garbage-collection slack ms
# -> {delay ms (-1: ask again shortly, -2: blocked by the invalid budget, -3: the route's bucket
#    is another, named instead of the discovery key: ask again with it), discovery key held}
_RESERVE: typing.Final = """
local now, margin = tonumber(ARGV[1]), tonumber(ARGV[6])
local delay = 0
local discovery = ''
local bucket = redis.call('HGET', KEYS[1], ARGV[2])
if (bucket or '') ~= ARGV[7] then return {-3, bucket or ''} end
if not bucket then
  discovery = KEYS[7]
elseif bucket ~= '-' then
  local state = KEYS[6]
  local s = redis.call('HMGET', state, 'limit', 'remaining', 'reset_at', 'window')
  if not s[1] then
    discovery = KEYS[8]
  else
    local limit, remaining = tonumber(s[1]), tonumber(s[2])
    local reset_at, window = tonumber(s[3]), tonumber(s[4])
    while now >= reset_at do
      if remaining < 0 then
        -- requests already promised the next window start it at about its reset
        remaining = math.min(limit, remaining + limit)
        reset_at = reset_at + window + margin
      else
        remaining = limit
        reset_at = now + window + margin
      end
    end
    remaining = remaining - 1
    if remaining < 0 then
      local ahead = math.ceil(-remaining / limit)
      delay = reset_at - now + (ahead - 1) * (window + margin) + margin
    end
    redis.call('HSET', state, 'remaining', remaining, 'reset_at', reset_at)
    redis.call('PEXPIRE', state, 3600000)
  end
end
if discovery ~= '' and not redis.call('SET', discovery, ARGV[11], 'NX', 'PX', 5000) then
  return {-1, ''}
end
if ARGV[4] == '1' then return {delay, discovery} end
local budget, wms = tonumber(ARGV[9]), tonumber(ARGV[10])
local invalid = tonumber(redis.call('GET', KEYS[4]) or '0')
  + tonumber(redis.call('GET', KEYS[5]) or '0') * (1 - (now % wms) / wms)
if invalid >= budget * 0.8 then
  if discovery ~= '' then redis.call('DEL', discovery) end
  return {-2, ''}
end
local interval = tonumber(ARGV[5])
if invalid >= budget * 0.5 then interval = interval * 2 end
local start = now + delay
local pause = tonumber(redis.call('GET', KEYS[3]) or '0')
if pause > start then start = pause end
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat > start then start = tat end
local slack = tonumber(ARGV[12])
redis.call('SET', KEYS[2], start + interval, 'PX', math.floor(start + interval - now) + slack)
return {math.floor(start - now), discovery}
"""
# KEYS: routes, bucket state, discovery key held (the routes again if none: one slot)
# ARGV: now, route, bucket hash ('-': no limits), limit, remaining, reset after ms, margin, holder,
#       '1' when a discovery key is held
_LEARN: typing.Final = """
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if ARGV[3] ~= '-' then
  local now, margin = tonumber(ARGV[1]), tonumber(ARGV[7])
  local limit, header_remaining, after = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
  local server_reset = now + after + margin
  local s = redis.call('HMGET', KEYS[2], 'remaining', 'reset_at', 'window')
  if not s[1] then
    redis.call('HSET', KEYS[2], 'limit', limit, 'remaining', header_remaining,
      'reset_at', server_reset, 'window', after)
  else
    local remaining, reset_at, window = tonumber(s[1]), tonumber(s[2]), tonumber(s[3])
    local known_limit = tonumber(redis.call('HGET', KEYS[2], 'limit')) or limit
    -- Roll the windows that ended as the reservation does, first: the requests promised the
    -- next window are counted in it, not in the one that just ended.
    while now >= reset_at do
      if remaining < 0 then
        remaining = math.min(known_limit, remaining + known_limit)
        reset_at = reset_at + window + margin
      else
        remaining = known_limit
        reset_at = now + window + margin
      end
    end
    -- A response from a window we already rolled past says nothing about this one.
    if server_reset > reset_at - window / 2 then
      remaining = math.min(remaining, header_remaining)
      reset_at = math.max(reset_at, server_reset)
    end
    redis.call('HSET', KEYS[2], 'limit', limit, 'remaining', remaining, 'reset_at', reset_at,
      'window', math.max(window, after))
  end
  redis.call('PEXPIRE', KEYS[2], 3600000)
end
if ARGV[9] == '1' and redis.call('GET', KEYS[3]) == ARGV[8] then redis.call('DEL', KEYS[3]) end
return 1
"""
# KEYS: discovery key; ARGV: holder
_RELEASE: typing.Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the global pause key; ARGV: pause until (ms), now (ms), garbage-collection slack ms
_PAUSE: typing.Final = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  local ttl = math.floor(wanted - tonumber(ARGV[2])) + tonumber(ARGV[3])
  redis.call('SET', KEYS[1], wanted, 'PX', ttl)
end
return 1
"""
# KEYS: invalid (this window); ARGV: window ms
_COUNT_INVALID: typing.Final = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2) end
return n
"""


class LimitState:
    """The limiter's keys in Redis, read and written only through its scripts.

    Every method raises what the Redis client raises; the caller decides what Redis being away
    means."""

    __slots__ = (
        "_buckets",
        "_holder",
        "_invalid",
        "_keys",
        "_learn",
        "_pause",
        "_release",
        "_reserve",
    )

    def __init__(self, redis: aioredis.Redis, redis_keys: keys.RedisKeys, holder: str) -> None:
        self._keys = redis_keys
        self._holder = holder
        self._reserve = redis.register_script(_RESERVE)
        self._learn = redis.register_script(_LEARN)
        self._release = redis.register_script(_RELEASE)
        self._pause = redis.register_script(_PAUSE)
        self._invalid = redis.register_script(_COUNT_INVALID)
        #: Route -> the bucket Redis last said it has ('-': none): the reservation names the
        #: bucket's keys in KEYS, and is told when the route's bucket is another.
        self._buckets: dict[str, str] = {}

    async def reserve(
        self, now: int, route: str, major: str, *, exempt: bool, interval_ms: float
    ) -> tuple[int, str]:
        """Take the request's slot: (ms to wait or :data:`ASK_AGAIN`/:data:`BLOCKED`, the
        discovery lock now held or '')."""
        window = now // INVALID_WINDOW_MS
        routes = self._keys.rest_routes()
        for _ in range(3):  # a route's bucket changes rarely; twice in a row is a race
            bucket = self._buckets.get(route, "")
            real = bucket not in ("", "-")
            delay, held = await self._reserve(
                keys=[
                    routes,
                    self._keys.rest_global(),
                    self._keys.rest_global_pause(),
                    self._keys.rest_invalid(window),
                    self._keys.rest_invalid(window - 1),
                    self._keys.rest_bucket(bucket, major) if real else routes,
                    self._keys.rest_discovery(route),
                    self._keys.rest_discovery(f"{bucket}:{major}") if real else routes,
                ],
                args=[
                    now, route, major, int(exempt), interval_ms, MARGIN_MS, bucket, "",
                    INVALID_BUDGET, INVALID_WINDOW_MS, self._holder, GC_SLACK_MS,
                ],
            )  # fmt: skip
            if int(delay) != _OTHER_BUCKET:
                return int(delay), redis_client.text(held)
            self._buckets[route] = redis_client.text(held)
        return ASK_AGAIN, ""

    async def learn(
        self,
        now: int,
        route: str,
        bucket: str | None,
        major: str,
        *,
        limit: int,
        remaining: int,
        reset_after_ms: int,
        held: str,
    ) -> None:
        """Record what a response said about its bucket (``None``: a route without limits),
        and release the discovery lock ``held`` if it is this process's."""
        routes = self._keys.rest_routes()
        state = self._keys.rest_bucket(bucket, major) if bucket else routes
        self._buckets[route] = bucket or "-"
        await self._learn(
            keys=[routes, state, held or routes],
            args=[
                now, route, bucket or "-", limit, remaining, reset_after_ms, MARGIN_MS,
                self._holder, int(bool(held)),
            ],
        )  # fmt: skip

    async def release(self, held: str) -> None:
        """Let go of a discovery lock that no response released."""
        await self._release(keys=[held], args=[self._holder])

    async def pause(self, until: int, now: int) -> None:
        """No request of any replica before ``until`` (ms): a global 429."""
        await self._pause(keys=[self._keys.rest_global_pause()], args=[until, now, GC_SLACK_MS])

    async def count_invalid(self, now: int) -> int:
        """Count an invalid request in ``now``'s window; the count so far."""
        window = now // INVALID_WINDOW_MS
        count = await self._invalid(
            keys=[self._keys.rest_invalid(window)], args=[INVALID_WINDOW_MS]
        )
        return int(count)
