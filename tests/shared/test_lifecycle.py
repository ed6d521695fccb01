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
