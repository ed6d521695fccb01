"""The bucket manager hikari's REST client asks before each request, answered from Redis.

:class:`SharedBucketManager` waits for each request's slot in the shared state
(:mod:`worker.rest_limits.limit_state`), learns from every response, and falls back to hikari's
own in-process limiter while Redis is away. Every wait is on the injected
:class:`shared.clock.Clock`, every ``now`` it hands the scripts too; only hikari's fallback
limiter keeps to the real clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import math
import secrets
import typing

import orjson
from hikari.impl import buckets

from shared import clock as clock_module
from shared import redis_client
from worker.rest_limits import limit_state

if typing.TYPE_CHECKING:
    import aiohttp
    import redis.asyncio as aioredis
    from hikari.internal import routes

    from shared import keys

__all__: typing.Sequence[str] = ("GLOBAL_PACE", "SharedBucketManager", "is_exempt")

_LOGGER = logging.getLogger("shardline.worker.rest")
#: Fraction of the global limit actually used (Discord's windows are fixed, ours paced).
GLOBAL_PACE: typing.Final = 0.95
#: Seconds between asks while another request learns the bucket.
_RETRY_RESERVE: typing.Final = 0.02
#: Seconds between asks while the invalid-request budget holds traffic back.
_BLOCKED_RETRY: typing.Final = 1.0
#: A request whose wait ended this much later than its slot (the event loop was busy) takes a
#: new slot instead of going out together with the requests due now (Discord's windows are
#: fixed: a bunch of late requests can overrun one).
_LATE: typing.Final = 0.025

#: The discovery lock this task's request holds, in a cell the response handling empties once
#: it has released the lock (between acquire and the response).
_HELD: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "shardline_rest_discovery", default=None
)


def _route_name(compiled_route: routes.CompiledRoute) -> str:
    return str(compiled_route.route)  # "POST /channels/{channel}/messages"


def is_exempt(compiled_route: routes.CompiledRoute, authentication: str | None) -> bool:
    """Interaction endpoints and requests without the bot's token skip the global limit."""
    template = compiled_route.route.path_template
    return not authentication or template.startswith(("/interactions/", "/webhooks/"))


