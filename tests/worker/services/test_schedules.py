"""Schedules across replicas: exactly one run per period, none lost, real Redis."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
import typing

import pytest
import redis.asyncio as aioredis

from shared import keys
from worker.services import schedules

if typing.TYPE_CHECKING:
    from worker.services import ScheduledRun


class Fleet:
    """In-process replicas, each with its own Redis connection, as separate processes have."""

    def __init__(self, redis_url: str, namespace: str) -> None:
        self.redis_url = redis_url
        self.keys = keys.RedisKeys(namespace, "main")
        self.runs: list[tuple[float, str]] = []
        self.started: list[schedules.Scheduler] = []

    async def replica(
        self, holder: str, task: schedules.Task | None = None, *, lease: float = 1.0
    ) -> schedules.Scheduler:
        async def record(run: ScheduledRun) -> None:
            await asyncio.sleep(0.1)  # some work, so replicas overlap
            self.runs.append((run.due.timestamp(), holder))

        schedule = schedules.Schedule("tick", task or record, interval=1.0, lease=lease)
        scheduler = schedules.Scheduler(
            [schedule], redis=aioredis.Redis.from_url(self.redis_url), keys=self.keys, holder=holder
        )
        await scheduler.start()
        self.started.append(scheduler)
        return scheduler

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
    first = await fleet.replica("a")
    await fleet.replica("b")
    await fleet.replica("c")
    await asyncio.sleep(2.5)
    await first.close()  # a restart: the replica goes away...
    await asyncio.sleep(0.5)
    await fleet.replica("a2")  # ...and a new one joins
    await asyncio.sleep(3.0)
    dues = [due for due, _ in fleet.runs]
    assert len(dues) == len(set(dues)), f"a period ran twice: {fleet.runs}"
    assert len(dues) >= 5
    ordered = sorted(dues)
    assert ordered == [ordered[0] + i for i in range(len(ordered))], "a period was skipped"
    assert len({holder for _, holder in fleet.runs}) >= 2  # shared, not pinned to one replica


async def test_a_holder_that_dies_mid_run_loses_no_run(fleet: Fleet) -> None:
    started = asyncio.Event()

    async def hang(run: ScheduledRun) -> None:
        del run
        started.set()
        await asyncio.sleep(3600)

    doomed = await fleet.replica("doomed", hang, lease=1.0)
    await asyncio.wait_for(started.wait(), 5)
    state = await doomed.redis.hgetall(fleet.keys.schedule("tick"))
    held_due = int(state[b"due"]) / 1000
    await doomed.close()  # dies holding the run: its lease is left to expire
    killed_at = time.monotonic()
    await fleet.replica("survivor")
    deadline = time.monotonic() + 10
    while not any(due == held_due for due, _ in fleet.runs):
        assert time.monotonic() < deadline, f"the held period never ran: {fleet.runs}"
        await asyncio.sleep(0.05)
    # The lease, then the survivor's next look; a loaded machine may add a second, never more.
    assert time.monotonic() - killed_at < 1.0 + 2.5
    assert [h for due, h in fleet.runs if due == held_due] == ["survivor"]


async def test_a_cron_schedule_waits_for_its_time(fleet: Fleet) -> None:
    async def never(run: ScheduledRun) -> None:
        raise AssertionError(run)

    expression = "0 0 1 1 *"
    schedule = schedules.Schedule("yearly", never, expression=schedules.cron.parse(expression))
    scheduler = schedules.Scheduler(
        [schedule],
        redis=aioredis.Redis.from_url(fleet.redis_url),
        keys=fleet.keys,
        holder="x",
    )
    fleet.started.append(scheduler)
    assert not await scheduler.tick(schedule)
    due = int(await scheduler.redis.hget(fleet.keys.schedule("yearly"), "due")) / 1000
    expected = dt.datetime(dt.datetime.now(dt.UTC).year + 1, 1, 1, tzinfo=dt.UTC)
    assert due == expected.timestamp()


async def test_redis_unavailable_warns_and_keeps_trying(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    async def never(run: ScheduledRun) -> None:
        raise AssertionError(run)

    schedule = schedules.Schedule("tick", never, interval=1.0)
    scheduler = schedules.Scheduler(
        [schedule],
        redis=aioredis.Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.2),
        keys=fleet.keys,
        holder="x",
    )
    fleet.started.append(scheduler)
    with caplog.at_level(logging.WARNING, logger="shardline.schedules"):
        await scheduler.start()
        await asyncio.sleep(1.5)
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)
    assert all(not task.done() for task in scheduler._tasks)
    with contextlib.suppress(Exception):
        await scheduler.close()


def test_an_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="positive"):
        schedules.Schedules().every(seconds=0)


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
    every_minute = schedules.Schedule("c", task, expression=schedules.cron.parse("* * * * *"))
    base = 1_795_000_000 // 60 * 60  # a whole minute
    assert interval.next_due(0.0, now) == expected
    assert every_minute.next_due(base, base + now) == base + expected
