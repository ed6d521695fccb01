"""Schedules: interval and cron tasks that run once per period across every replica.

Each schedule has one Redis hash: ``due`` (the next run's time, ms), and while a run is in
progress its ``holder`` and lease ``deadline``. Every replica with the ``services`` role
ticks; when a run is due, one script call lets exactly one of them take it. The holder renews
its lease while it runs and, when done, moves ``due`` to the next period. So:

- a run is never done twice: ``due`` only moves on after a run finished, and survives
  restarts of every replica (it lives in Redis);
- a run is never lost: if the holder dies, its lease ends and another replica runs the same
  period (the only case where a run's body may execute twice: it died part-way);
- a late run (its holder died) does not cost the next period its run; periods missed while
  no replica was up at all are caught up with one run, not a burst.

Cron schedules are wall-clock times in their zone (:mod:`worker.services.cron` says what
happens to the times a daylight-saving change skips or repeats). Time is read from a
:class:`Clock`, so tests move it by hand.

::

    @bot.schedules.every(minutes=5)
    async def refresh(run):
        ...

    @bot.schedules.cron("0 9 * * mon", tz="Europe/Berlin")  # tz defaults to UTC
    async def weekly_digest(run):
        ...
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import random
import time
import typing
import zoneinfo

from shared import lifecycle, redis_client
from worker.services import cron

if typing.TYPE_CHECKING:
    import redis.asyncio as aioredis

    from shared import keys as keys_module

__all__: typing.Sequence[str] = (
    "DEFAULT_LEASE",
    "SYSTEM_CLOCK",
    "Clock",
    "Schedule",
    "ScheduledRun",
    "Scheduler",
    "Schedules",
)

_LOGGER = logging.getLogger("shardline.schedules")
#: Seconds a run is held without renewal before another replica may take it over.
DEFAULT_LEASE: typing.Final[float] = 30.0
#: Cron periods stepped through to find the latest one started after an outage.
_CATCH_UP_STEPS: typing.Final[int] = 1_000
#: The longest a replica sleeps between looks at its schedules.
MAX_TICK: typing.Final[float] = 1.0

# KEYS[1] = the schedule's hash; ARGV = now_ms, holder, lease_ms, first_due_ms.
# Returns {1, due} when the caller now holds the run due at ``due``, {0, due} otherwise.
_CLAIM = """
local due = tonumber(redis.call('HGET', KEYS[1], 'due'))
if due == nil then
  due = tonumber(ARGV[4])
  redis.call('HSET', KEYS[1], 'due', ARGV[4])
end
local now = tonumber(ARGV[1])
if now < due then return {0, due} end
local holder = redis.call('HGET', KEYS[1], 'holder')
local deadline = tonumber(redis.call('HGET', KEYS[1], 'deadline') or '0')
if holder and holder ~= ARGV[2] and deadline > now then return {0, due} end
redis.call('HSET', KEYS[1], 'holder', ARGV[2], 'deadline', now + tonumber(ARGV[3]))
return {1, due}
"""
# ARGV = holder, due_ms, deadline_ms: extend our hold on the run due at due_ms.
_RENEW = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'due') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'deadline', ARGV[3])
  return 1
end
return 0
"""
# ARGV = holder, due_ms, next_due_ms: the run is done; the next one is due at next_due_ms.
_DONE = """
if redis.call('HGET', KEYS[1], 'holder') == ARGV[1]
   and redis.call('HGET', KEYS[1], 'due') == ARGV[2] then
  redis.call('HSET', KEYS[1], 'due', ARGV[3])
  redis.call('HDEL', KEYS[1], 'holder', 'deadline')
  return 1
end
return 0
"""


class Clock(typing.Protocol):
    """Where schedules read the time and wait: the system's clock, or a test's."""

    def time(self) -> float:
        """Seconds since the epoch."""

    async def sleep(self, seconds: float) -> None:
        """Return after ``seconds`` of this clock's time."""