class SharedBucketManager(buckets.RESTBucketManager):
    """hikari's bucket manager, answered from Redis for every replica of the pool."""

    __slots__: typing.Sequence[str] = (
        "_clock",
        "_global_interval_ms",
        "_redis_ok",
        "_state",
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
        clock: clock_module.Clock | None = None,
    ) -> None:
        super().__init__(max_rate_limit)  # hikari's own limiter: the fallback
        self._clock = clock or clock_module.SystemClock()
        self._state = limit_state.LimitState(redis, redis_keys, secrets.token_hex(8))
        self._global_interval_ms = 1000.0 / (global_limit * GLOBAL_PACE)
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
        held = await self.reserve(compiled_route, authentication)
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

    async def reserve(
        self, compiled_route: routes.CompiledRoute, authentication: str | None
    ) -> str | None:
        """Wait for this request's slot; the discovery lock held ('' for none), or None when
        the shared state is unreachable."""
        route = _route_name(compiled_route)
        major = compiled_route.major_param_hash
        exempt = is_exempt(compiled_route, authentication)
        blocked_said = False
        late_once = False
        while True:
            try:
                delay, held = await self._state.reserve(
                    self._clock.now_ms(),
                    route,
                    major,
                    exempt=exempt,
                    interval_ms=self._global_interval_ms,
                )
            except redis_client.REDIS_ERRORS as exc:
                self._redis_down(exc)
                return None
            self._redis_up()
            if delay == limit_state.ASK_AGAIN:
                await self._clock.sleep(_RETRY_RESERVE)
                continue
            if delay == limit_state.BLOCKED:
                self.stats["blocked"] += 1
                if not blocked_said:
                    _LOGGER.error(
                        "REST paused: 80% of Discord's invalid-request budget is spent "
                        "(401/403/429 responses); only interaction responses go out",
                        extra={"route": route},
                    )
                    blocked_said = True
                await self._clock.sleep(_BLOCKED_RETRY)
                continue
            if delay > 0:
                self.stats["waits"] += 1
                due = self._clock.monotonic() + delay / 1000
                await self._clock.sleep(delay / 1000)
                late = self._clock.monotonic() - due > _LATE
                if late and not held and not exempt and not late_once:
                    late_once = True  # once: a loop that is always late must still send
                    self.stats["late"] += 1
                    continue
            return held

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
        """A global 429 (``observe`` has already paused every replica for it)."""
        super().throttle(retry_after)
        self.stats["global_429"] += 1

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
    ) -> bool:
        """Learn the bucket, share a 429, count invalid requests. Never raises.

        True when the shared state now holds back the retry of a route 429 (it waits in
        :meth:`reserve`, on this manager's clock)."""
        del authentication  # buckets are per token, and a pool has one
        headers = response.headers
        status = response.status
        scope = headers.get("X-RateLimit-Scope", "user")
        if status in (401, 403) or (status == 429 and scope != "shared"):
            self.stats["invalid"] += 1
            await self._count_invalid()
        if status == 429 and headers.get("X-RateLimit-Global"):
            # Paused before hikari retries, so the retry (and every replica) waits it out.
            now = self._clock.now_ms()
            until = now + math.ceil(await _retry_after(response) * 1000) + limit_state.MARGIN_MS
            await self._pause(until, now)
            return False
        if not compiled_route.route.has_ratelimits:
            return False
        bucket = headers.get("X-RateLimit-Bucket")
        cell = _HELD.get()
        held = cell[0] if cell else ""
        try:
            remaining = int(headers.get("X-RateLimit-Remaining", "1"))
            limit = int(headers.get("X-RateLimit-Limit", "1"))
            reset_after = float(headers.get("X-RateLimit-Reset-After", "0"))
        except ValueError:
            return False
        if status == 429:
            # Everyone waits out a route (or shared) 429, not only the one who got it.
            self.stats["route_429"] += 1
            remaining = 0
            reset_after = max(reset_after, await _retry_after(response))
        if not (held or status == 429 or remaining == 0 or remaining >= limit - 1):
            # Mid-window: the reservations already counted this request; nothing to correct.
            return False
        learn = self._learn(
            compiled_route,
            bucket,
            held,
            limit=limit,
            remaining=remaining,
            reset_after_ms=math.ceil(reset_after * 1000),
        )
        if not (held or status == 429):
            # A correction of a bucket every replica already knows: off the request's path.
            self._spawn(learn)
            return False
        # Others wait on this: the first word on a bucket, or a 429 to share.
        learned = await learn
        if learned and cell:
            cell[0] = ""
        return learned and status == 429 and bool(bucket)

    async def _learn(
        self,
        compiled_route: routes.CompiledRoute,
        bucket: str | None,
        held: str,
        *,
        limit: int,
        remaining: int,
        reset_after_ms: int,
    ) -> bool:
        try:
            await self._state.learn(
                self._clock.now_ms(),
                _route_name(compiled_route),
                bucket,
                compiled_route.major_param_hash,
                limit=limit,
                remaining=remaining,
                reset_after_ms=reset_after_ms,
                held=held,
            )
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)
            return False
        return True

    # --- internals --------------------------------------------------------------------------

    async def _count_invalid(self) -> None:
        try:
            count = await self._state.count_invalid(self._clock.now_ms())
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)
            return
        budget = limit_state.INVALID_BUDGET
        if count in (budget // 2, budget * 8 // 10):
            _LOGGER.warning(
                "Discord's invalid-request budget is being spent",
                extra={"invalid_in_window": count, "budget": budget},
            )

    async def _pause(self, until: int, now: int) -> None:
        try:
            await self._state.pause(until, now)
        except redis_client.REDIS_ERRORS as exc:
            self._redis_down(exc)

    async def _release(self, held: str) -> None:
        try:
            await self._state.release(held)
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
