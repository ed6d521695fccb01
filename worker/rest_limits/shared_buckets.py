"""Discord REST rate limits shared by every replica of a pool, under hikari's REST client.

hikari's ``RESTClientImpl`` asks a bucket manager for permission before each request and tells
it what the response said. :class:`SharedBucketManager` answers from Redis, so twenty replicas
sharing a token behave as one client:

* **one round trip per request**: a script reserves the request's slot in its route bucket
  (learned from ``X-RateLimit-Bucket/Limit/Remaining/Reset-After``, per major parameter) and
  in the global limit (paced evenly at 95% of ``REST_GLOBAL_LIMIT``: Discord counts it in
  fixed one-second windows, and the 5% absorbs network jitter), and returns how long to wait;
* **the first request of an unknown bucket** goes alone (a short lock), so a burst from many
  replicas cannot overrun a limit nobody has learned yet;
* **429s are shared**: a global one pauses every replica for ``retry_after``; a route one
  empties the bucket for everyone until it resets;
* **the invalid-request budget** (401, 403 and non-shared 429: 10,000 per 10 minutes, then
  Cloudflare bans the IP) is counted; past half of it the global pace halves, past 80% only
  interaction responses go out until the window slides;
* **interaction responses and follow-ups** (and any request without the bot's token) are
  exempt from the global limit, as Discord documents.

Redis unavailable: hikari's own in-process limiter takes over (learning from the responses
from then on) and a warning says so once; nothing fails because of the limiter.

With ``REST_LIMITER=off`` (an external REST proxy such as nirn-proxy at ``DISCORD_API_URL``
does the limiting) no limiter runs in the process at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import secrets
import time
import typing

import hikari
import orjson
from hikari.impl import buckets, rest

from shared import redis_client

if typing.TYPE_CHECKING:
    import aiohttp
    import redis.asyncio as aioredis
    from hikari.internal import routes

    from shared import keys

__all__: typing.Sequence[str] = (
    "DisabledBucketManager",
    "LimitedRESTClient",
    "SharedBucketManager",
)

_LOGGER = logging.getLogger("shardline.worker.rest")
#: Discord's invalid-request budget: this many per window, then a Cloudflare ban.
INVALID_BUDGET: typing.Final = 10_000
INVALID_WINDOW_MS: typing.Final = 600_000
#: Fraction of the global limit actually used (Discord's windows are fixed, ours paced).
GLOBAL_PACE: typing.Final = 0.95
#: Added to every reset we estimate: our clock and Discord's never agree to the millisecond.
MARGIN_MS: typing.Final = 30
_DISCOVERY_TTL_MS: typing.Final = 5_000
_RETRY_RESERVE: typing.Final = 0.02
#: A request whose wait ended this much later than its slot (the event loop was busy) takes a
#: new slot instead of going out together with the requests due now (Discord's windows are
#: fixed: a bunch of late requests can overrun one).
_LATE: typing.Final = 0.025
_BUCKET_TTL_MS: typing.Final = 3_600_000

# KEYS: routes, global TAT, global pause, invalid (this window), invalid (previous window)
# ARGV: now, route, major, exempt, interval, margin, bucket prefix, discovery prefix, budget,
#       invalid window, holder
# -> {delay ms (-1: ask again shortly, -2: blocked by the invalid budget), discovery key held}
_RESERVE: typing.Final = """
local now, margin = tonumber(ARGV[1]), tonumber(ARGV[6])
local delay, discovery = 0, ''
local bucket = redis.call('HGET', KEYS[1], ARGV[2])
if not bucket then
  discovery = ARGV[8] .. ARGV[2]
elseif bucket ~= '-' then
  local state = ARGV[7] .. bucket .. ':' .. ARGV[3]
  local s = redis.call('HMGET', state, 'limit', 'remaining', 'reset_at', 'window')
  if not s[1] then
    discovery = ARGV[8] .. bucket .. ':' .. ARGV[3]
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
redis.call('SET', KEYS[2], start + interval, 'PX', math.floor(start + interval - now) + 1000)
return {math.floor(start - now), discovery}
"""
# KEYS: routes, bucket state, discovery key held ('' if none)
# ARGV: now, route, bucket hash ('-': no limits), limit, remaining, reset after ms, margin, holder
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
if KEYS[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[8] then redis.call('DEL', KEYS[3]) end
return 1
"""
# KEYS: discovery key; ARGV: holder
_RELEASE: typing.Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# KEYS: the global pause key; ARGV: pause until (ms), now (ms)
_PAUSE: typing.Final = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
local wanted = tonumber(ARGV[1])
if wanted > current then
  redis.call('SET', KEYS[1], wanted, 'PX', math.max(math.floor(wanted - tonumber(ARGV[2])), 1))
