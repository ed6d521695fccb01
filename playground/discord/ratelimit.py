"""REST rate limits as Discord documents them.

Per-route buckets (``X-RateLimit-Limit/Remaining/Reset/Reset-After/Bucket``), keyed by the
bucket and the route's major parameter; a global limit per bot token (50 requests a second by
default), which interaction endpoints are exempt from; 429 answers with ``retry_after`` and
``X-RateLimit-Scope`` (``user``, ``global`` or ``shared``); and the invalid-request budget
(401, 403 and 429 other than ``shared``: 10,000 per 10 minutes) after which Cloudflare bans the
client for a while (plain-text ``error code: 1015``).
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
import time
import typing


@dataclasses.dataclass(slots=True, kw_only=True)
class RateLimitOptions:
    global_limit: int = 50
    global_window: float = 1.0
    default_route_limit: tuple[int, float] = (10, 1.0)
    route_limits: dict[str, tuple[int, float]] = dataclasses.field(
        default_factory=lambda: {"POST /channels/{channel_id}/messages": (5, 5.0)}
    )
    invalid_limit: int = 10_000
    invalid_window: float = 600.0
    ban_duration: float = 3600.0


@dataclasses.dataclass(slots=True)
class Decision:
    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0
    scope: str = ""
    is_global: bool = False
    banned: bool = False


class _Window:
    __slots__ = ("limit", "remaining", "reset_at", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.remaining = limit
        self.reset_at = 0.0

    def take(self, now: float) -> bool:
        if now >= self.reset_at:
            self.remaining = self.limit
            self.reset_at = now + self.window
        if self.remaining <= 0:
            return False
        self.remaining -= 1
        return True


class RestRateLimiter:
    """Decides, per request, whether the emulated Discord answers or says 429."""

    def __init__(
        self, options: RateLimitOptions, *, clock: typing.Callable[[], float] = time.monotonic
    ) -> None:
        self.options = options
        self._clock = clock
        self._buckets: dict[tuple[str, str], _Window] = {}
        self._global = _Window(options.global_limit, options.global_window)
        self._global_blocked_until = 0.0
        self._forced: dict[str, tuple[float, str]] = {}
        self._invalid: collections.deque[float] = collections.deque()
        self.banned_until = 0.0

    def limits_for(self, route: str) -> tuple[int, float]:
        return self.options.route_limits.get(route, self.options.default_route_limit)

    @staticmethod
    def bucket_hash(route: str) -> str:
        # Discord's bucket ids are opaque hashes shared by routes with the same limits.
        return hashlib.blake2s(route.encode(), digest_size=16).hexdigest()

    def block_global(self, retry_after: float) -> None:
        """Answer every (non-exempt) request with a global 429 for ``retry_after`` seconds."""
        self._global_blocked_until = self._clock() + retry_after

    def block_route(self, route: str, retry_after: float, scope: str = "shared") -> None:
        """Answer requests of ``route`` with a 429 of ``scope`` for ``retry_after`` seconds."""
        self._forced[route] = (self._clock() + retry_after, scope)

    @property
    def invalid_requests(self) -> int:
        self._trim_invalid(self._clock())
        return len(self._invalid)

    def _trim_invalid(self, now: float) -> None:
        while self._invalid and now - self._invalid[0] > self.options.invalid_window:
            self._invalid.popleft()

    def count_response(self, status: int, scope: str) -> None:
        """Count an invalid request (401, 403, 429 other than shared) toward the ban budget."""
        if status in (401, 403) or (status == 429 and scope != "shared"):
            now = self._clock()
            self._invalid.append(now)
            self._trim_invalid(now)
            if len(self._invalid) >= self.options.invalid_limit:
                self.banned_until = now + self.options.ban_duration

    def check(
        self, route: str, major: str, *, exempt_global: bool, per_route: bool = True
    ) -> Decision:
        """``per_route=False``: a route with no per-route limit, answered with no rate-limit
        headers (only the Cloudflare ban and, unless exempt, the global limit apply)."""
        now = self._clock()
        if now < self.banned_until:
            return Decision(False, {}, self.banned_until - now, "global", True, banned=True)
        if not exempt_global:
            if now < self._global_blocked_until:
                return self._global_429(self._global_blocked_until - now)
            if not self._global.take(now):
                return self._global_429(self._global.reset_at - now)
        if not per_route:
            return Decision(True, {})
        bucket_id = self.bucket_hash(route)
        limit, window = self.limits_for(route)
        state = self._buckets.get((bucket_id, major))
        if state is None:
            state = self._buckets[(bucket_id, major)] = _Window(limit, window)
        forced = self._forced.get(route)
        if forced is not None and now < forced[0]:
            retry = forced[0] - now
            headers = self._bucket_headers(bucket_id, state, now)
            headers.update({"X-RateLimit-Scope": forced[1], "Retry-After": _retry_header(retry)})
            return Decision(False, headers, retry, forced[1])
        allowed = state.take(now)
        headers = self._bucket_headers(bucket_id, state, now)
        if allowed:
            return Decision(True, headers)
        retry = state.reset_at - now
        headers.update({"X-RateLimit-Scope": "user", "Retry-After": _retry_header(retry)})
        return Decision(False, headers, retry, "user")

    def _global_429(self, retry: float) -> Decision:
        headers = {
            "X-RateLimit-Global": "true",
            "X-RateLimit-Scope": "global",
            "Retry-After": _retry_header(retry),
        }
        return Decision(False, headers, retry, "global", is_global=True)

    @staticmethod
    def _bucket_headers(bucket_id: str, state: _Window, now: float) -> dict[str, str]:
        reset_after = max(state.reset_at - now, 0.0)
        return {
            "X-RateLimit-Limit": str(state.limit),
            "X-RateLimit-Remaining": str(max(state.remaining, 0)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_id,
        }


def _retry_header(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))