class SystemClock:
    """The real clock: ``time.time()`` and ``asyncio.sleep``."""

    __slots__ = ()

    def time(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


SYSTEM_CLOCK: typing.Final[Clock] = SystemClock()


@dataclasses.dataclass(frozen=True, slots=True)
class ScheduledRun:
    """What a scheduled task is told: which period it runs for (``due``, in the schedule's
    zone), and how many seconds late it started."""

    name: str
    due: dt.datetime
    late: float


Task = typing.Callable[[ScheduledRun], typing.Awaitable[None]]


@dataclasses.dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    task: Task
    interval: float | None = None
    expression: cron.CronExpression | None = None
    lease: float = DEFAULT_LEASE

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The zone a run's ``due`` is given in: the cron expression's, UTC for intervals."""
        return self.expression.zone if self.expression is not None else zoneinfo.ZoneInfo("UTC")

    def first_due(self, now: float) -> float:
        """The first run when no replica ever ran this schedule: an interval runs at once (the
        start of the current period), a cron schedule at its next time."""
        if self.interval is not None:
            return (now // self.interval) * self.interval
        return self.after(now)

    def after(self, moment: float) -> float:
        """The first period start strictly after ``moment``."""
        if self.interval is not None:
            return (moment // self.interval + 1) * self.interval
        assert self.expression is not None
        return self.expression.next_after(dt.datetime.fromtimestamp(moment, dt.UTC)).timestamp()

    def next_due(self, done: float, now: float) -> float:
        """The run after the one due at ``done``, finished at ``now``.

        Each period gets its run, even late (a holder that died held it for a lease). Only when
        more than one whole period was missed (every replica down) is the backlog run once:
        at the latest period that has started, not as a burst.
        """
        following = self.after(done)
        if self.after(following) > now:
            return following
        if self.interval is not None:
            return (now // self.interval) * self.interval
        for _ in range(_CATCH_UP_STEPS):
            later = self.after(following)
            if later > now:
                return following
            following = later
        return self.after(now)


class Schedules:
    """``bot.schedules``: register tasks; they run on replicas with the ``services`` role."""

    def __init__(self) -> None:
        self.defined: dict[str, Schedule] = {}

    def every(
        self,
        *,
        seconds: float = 0,
        minutes: float = 0,
        hours: float = 0,
        name: str | None = None,
        lease: float = DEFAULT_LEASE,
    ) -> typing.Callable[[Task], Task]:
        interval = seconds + minutes * 60 + hours * 3600
        if interval <= 0:
            raise ValueError("a schedule's interval must be positive")
        return self._register(name, lease, interval=interval)

    def cron(
        self,
        expression: str,
        *,
        tz: str = "UTC",
        name: str | None = None,
        lease: float = DEFAULT_LEASE,
    ) -> typing.Callable[[Task], Task]:
        """Run at the times ``expression`` names, as wall-clock times in the IANA zone ``tz``.

        Raises :class:`~worker.services.cron.CronError` at once for a bad expression, an
        unknown zone, or an expression that never fires.
        """
        return self._register(name, lease, expression=cron.parse(expression, tz))

    def _register(
        self, name: str | None, lease: float, **when: typing.Any
    ) -> typing.Callable[[Task], Task]:
        def decorator(task: Task) -> Task:
            key = name or task.__name__
            if key in self.defined:
                raise ValueError(f"schedule {key!r} is defined twice")
            self.defined[key] = Schedule(key, task, lease=lease, **when)
            return task

        return decorator


class Scheduler:
    """Runs the due schedules this replica wins; one per replica with the services role."""

    def __init__(
        self,
        schedules: typing.Iterable[Schedule],
        *,
        redis: aioredis.Redis,
        keys: keys_module.RedisKeys,
        holder: str,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.schedules = list(schedules)
        self.redis = redis
        self.keys = keys
        self.holder = holder
        self.clock = clock
        self.runs = 0
        self._claim = redis.register_script(_CLAIM)
        self._renew = redis.register_script(_RENEW)
        self._done = redis.register_script(_DONE)
        self._known_due: dict[str, float] = {}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._loop(schedule), name=f"schedule-{schedule.name}")
            for schedule in self.schedules
        ]

    async def close(self) -> None:
        """Stop; a run in progress is cancelled and another replica runs it again."""
        await lifecycle.cancel_and_wait(self._tasks)
        self._tasks.clear()

    async def _loop(self, schedule: Schedule) -> None:
        while True:
            try:
                await self.tick(schedule)
            except redis_client.REDIS_ERRORS as exc:
                _LOGGER.warning(
                    "schedule not checked: Redis unavailable",
                    extra={"schedule": schedule.name, "error": str(exc)},
                )
            except Exception:
                _LOGGER.exception("schedule not checked", extra={"schedule": schedule.name})
            wait = self._known_due.get(schedule.name, 0.0) - self.clock.time()
            jitter = random.uniform(0.0, 0.02)  # noqa: S311 - spreads replicas, not a secret
            await self.clock.sleep(min(max(wait, 0.0), MAX_TICK) + jitter)

    async def tick(self, schedule: Schedule) -> bool:
        """Run ``schedule`` if it is due and this replica wins it; True when it ran."""
        now = self.clock.time()
        if now < self._known_due.get(schedule.name, 0.0):
            return False
        key = self.keys.schedule(schedule.name)
        won, due_ms = await self._claim(
            keys=[key],
            args=[
                int(now * 1000),
                self.holder,
                int(schedule.lease * 1000),
                int(schedule.first_due(now) * 1000),
            ],
        )
        due = int(due_ms) / 1000
        if not won:
            # Not due, or held by a live replica: look again when due, or when its lease ends.
            self._known_due[schedule.name] = (
                due if due > now else now + min(schedule.lease / 3, MAX_TICK)
            )
            return False
        await self._run(schedule, key, int(due_ms), now)
        return True

    async def _run(self, schedule: Schedule, key: str, due_ms: int, now: float) -> None:
        due = due_ms / 1000
        run = ScheduledRun(schedule.name, dt.datetime.fromtimestamp(due, schedule.zone), now - due)
        body: asyncio.Task[None] = asyncio.ensure_future(schedule.task(run))
        try:
            while True:
                pause = asyncio.ensure_future(self.clock.sleep(schedule.lease / 3))
                try:
                    await asyncio.wait({body, pause}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    await lifecycle.cancel_and_wait([pause])
                if body.done():
                    break
                deadline = int((self.clock.time() + schedule.lease) * 1000)
                try:
                    renewed = await self._renew(keys=[key], args=[self.holder, due_ms, deadline])
                except redis_client.REDIS_ERRORS:
                    renewed = True  # not known: the run goes on; the lease set last still holds
                if not renewed:
                    _LOGGER.warning(
                        "schedule run lost its lease", extra={"schedule": schedule.name}
                    )
        except BaseException:
            await lifecycle.cancel_and_wait([body])
            raise
        if not body.cancelled() and body.exception() is not None:
            _LOGGER.error(
                "scheduled task failed",
                exc_info=body.exception(),
                extra={"schedule": schedule.name, "due": run.due.isoformat()},
            )
        next_due = schedule.next_due(due, self.clock.time())
        self.runs += 1
        for attempt in range(5):  # marking it done again is harmless; not marking it reruns it
            try:
                await self._done(keys=[key], args=[self.holder, due_ms, int(next_due * 1000)])
                break
            except redis_client.REDIS_ERRORS:
                await self.clock.sleep(0.2 * (attempt + 1))
        self._known_due[schedule.name] = next_due
