"""Identify coordination across every gateway of a pool.

Discord allows one IDENTIFY per ``shard_id % max_concurrency`` bucket per 5 seconds, and a
daily budget of session starts; exhausting the budget resets the bot's token. Every gateway of
a pool takes the same Redis slots, and waits for Discord's reset when the budget is nearly
spent, instead of spending the last ones.

While Redis does not answer, a gateway does not IDENTIFY at all: it waits for Redis (RESUMEs
need no slot and go on). Discord's rule (discord-api-docs, Gateway, "Sharding for Large Bots":
one IDENTIFY per bucket per 5 s across the whole bot) is about every process of the pool, and
a process that cannot reach Redis cannot know what the others did. The alternatives were
weighed and refused, because neither is safe without the knowledge Redis holds:

- per-process buckets (what this module did before, soak seed 311771): two gateways that both
  lost Redis each take bucket 0 at once;
- time slots by rank among the pool's last known gateways: a gateway started during the
  outage, or one whose view of the pool is older than a peer's, ranks itself wrongly, and two
  gateways then own the same slot;
- waiting a window since the last identify any process could have made: nobody can say when
  that was, since the others keep identifying from their own fallback.

So every slot is taken in Redis, by the script below, or not at all; a shard that cannot get
one stays queued (``ShardGroup`` counts it as queued, not stalled). A slot is also reserved for
two windows when taken, and cut to one window from the IDENTIFY when ``sent`` can write: if
Redis goes away between the two, the peers still wait out a handshake of up to a window.

A Redis that restarts empty forgets the slots it held: a gateway could then IDENTIFY in a
bucket another used a moment before the restart. The script keeps a mark per pool
(``RedisKeys.identify_memory``); when it is missing and Redis has been up for less than a
window, every bucket stays shut for one window from that first ask, which outlasts any slot
taken before the restart. A Redis up for longer cannot have lost a slot still running (a
FLUSHALL within a window of an IDENTIFY can; a replica promoted before it replicated the last
slot can too: neither is guarded).
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import typing

from gateway import redis_history
from shared import clock as clock_module
from shared import keys, redis_client, sharding

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

_LOGGER = logging.getLogger("shardline.gateway.identify")

#: Added to Discord's 5 s window: clocks of Discord and of the gateways are not ours.
_MARGIN_MS: typing.Final[int] = 100
#: How long after a slot frees Redis keeps its key (it is only garbage by then).
_SLACK_MS: typing.Final[int] = 60_000
#: Waits between attempts while Redis does not answer (doubling up to the cap).
_REDIS_RETRY_FIRST: typing.Final[float] = 0.5
_REDIS_RETRY_CAP: typing.Final[float] = 5.0
#: Session starts kept in reserve: below this, the gateway refuses to IDENTIFY.
SESSION_START_RESERVE: typing.Final[int] = 5


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
    """One process's view: the test double, and a pool of one gateway. Never a fallback for
    :class:`RedisIdentifyQueue` (see the module's docstring)."""

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


# KEYS[1] = a bucket's slot, KEYS[2] = the pool's identify memory, KEYS[3] = its Redis history
# (one hash tag); ARGV = now (ms), the reservation (ms), Redis's expiry (ms), how long a restart
# shuts the buckets (ms). The slot holds when it frees (on the clock every gateway shares):
# taken when free, else the ms left. A missing memory on a Redis that has held its data for
# less than that (restarted empty, or a replica promoted: ``gateway.redis_history``) shuts
# every bucket for that long from now (never longer from any caller's clock). A Redis whose
# INFO cannot be read (an ACL, a proxy) counts as old: the memory then guards nothing.
_TAKE: typing.Final = (
    redis_history.HELD_MS
    + """
local now = tonumber(ARGV[1])
local held = held_ms()
local opens = tonumber(redis.call('GET', KEYS[2]) or '-1')
if opens < 0 then
  opens = 0
  if held ~= nil and held < tonumber(ARGV[4]) + 1000 then opens = now + tonumber(ARGV[4]) end
  redis.call('SET', KEYS[2], opens)
end
if opens > now then return math.min(opens - now, tonumber(ARGV[4])) end
local free_at = tonumber(redis.call('GET', KEYS[1]) or '0')
if free_at > now then return free_at - now end
redis.call('SET', KEYS[1], now + tonumber(ARGV[2]), 'PX', ARGV[3])
return 0
"""
)


class RedisIdentifyQueue(IdentifyQueue):
    """Slots shared by every gateway of the pool: a key per bucket holding when it frees.

    The time is compared by the script against the caller's ``now`` (its injected clock's
    wall time, which every gateway shares); Redis's own expiry only collects the key a while
    after, so tests run on a fake clock and assert exact slot times.
    """

    __slots__ = ("_clock", "_keys", "_redis", "_take", "_waiting_for_redis", "window")

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
        self._take = redis.register_script(_TAKE)
        #: Shards waiting for Redis to answer before they may IDENTIFY: one log line per outage.
        self._waiting_for_redis = 0

    @property
    def _window_ms(self) -> int:
        # A little margin: clocks of Discord and of the gateways are not ours.
        return int(self.window * 1000) + _MARGIN_MS

    async def acquire(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        key = self._keys.identify_bucket(bucket)
        retry = _REDIS_RETRY_FIRST
        waiting = False
        try:
            while True:
                try:
                    wait_ms = int(
                        await self._take(
                            keys=[
                                key,
                                self._keys.identify_memory(),
                                self._keys.redis_history(),
                            ],
                            # Reserved for two windows: see the module's docstring.
                            args=[
                                self._clock.now_ms(),
                                2 * self._window_ms,
                                2 * self._window_ms + _SLACK_MS,
                                # Shut for a whole reservation: a slot taken just before a
                                # restart may be used that late.
                                2 * self._window_ms,
                            ],
                        )
                    )
                except redis_client.REDIS_ERRORS as exc:
                    # Unknown is not free: no IDENTIFY until Redis says the slot is ours.
                    if not waiting:
                        waiting = True
                        self._waiting_for_redis += 1
                        if self._waiting_for_redis == 1:
                            _LOGGER.warning(
                                "Redis unavailable for identify coordination; "
                                "shards wait for it to IDENTIFY (RESUMEs go on)",
                                extra={"error": str(exc)},
                            )
                    await self._clock.sleep(retry)
                    retry = min(retry * 2, _REDIS_RETRY_CAP)
                    continue
                retry = _REDIS_RETRY_FIRST
                if wait_ms <= 0:
                    return
                # At most a window: a reservation of two is cut to one by ``sent``.
                await self._clock.sleep(min(max(wait_ms, 10), self._window_ms) / 1000)
        finally:
            if waiting:
                self._waiting_for_redis -= 1
                if self._waiting_for_redis == 0:
                    _LOGGER.info("Redis answers again; identify slots taken from it")

    async def sent(self, shard_id: int, max_concurrency: int) -> None:
        bucket = sharding.identify_bucket(shard_id, max_concurrency)
        free_at = self._clock.now_ms() + self._window_ms
        try:
            await self._redis.set(
                self._keys.identify_bucket(bucket), free_at, px=self._window_ms + _SLACK_MS
            )
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: identify slot kept as reserved (two windows from its take)",
                extra={"error": str(exc)},
            )


@dataclasses.dataclass(frozen=True, slots=True)
class SessionStartBudget:
    """What this gateway last knew of the pool's session starts (for metrics and status)."""

    total: int
    remaining: int
    #: Seconds until Discord resets the budget, from now.
    reset_after: float


# KEYS[1] = the ledger; ARGV = now (ms), the reserve. Spends one start only from a ledger that
# exists and whose window has not ended: a missing or ended one is unknown (Discord is asked
# again), never "0 left" (HINCRBY on a missing key would create one at -1 without a TTL).
# Answers {1, remaining, reset_at} when taken, {0, remaining, reset_at} when too few remain,
# {-1, 0, 0} when unknown.
_SPEND: typing.Final = """
local known = redis.call('HMGET', KEYS[1], 'remaining', 'reset_at')
local remaining, reset_at = tonumber(known[1]), tonumber(known[2])
if remaining == nil or reset_at == nil or reset_at <= tonumber(ARGV[1]) then
  return {-1, 0, 0}
end
if remaining <= tonumber(ARGV[2]) then return {0, remaining, reset_at} end
return {1, redis.call('HINCRBY', KEYS[1], 'remaining', -1), reset_at}
"""

# KEYS[1] = the ledger; ARGV = now (ms), total, remaining, reset_at (ms), expiry (ms), how far
# apart two readings of one window's end may be (ms). Discord's figure replaces the ledger,
# except that within the same window the lower count stands: starts the pool spent a moment
# ago may not be counted by Discord yet. Answers the remaining count stored.
_RECORD: typing.Final = """
local known = redis.call('HMGET', KEYS[1], 'remaining', 'reset_at')
local remaining, reset_at = tonumber(known[1]), tonumber(known[2])
local said = tonumber(ARGV[3])
if remaining ~= nil and reset_at ~= nil and reset_at > tonumber(ARGV[1])
   and math.abs(reset_at - tonumber(ARGV[4])) <= tonumber(ARGV[6]) and remaining < said then
  said = remaining
end
redis.call('HSET', KEYS[1], 'total', ARGV[2], 'remaining', said, 'reset_at', ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return said
"""

#: The shortest window the ledger believes in.
_MIN_WINDOW_MS: typing.Final[int] = 1000
#: Two readings of Discord's ``reset_after`` whose ends differ by less than this are the same
#: window (the request's own latency); a new window ends a whole window later.
_SAME_WINDOW_MS: typing.Final[int] = 1000
#: Waited after Discord's reset before asking again (its clock is not ours).
_RESET_MARGIN: typing.Final[float] = 1.0
#: Waits between attempts while Discord or the ledger cannot be read (doubling up to the cap).
_RETRY_FIRST: typing.Final[float] = 1.0
_RETRY_CAP: typing.Final[float] = 60.0
#: How often the gateway checks that its ledger is current (``refresh_if_due``).
LEDGER_CHECK_INTERVAL: typing.Final[float] = 30.0


class SessionStartLimit(typing.Protocol):
    """What ``GET /gateway/bot`` says of the session start limit (``discord_api``)."""

    @property
    def total(self) -> int: ...
    @property
    def remaining(self) -> int: ...
    @property
    def reset_after(self) -> float: ...


class SessionStartLedger:
    """The pool's remaining session starts, as Discord last reported them, minus our own.

    Discord's ``session_start_limit`` (``GET /gateway/bot``) is the authority; the ledger in
    Redis counts the pool's own starts in between, and lives one of Discord's windows. When it
    is missing or its window ended, nobody knows how many remain: Discord is asked again.
    :meth:`spend` never refuses for good: with too few starts left it waits (on the injected
    clock) until Discord resets them, says so once, and then IDENTIFYs.
    """

    def __init__(
        self,
        redis: aioredis.Redis,
        redis_keys: keys.RedisKeys,
        *,
        fetch: typing.Callable[[], typing.Awaitable[SessionStartLimit]],
        reserve: int = SESSION_START_RESERVE,
        clock: clock_module.Clock | None = None,
    ) -> None:
        self._redis = redis
        self._key = redis_keys.session_start_ledger()
        self._fetch = fetch
        self.reserve = reserve
        self._clock = clock or clock_module.SystemClock()
        self._spend_script = redis.register_script(_SPEND)
        self._record_script = redis.register_script(_RECORD)
        #: total, remaining, reset at (ms on the clock's wall time): the last figure seen.
        self._known: tuple[int, int, int] | None = None
        self._refreshing = asyncio.Lock()
        #: Counts Discord's figures stored: shards that found the ledger unknown together
        #: ask Discord once.
        self._generation = 0
        #: Shards waiting for Discord's reset, and when it comes (ms): for status and the log.
        self._waiting = 0
        self._wait_until_ms = 0

    # --- what Discord says -------------------------------------------------------------------

    async def record_limit(self, total: int, remaining: int, reset_after: float) -> None:
        """Store what ``/gateway/bot`` said; Discord's figure is authoritative."""
        now = self._clock.now_ms()
        # At least a second: a window that ends as it is read would be unknown at once again.
        reset_at = now + max(int(reset_after * 1000), _MIN_WINDOW_MS)
        self._known = (total, remaining, reset_at)
        self._generation += 1
        try:
            stored = await self._record_script(
                keys=[self._key],
                args=[now, total, remaining, reset_at, _expiry_ms(reset_at - now), _SAME_WINDOW_MS],
            )
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: session start limit not shared", extra={"error": str(exc)}
            )
            return
        self._known = (total, int(stored), reset_at)

    async def refresh(self) -> None:
        """Ask Discord (``GET /gateway/bot``) and store its figure."""
        said = await self._fetch()
        await self.record_limit(said.total, said.remaining, said.reset_after)

    async def refresh_if_due(self) -> None:
        """Ask Discord again once the known window ended or the ledger went missing (a Redis
        that restarted empty, an eviction): run every :data:`LEDGER_CHECK_INTERVAL`."""
        known = self._known
        if known is None or known[2] <= self._clock.now_ms():
            await self.refresh()
            return
        try:
            missing = not await self._redis.exists(self._key)
        except redis_client.REDIS_ERRORS:
            return  # unknown: the next spend or round asks again
        if missing:
            await self.refresh()

    # --- what the gateway reads ---------------------------------------------------------------

    def budget(self) -> SessionStartBudget | None:
        """The last known budget; ``None`` before Discord said anything."""
        if self._known is None:
            return None
        total, remaining, reset_at = self._known
        return SessionStartBudget(total, remaining, max(reset_at - self._clock.now_ms(), 0) / 1000)

    def waiting_until(self) -> float | None:
        """When (Unix time, on the clock) shards waiting for Discord's reset of the session
        starts may IDENTIFY; ``None`` while none waits."""
        return self._wait_until_ms / 1000 if self._waiting else None

    async def remaining(self) -> int | None:
        value = await self._redis.hget(self._key, "remaining")
        return None if value is None else int(value)

    # --- spending ------------------------------------------------------------------------------

    async def spend(self) -> int:
        """Take one session start, waiting as long as too few remain; never raises (but
        cancellation). Returns the starts left, or -1 when Redis could not count it."""
        retry = _RETRY_FIRST
        while True:
            try:
                taken = await self._try_spend()
            except Exception as exc:  # Discord away, a bad reply: wait, then retry
                _LOGGER.warning(
                    "session start limit unknown; asking Discord again",
                    extra={"error": str(exc), "retry_in": retry},
                )
                await self._clock.sleep(retry)
                retry = min(retry * 2, _RETRY_CAP)
                continue
            retry = _RETRY_FIRST
            if taken is not None:
                return taken

    async def _try_spend(self) -> int | None:
        """One attempt: the starts left once taken, or ``None`` after waiting for a refresh."""
        generation = self._generation
        try:
            outcome, remaining, reset_at = (
                int(x)
                for x in await self._spend_script(
                    keys=[self._key], args=[self._clock.now_ms(), self.reserve]
                )
            )
        except redis_client.REDIS_ERRORS as exc:
            _LOGGER.warning(
                "Redis unavailable: session start counted by this gateway alone",
                extra={"error": str(exc)},
            )
            return await self._spend_locally(generation)
        if outcome < 0:
            await self._refresh_once(generation)
            return None
        total = self._known[0] if self._known is not None else remaining
        self._known = (total, remaining, reset_at)
        if outcome == 0:
            await self._wait_for_reset(remaining, reset_at)
            return None
        return remaining

    async def _spend_locally(self, generation: int) -> int | None:
        """Redis is away: count on this gateway's last figure (asking Discord when it has
        none, or its window ended)."""
        if self._known is None or self._known[2] <= self._clock.now_ms():
            await self._refresh_once(generation)
            if self._known is None:
                return None
        total, remaining, reset_at = self._known
        if remaining <= self.reserve:
            await self._wait_for_reset(remaining, reset_at)
            return None
        self._known = (total, remaining - 1, reset_at)
        return -1

    async def _refresh_once(self, generation: int) -> None:
        """Ask Discord, once for all the shards that found the ledger unknown together."""
        async with self._refreshing:
            if self._generation == generation:
                _LOGGER.info("session start ledger unknown; asking Discord (GET /gateway/bot)")
                await self.refresh()

    async def _wait_for_reset(self, remaining: int, reset_at: int) -> None:
        """Too few starts left: wait for Discord's reset (the caller then asks again)."""
        self._waiting += 1
        if self._waiting == 1:
            self._wait_until_ms = reset_at
            _LOGGER.warning(
                "too few session starts left to IDENTIFY; shards wait for Discord's reset",
                extra={
                    "remaining": remaining,
                    "reserve": self.reserve,
                    "reset_in": round(max(reset_at - self._clock.now_ms(), 0) / 1000, 1),
                },
            )
        try:
            wait = max(reset_at - self._clock.now_ms(), 0) / 1000
            await self._clock.sleep(wait + _RESET_MARGIN)
        finally:
            self._waiting -= 1
            if self._waiting == 0:
                _LOGGER.info("Discord's reset of the session starts came; identifying again")


def _expiry_ms(window_ms: int) -> int:
    # Redis collects the ledger a while after its window (the script compares reset_at with
    # the caller's clock, so a fake clock in tests sees exact windows).
    return max(window_ms, 0) + _SLACK_MS
