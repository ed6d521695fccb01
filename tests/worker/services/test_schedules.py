"""Schedules across replicas: exactly one run per period, none lost; real Redis, fake clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import heapq
import itertools
import logging
import random
import typing
import zoneinfo

import pytest
import redis.asyncio as aioredis

from shared import keys
from worker.services import cron, schedules

if typing.TYPE_CHECKING:
    from worker.services import ScheduledRun

#: Real seconds a test waits for the replicas to react before calling it a hang.
HANG: typing.Final[float] = 10.0
#: 2027-01-15 08:00:00 UTC: a whole second, far from any daylight-saving change.
START: typing.Final[float] = 1_800_000_000.0


class FakeClock:
    """Time that only moves when the test moves it; sleepers wake as it passes them."""

    def __init__(self, now: float) -> None:
        self.now = now
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(seconds, 0.0), next(self._order), future))
        await future

    def sleeping(self) -> int:
        return sum(not future.done() for _, _, future in self._sleepers)

    async def advance(self, seconds: float) -> None:
        """Move time on, waking each sleeper at its own deadline, in order."""
        target = self.now + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, deadline)
            if not future.done():
                future.set_result(None)
        self.now = target

    async def settle(self, sleepers: int) -> None:
        """Wait (in real time) until ``sleepers`` tasks sleep on this clock again."""
        async with asyncio.timeout(HANG):
            stable = 0
            while stable < 3:  # a few loop turns in a row: no replica is left mid-step
                await asyncio.sleep(0.001)
                stable = stable + 1 if self.sleeping() >= sleepers else 0


async def until(condition: typing.Callable[[], typing.Awaitable[bool]]) -> None:
    """Wait (in real time, as a guard against hangs) for what the replicas do next."""
    async with asyncio.timeout(HANG):
        while not await condition():  # noqa: ASYNC110 - Redis state: nothing to wait on
            await asyncio.sleep(0.005)


async def stored(scheduler: schedules.Scheduler, field: str) -> float:
    """A time in the schedule's Redis hash, in seconds (0 when absent)."""
    value = await scheduler.redis.hget(scheduler.keys.schedule("tick"), field)
    return int(value or 0) / 1000


