"""Stopping background tasks, even those whose libraries swallow a cancellation."""

from __future__ import annotations

import asyncio
import logging
import typing

from shared import lifecycle

if typing.TYPE_CHECKING:
    import pytest


async def test_a_task_that_swallows_one_cancellation_is_cancelled_again() -> None:
    swallowed = 0

    async def stubborn() -> None:
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1  # what redis-py 8.1 does while connecting

    task = asyncio.get_running_loop().create_task(stubborn())
    await asyncio.sleep(0)
    await asyncio.wait_for(lifecycle.cancel_and_wait([task]), timeout=5)
    assert task.cancelled()
    assert swallowed == 1


async def test_gives_up_with_a_warning_naming_the_task(caplog: pytest.LogCaptureFixture) -> None:
    release = asyncio.Event()

    async def immortal() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue

    task = asyncio.get_running_loop().create_task(immortal(), name="immortal")
    await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="shardline.lifecycle"):
        await lifecycle.cancel_and_wait([task], timeout=0.3)
    assert not task.done()
    [record] = [r for r in caplog.records if r.name == "shardline.lifecycle"]
    assert record.tasks == ["immortal"]  # type: ignore[attr-defined]
    release.set()
    task.cancel()
    await asyncio.wait([task])


async def test_a_task_that_had_failed_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken() -> None:
        raise RuntimeError("boom")

    task = asyncio.get_running_loop().create_task(broken(), name="broken")
    await asyncio.sleep(0)
    with caplog.at_level(logging.ERROR, logger="shardline.lifecycle"):
        await lifecycle.cancel_and_wait([task])
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


async def test_a_task_group_loop_survives_a_failing_round_and_close_stops_everything() -> None:
    group = lifecycle.TaskGroup(logging.getLogger("test"))
    rounds: list[int] = []
    five = asyncio.Event()

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 5:
            five.set()
        if len(rounds) == 2:
            raise RuntimeError("one bad round")

    async def work() -> None:
        await asyncio.sleep(3600)

    loop = group.every(0, step, name="loop", first_now=True)
    spawned = group.spawn(work(), name="work")
    await asyncio.wait_for(five.wait(), 5)
    assert group.ended == []  # the failing round was logged, the loop went on
    await group.close()
    assert loop.cancelled()
    assert spawned.cancelled()
    assert group.ended == []  # closed, not ended


async def test_stopping_named_loops_leaves_work_to_finish() -> None:
    group = lifecycle.TaskGroup(logging.getLogger("test"))
    done = asyncio.Event()
    leases = group.every(3600, asyncio.sleep, name="leases")
    status = group.every(3600, asyncio.sleep, name="status")

    async def start_shard() -> None:
        await asyncio.sleep(0.01)
        done.set()

    group.spawn(start_shard(), name="start-0")
    await group.stop_loops("leases")
    assert leases.cancelled()
    assert not status.done()
    await group.wait_work(timeout=5)
    assert done.is_set()
    await group.close()
    assert status.cancelled()


async def test_a_loop_waits_on_the_clock_it_is_given() -> None:
    from shared import clock  # noqa: PLC0415 - only this test needs it

    async with clock.FakeClock() as fake:
        rounds: list[float] = []
        four = asyncio.Event()
        tasks = lifecycle.TaskGroup(logging.getLogger("test"))

        async def step() -> None:
            rounds.append(fake.monotonic())
            if len(rounds) == 4:
                four.set()
            if len(rounds) == 2:
                raise RuntimeError("one bad round")

        async def start() -> None:
            tasks.every(10.0, step, name="ticking", clock=fake)

        started = fake.monotonic()
        await fake.spawn(start())
        await asyncio.wait_for(four.wait(), 5)
        await tasks.close()
    assert [r - started for r in rounds[:4]] == [10.0, 20.0, 30.0, 40.0]