end
return 1
"""
# KEYS: invalid (this window); ARGV: window ms
_COUNT_INVALID: typing.Final = """
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[1]) * 2) end
return n
"""

#: The discovery lock this task's request holds, in a cell the response handling empties once
#: it has released the lock (between acquire and the response).
_HELD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "shardline_rest_discovery", default=None
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _route_name(compiled_route: routes.CompiledRoute) -> str:
    return str(compiled_route.route)  # "POST /channels/{channel}/messages"


def _exempt(compiled_route: routes.CompiledRoute, authentication: str | None) -> bool:
    """Interaction endpoints and requests without the bot's token skip the global limit."""
    template = compiled_route.route.path_template
    return not authentication or template.startswith(("/interactions/", "/webhooks/"))


class SharedBucketManager(buckets.RESTBucketManager):
    """hikari's bucket manager, answered from Redis for every replica of the pool."""

    __slots__: typing.Sequence[str] = (
        "_global_interval_ms",
        "_holder",
        "_keys",
        "_redis",
        "_redis_ok",
        "_scripts",
        "_tasks",
        "stats",
    )

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        *,
        global_limit: int = 50,
        max_rate_limit: float = 300.0,
    ) -> None:
        super().__init__(max_rate_limit)  # hikari's own limiter: the fallback
        self._redis = redis
        self._keys = redis_keys
        self._global_interval_ms = 1000.0 / (global_limit * GLOBAL_PACE)
        self._holder = secrets.token_hex(8)
        self._scripts = {
            name: redis.register_script(source)
            for name, source in (
                ("reserve", _RESERVE),
                ("learn", _LEARN),
                ("release", _RELEASE),
                ("pause", _PAUSE),
                ("invalid", _COUNT_INVALID),
            )
        }
        self._redis_ok = True
        self._tasks: set[asyncio.Task[typing.Any]] = set()
        self.stats: dict[str, int] = {
            "waits": 0,
            "late": 0,
            "global_429": 0,
            "route_429": 0,
            "invalid": 0,
            "blocked": 0,
            "fallbacks": 0,
        }

    # --- what hikari calls ------------------------------------------------------------------

    def acquire_bucket(
        self, compiled_route: routes.CompiledRoute, authentication: str | None
    ) -> typing.AsyncContextManager[None]:
        return self._acquire(compiled_route, authentication)

    @contextlib.asynccontextmanager
    async def _acquire(
        self, compiled_route: routes.CompiledRoute, authentication: str | None
    ) -> typing.AsyncIterator[None]:
        held = await self._reserve(compiled_route, authentication)
        if held is None:  # Redis is away: hikari's own limiter, per process
            async with super().acquire_bucket(compiled_route, authentication):
                yield
            return
        cell = [held]
        token = _HELD.set(cell)
        try:
            yield
        finally:
            _HELD.reset(token)
            if cell[0]:  # the request ended without a response that released it
                self._spawn(self._release(cell[0]))

    async def _reserve(
        self, compiled_route: routes.CompiledRoute, authentication: str | None
    ) -> str | None:
        """Wait for this request's slot; the discovery lock held ('' for none), or None when
        the shared state is unreachable."""
        route = _route_name(compiled_route)
        major = compiled_route.major_param_hash
        exempt = _exempt(compiled_route, authentication)
        blocked_said = False
        late_once = False
        while True:
            now = _now_ms()
            window = now // INVALID_WINDOW_MS
            try:
                delay, held = await self._scripts["reserve"](
                    keys=[
                        self._keys.rest_routes(),
                        self._keys.rest_global(),
                        self._keys.rest_global_pause(),
                        self._keys.rest_invalid(window),
                        self._keys.rest_invalid(window - 1),
                    ],
                    args=[
                        now, route, major, int(exempt), self._global_interval_ms, MARGIN_MS,
                        self._keys.rest_bucket_prefix(), self._keys.rest_discovery(""),
                        INVALID_BUDGET, INVALID_WINDOW_MS, self._holder,
                    ],
                )  # fmt: skip
            except redis_client.REDIS_ERRORS as exc:
                self._redis_down(exc)
                return None
            self._redis_up()
            if delay == -1:  # someone else's request is learning this bucket
                await asyncio.sleep(_RETRY_RESERVE)
                continue
            if delay == -2:
                self.stats["blocked"] += 1
                if not blocked_said:
                    _LOGGER.error(
                        "REST paused: 80% of Discord's invalid-request budget is spent "
                        "(401/403/429 responses); only interaction responses go out",
                        extra={"route": route},
                    )
                    blocked_said = True
                await asyncio.sleep(1.0)
                continue
            held_text = held.decode() if isinstance(held, bytes) else str(held)
            if delay > 0:
                self.stats["waits"] += 1
                due = time.monotonic() + delay / 1000
                await asyncio.sleep(delay / 1000)
                if (
                    time.monotonic() - due > _LATE
                    and not held_text
                    and not exempt
                    and not late_once
                ):
                    late_once = True  # once: a loop that is always late must still send
                    self.stats["late"] += 1
                    continue
            return held_text

    def update_rate_limits(
        self,
        compiled_route: routes.CompiledRoute,
        authentication: str | None,
        bucket_header: str,
        remaining_header: int,
        limit_header: int,
        reset_at: float,
        reset_after: float,
    ) -> None:
        # The shared state learns in ``observe`` (which sees every response); hikari's own
        # limiter only learns while it is the one in use (Redis away).
        if self._redis_ok:
            return
        super().update_rate_limits(
            compiled_route,
            authentication,
            bucket_header,
            remaining_header,
            limit_header,
            reset_at,
            reset_after,
        )

    def throttle(self, retry_after: float) -> None:
        """A global 429: every replica waits ``retry_after``."""
        super().throttle(retry_after)
        self.stats["global_429"] += 1
        now = _now_ms()
        until = now + math.ceil(retry_after * 1000) + MARGIN_MS
        self._spawn(self._pause(until, now))

    async def close(self) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=2)
        await super().close()

    # --- what the REST client tells us about every response ---------------------------------

    async def observe(
        self,
        compiled_route: routes.CompiledRoute,
        authentication: str | None,
        response: aiohttp.ClientResponse,
    ) -> None:
        """Learn the bucket, share a 429, count invalid requests. Never raises."""
        del authentication  # buckets are per token, and a pool has one
        headers = response.headers
        status = response.status
        scope = headers.get("X-RateLimit-Scope", "user")
        if status in (401, 403) or (status == 429 and scope != "shared"):
            self.stats["invalid"] += 1
            await self._count_invalid()
        route_level = compiled_route.route.has_ratelimits
        if not route_level:
            return
        bucket = headers.get("X-RateLimit-Bucket")
        cell = _HELD.get()
        held = cell[0] if cell else ""
        try:
            remaining = int(headers.get("X-RateLimit-Remaining", "1"))
            limit = int(headers.get("X-RateLimit-Limit", "1"))
            reset_after = float(headers.get("X-RateLimit-Reset-After", "0"))
        except ValueError:
            return
        if status == 429 and not headers.get("X-RateLimit-Global"):
            # Everyone waits out a route (or shared) 429, not only the one who got it.
            self.stats["route_429"] += 1
            remaining = 0
            reset_after = max(reset_after, await _retry_after(response))
        if not (held or status == 429 or remaining == 0 or remaining >= limit - 1):
            # Mid-window: the reservations already counted this request; nothing to correct.
            return
        major = compiled_route.major_param_hash
        state = self._keys.rest_bucket(bucket, major) if bucket else ""
        learn = self._learn(
            [self._keys.rest_routes(), state or self._keys.rest_routes(), held],
            [
                _now_ms(), _route_name(compiled_route), bucket or "-", limit, remaining,
                math.ceil(reset_after * 1000), MARGIN_MS, self._holder,
            ],
        )  # fmt: skip
        if held or status == 429:
            # Others wait on this: the first word on a bucket, or a 429 to share.
            if await learn and cell:
                cell[0] = ""
        else:
            # A correction of a bucket every replica already knows: off the request's path.
            self._spawn(learn)

    async def _learn(self, script_keys: list[str], args: list[typing.Any]) -> bool:
        try:
            await self._scripts["learn"](keys=script_keys, args=args)
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)
            return False
        return True

    # --- internals --------------------------------------------------------------------------

    async def _count_invalid(self) -> None:
        window = _now_ms() // INVALID_WINDOW_MS
        try:
            count = await self._scripts["invalid"](
                keys=[self._keys.rest_invalid(window)], args=[INVALID_WINDOW_MS]
            )
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)
            return
        if int(count) in (INVALID_BUDGET // 2, INVALID_BUDGET * 8 // 10):
            _LOGGER.warning(
                "Discord's invalid-request budget is being spent",
                extra={"invalid_in_window": int(count), "budget": INVALID_BUDGET},
            )

    async def _pause(self, until: int, now: int) -> None:
        try:
            await self._scripts["pause"](keys=[self._keys.rest_global_pause()], args=[until, now])
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)

    async def _release(self, held: str) -> None:
        try:
            await self._scripts["release"](keys=[held], args=[self._holder])
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)

    def _spawn(self, coroutine: typing.Coroutine[typing.Any, typing.Any, object]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _redis_down(self, exc: BaseException) -> None:
        self.stats["fallbacks"] += 1
        if self._redis_ok:
            _LOGGER.warning(
                "Redis unavailable: REST rate limits are per process until it is back",
                extra={"error": str(exc)},
            )
        self._redis_ok = False

    @property
    def shared(self) -> bool:
        """False while Redis is away and each process limits alone (the breaker is open)."""
        return self._redis_ok

    def _redis_up(self) -> None:
        if not self._redis_ok:
            _LOGGER.info("REST rate limits are shared again")
        self._redis_ok = True


async def _retry_after(response: aiohttp.ClientResponse) -> float:
    """Seconds from a 429's JSON body (precise), else its Retry-After header."""
    try:
        body = orjson.loads(await response.read())
        return float(body["retry_after"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        try:
            return float(response.headers.get("Retry-After", "1"))
        except ValueError:
            return 1.0


class DisabledBucketManager(buckets.RESTBucketManager):
    """``REST_LIMITER=off``: a REST proxy in front of Discord limits; nothing here does."""

    __slots__: typing.Sequence[str] = ()

    def acquire_bucket(
        self, compiled_route: routes.CompiledRoute, authentication: str | None
    ) -> typing.AsyncContextManager[None]:
        del compiled_route, authentication
        return contextlib.nullcontext()

    def update_rate_limits(self, *args: typing.Any, **kwargs: typing.Any) -> None:
        del args, kwargs

    def throttle(self, retry_after: float) -> None:
        del retry_after


class LimitedRESTClient(rest.RESTClientImpl):
    """hikari's REST client, telling the shared limiter about every response."""

    __slots__: typing.Sequence[str] = ()

    @property
    def shared_limiter(self) -> SharedBucketManager | None:
        """The limiter every replica shares (``None`` with ``REST_LIMITER=off``)."""
        manager = self._bucket_manager
        return manager if isinstance(manager, SharedBucketManager) else None

    async def _parse_ratelimits(  # type: ignore[misc]  # final in hikari; see check_compatibility
        self,
        compiled_route: routes.CompiledRoute,
        authentication: str | None,
        response: aiohttp.ClientResponse,
    ) -> float | None:
        manager = self._bucket_manager
        if isinstance(manager, SharedBucketManager):
            await manager.observe(compiled_route, authentication, response)
        return await super()._parse_ratelimits(compiled_route, authentication, response)


def check_compatibility() -> None:
    """Fail loudly when a hikari upgrade moves the hooks this module relies on."""
    for name in ("_parse_ratelimits", "_request"):
        if not hasattr(rest.RESTClientImpl, name):
            raise RuntimeError(f"hikari's RESTClientImpl lost {name}; see worker/rest_limits.py")
    for name in ("acquire_bucket", "update_rate_limits", "throttle"):
        if not hasattr(buckets.RESTBucketManager, name):
            raise RuntimeError(f"hikari's RESTBucketManager lost {name}; see rest_limits.py")


def build_client(
    *,
    token: str,
    api_url: str,
    entity_factory: hikari.api.EntityFactory,
    limiter: str,
    global_limit: int,
    redis: aioredis.Redis,
    redis_keys: keys.RedisKeys,
) -> LimitedRESTClient:
    """hikari's REST client for the bot's token, with the configured limiter under it."""
    manager: buckets.RESTBucketManager
    if limiter == "off":
        manager = DisabledBucketManager(max_rate_limit=300.0)
    else:
        manager = SharedBucketManager(redis, redis_keys, global_limit=global_limit)
    return LimitedRESTClient(
        cache=None,
        entity_factory=entity_factory,
        executor=None,
        http_settings=hikari.impl.HTTPSettings(),
        proxy_settings=hikari.impl.ProxySettings(),
        token=token,
        token_type=hikari.TokenType.BOT,
        rest_url=api_url,
        bucket_manager=manager,
        bucket_manager_owner=True,
    )