class Fleet:
    """In-process replicas, each with its own Redis connection, sharing one fake clock."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis_url = redis_url
        self.keys = keys.RedisKeys(namespace, "main")
        self.clock = FakeClock(START)
        self.runs: list[tuple[ScheduledRun, str]] = []
        self.started: list[schedules.Scheduler] = []

    def schedule(self, holder: str, **options: typing.Any) -> schedules.Schedule:
        async def record(run: ScheduledRun) -> None:
            self.runs.append((run, holder))

        options.setdefault("interval", 1.0)
        return schedules.Schedule("tick", options.pop("task", record), **options)

    def replica(self, schedule: schedules.Schedule, holder: str) -> schedules.Scheduler:
        scheduler = schedules.Scheduler(
            [schedule],
            redis=aioredis.Redis.from_url(self.redis_url),
            keys=self.keys,
            holder=holder,
            clock=self.clock,
        )
        self.started.append(scheduler)
        return scheduler

    async def tick_all(self, replicas: list[schedules.Scheduler], rng: random.Random) -> None:
        """Every replica looks at once, in a shuffled order, as separate processes would."""
        order = rng.sample(replicas, len(replicas))
        await asyncio.gather(*(r.tick(r.schedules[0]) for r in order))

    async def close(self) -> None:
        for scheduler in self.started:
            await scheduler.close()
            await scheduler.redis.aclose()


@pytest.fixture
async def fleet(
    redis_url: str, namespace: str, redis_client: aioredis.Redis
) -> typing.AsyncIterator[Fleet]:
    del redis_client  # removes the namespace's keys afterwards
    group = Fleet(redis_url, namespace)
    yield group
    await group.close()


async def test_one_run_per_period_across_three_replicas_and_a_restart(fleet: Fleet) -> None:
    replicas = {name: fleet.replica(fleet.schedule(name), name) for name in ("a", "b", "c")}
    for replica in replicas.values():
        await replica.start()
    restarted = ""
    for step in range(130):  # 6.5 s in 50 ms steps, each replica looping on its own
        if step == 50:  # a restart of the replica that ran the latest period...
            restarted = fleet.runs[-1][1]
            await replicas.pop(restarted).close()
        if step == 60:  # ...and a new one joins
            replicas["new"] = fleet.replica(fleet.schedule("new"), "new")
            await replicas["new"].start()
        await fleet.clock.settle(len(replicas))
        await fleet.clock.advance(0.05)
    await fleet.clock.settle(len(replicas))
    dues = [run.due.timestamp() for run, _ in fleet.runs]
    assert dues == [START + i for i in range(7)], f"a period ran twice or not at all: {dues}"
    assert all(run.late < 0.1 for run, _ in fleet.runs)  # a step and the jitter at most
    after_restart = [holder for run, holder in fleet.runs if run.due.timestamp() >= START + 3]
    assert after_restart
    assert restarted not in after_restart  # the others took over


async def test_a_holder_that_dies_mid_run_is_replaced_when_its_lease_ends(fleet: Fleet) -> None:
    started = asyncio.Event()

    async def hang(run: ScheduledRun) -> None:
        del run
        started.set()
        await asyncio.Event().wait()

    doomed = fleet.replica(fleet.schedule("doomed", task=hang, interval=10.0, lease=3.0), "doomed")
    survivor = fleet.replica(fleet.schedule("survivor", interval=10.0, lease=3.0), "survivor")
    held = asyncio.create_task(doomed.tick(doomed.schedules[0]))
    await asyncio.wait_for(started.wait(), HANG)
    state = await doomed.redis.hgetall(fleet.keys.schedule("tick"))
    assert int(state[b"due"]) / 1000 == START
    held.cancel()  # dies holding the run: nothing releases it, its lease is left to expire
    await asyncio.gather(held, return_exceptions=True)

    tick = survivor.schedules[0]
    await fleet.clock.advance(2.5)
    assert not await survivor.tick(tick)  # still held; the survivor looks again in a second
    await fleet.clock.advance(0.5)
    assert not await survivor.tick(tick)  # the lease ended, but it is not time to look yet
    await fleet.clock.advance(0.25)
    assert not await survivor.tick(tick)
    await fleet.clock.advance(0.25)  # its next look, within MAX_TICK of the lease's end
    assert await survivor.tick(tick)
    [(run, holder)] = fleet.runs
    assert (run.due.timestamp(), run.late, holder) == (START, 3.5, "survivor")
    # The late period did not cost the next one its run: it is due at its own time.
    assert await stored(survivor, "due") == START + 10


async def test_a_long_run_renews_its_lease_and_keeps_its_period(fleet: Fleet) -> None:
    release = asyncio.Event()

    async def slow(run: ScheduledRun) -> None:
        del run
        await release.wait()

    holder = fleet.replica(fleet.schedule("holder", task=slow, lease=3.0), "holder")
    other = fleet.replica(fleet.schedule("other", lease=3.0), "other")
    running = asyncio.create_task(holder.tick(holder.schedules[0]))
    key = fleet.keys.schedule("tick")

    async def deadline_is(expected: float) -> bool:
        return await stored(other, "deadline") == expected

    await until(functools.partial(deadline_is, START + 3.0))
    for _ in range(4):  # four renewals, a third of the lease apart: 4 s, past the first lease
        await fleet.clock.settle(1)
        await fleet.clock.advance(1.0)
        await until(functools.partial(deadline_is, fleet.clock.now + 3.0))
        assert not await other.tick(other.schedules[0])
    release.set()
    assert await running
    state = await other.redis.hgetall(key)
    assert int(state[b"due"]) / 1000 == START + 4  # the next period that had started
    assert b"holder" not in state
    assert fleet.runs == []  # only the slow task ran, once


async def test_a_cron_schedule_waits_for_its_time(fleet: Fleet) -> None:
    expression = cron.parse("0 0 1 1 *")
    scheduler = fleet.replica(fleet.schedule("x", interval=None, expression=expression), "x")
    assert not await scheduler.tick(scheduler.schedules[0])
    assert await stored(scheduler, "due") == dt.datetime(2028, 1, 1, tzinfo=dt.UTC).timestamp()
    assert fleet.runs == []


@pytest.mark.parametrize(
    ("expression", "first_day", "local_times"),
    [
        # Spring forward on 2026-03-29: 09:00 stays 09:00; 02:30 runs once, at 03:00.
        ("0 9 * * *", "2026-03-27", ["09:00 CET", "09:00 CET", "09:00 CEST", "09:00 CEST"]),
        ("30 2 * * *", "2026-03-27", ["02:30 CET", "02:30 CET", "03:00 CEST", "02:30 CEST"]),
        # Fall back on 2026-10-25: 02:30 happens twice and runs once, the first time.
        ("0 9 * * *", "2026-10-23", ["09:00 CEST", "09:00 CEST", "09:00 CET", "09:00 CET"]),
        ("30 2 * * *", "2026-10-23", ["02:30 CEST", "02:30 CEST", "02:30 CEST", "02:30 CET"]),
    ],
)
async def test_a_berlin_schedule_runs_once_a_day_at_local_time_across_dst(
    fleet: Fleet, expression: str, first_day: str, local_times: list[str]
) -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    parsed = cron.parse(expression, "Europe/Berlin")
    replicas = [
        fleet.replica(fleet.schedule(name, interval=None, expression=parsed), name)
        for name in ("a", "b")
    ]
    day = dt.datetime.fromisoformat(first_day).replace(tzinfo=dt.UTC)
    fleet.clock.now = day.timestamp()
    rng = random.Random(7)
    step = 300.0  # both replicas look every five minutes, for four days
    for _ in range(int(4 * 86_400 / step)):
        await fleet.tick_all(replicas, rng)
        await fleet.clock.advance(step)
    local = [run.due.strftime("%H:%M %Z") for run, _ in fleet.runs]
    assert local == local_times
    assert all(run.due.tzinfo == berlin for run, _ in fleet.runs)
    assert [run.due.date() for run, _ in fleet.runs] == [
        (day + dt.timedelta(days=i)).date() for i in range(4)
    ]
    assert all(0 <= run.late < step for run, _ in fleet.runs)


async def test_redis_unavailable_warns_and_keeps_trying(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    async def never(run: ScheduledRun) -> None:
        raise AssertionError(run)

    scheduler = schedules.Scheduler(
        [fleet.schedule("x", task=never)],
        redis=aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2),
        keys=fleet.keys,
        holder="x",
        clock=fleet.clock,
    )
    fleet.started.append(scheduler)

    async def warnings(count: int) -> bool:
        return sum("Redis unavailable" in r.getMessage() for r in caplog.records) >= count

    with caplog.at_level(logging.WARNING, logger="shardline.schedules"):
        await scheduler.start()
        await until(lambda: warnings(1))
        await fleet.clock.settle(1)
        await fleet.clock.advance(schedules.MAX_TICK + 0.1)
        await until(lambda: warnings(2))
    assert all(not task.done() for task in scheduler._tasks)


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        schedules.Schedules().every(seconds=0)


def test_a_cron_schedule_is_declared_with_its_zone() -> None:
    defined = schedules.Schedules()

    @defined.cron("0 9 * * mon", tz="Europe/Berlin")
    async def digest(run: ScheduledRun) -> None:
        del run

    @defined.cron("@daily")
    async def nightly(run: ScheduledRun) -> None:
        del run

    assert defined.defined["digest"].zone == zoneinfo.ZoneInfo("Europe/Berlin")
    assert defined.defined["nightly"].zone == zoneinfo.ZoneInfo("UTC")
    with pytest.raises(cron.CronError, match="unknown time zone 'Mars/Olympus'"):
        defined.cron("0 9 * * mon", tz="Mars/Olympus")
    with pytest.raises(cron.CronError, match="hour '25' is not valid"):
        defined.cron("0 25 * * *")


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (30.0, 60.0),  # finished within its period: the next period
        (75.0, 60.0),  # finished late (a holder died): the next period still gets its run
        (250.0, 240.0),  # several periods missed (all replicas down): one run, the latest
    ],
)
def test_next_due_runs_each_period_but_catches_up_a_backlog_once(
    now: float, expected: float
) -> None:
    async def task(run: ScheduledRun) -> None:
        del run

    interval = schedules.Schedule("i", task, interval=60.0)
    every_minute = schedules.Schedule("c", task, expression=cron.parse("* * * * *"))
    base = 1_795_000_000 // 60 * 60  # a whole minute
    assert interval.next_due(0.0, now) == expected
    assert every_minute.next_due(base, base + now) == base + expected


def test_a_backlog_of_a_zoned_schedule_catches_up_at_its_latest_local_time() -> None:
    async def task(run: ScheduledRun) -> None:
        del run

    daily = schedules.Schedule("d", task, expression=cron.parse("0 9 * * *", "Europe/Berlin"))
    done = dt.datetime(2026, 3, 25, 8, tzinfo=dt.UTC).timestamp()  # 09:00 CET
    now = dt.datetime(2026, 3, 30, 12, tzinfo=dt.UTC).timestamp()  # down for five days
    assert daily.next_due(done, now) == dt.datetime(2026, 3, 30, 7, tzinfo=dt.UTC).timestamp()
