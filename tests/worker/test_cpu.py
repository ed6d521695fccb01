"""The CPU pool keeps a replica's event loop responsive while CPU-bound work runs."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.worker import cpu_work
from worker import cpu


async def loop_lag_during(work: asyncio.Future[object] | asyncio.Task[object]) -> float:
    """The longest a 10 ms timer was late while ``work`` ran: how stalled other events were."""
    worst = 0.0
    while not work.done():
        before = time.perf_counter()
        await asyncio.sleep(0.01)
        worst = max(worst, time.perf_counter() - before - 0.01)
    await work
    return worst


async def test_cpu_bound_work_does_not_stall_the_event_loop() -> None:
    pool = cpu.CpuPool(1, timeout=30)
    try:
        await pool.run(cpu_work.pid)  # the process is started outside the measurement
        offloaded = asyncio.ensure_future(pool.run(cpu_work.spin, 1.0))
        lag_offloaded = await loop_lag_during(offloaded)

        async def inline() -> object:
            return cpu_work.spin(1.0)

        lag_inline = await loop_lag_during(asyncio.ensure_future(inline()))
    finally:
        await pool.close()
    # Inline, the loop stalls for the whole second; offloaded it keeps ticking.
    assert lag_inline > 0.9
    # (A third of the inline stall: scheduling on a loaded machine, never the work itself.)
    assert lag_offloaded < 0.3, f"event loop lagged {lag_offloaded * 1000:.0f} ms"


async def test_a_call_past_its_timeout_is_killed_and_the_pool_recovers() -> None:
    pool = cpu.CpuPool(1, timeout=30)
    try:
        first_pid = await pool.run(cpu_work.pid)
        started = time.monotonic()
        with pytest.raises(cpu.CpuTimeoutError, match=r"spin ran longer than 0\.3 s"):
            await pool.run(cpu_work.spin, 30.0, timeout=0.3)
        assert time.monotonic() - started < 10.0  # not the 30 s the call would have spun
        assert await pool.run(cpu_work.pid) != first_pid  # a fresh process took its place
        assert pool.stats.timeouts == 1
    finally:
        await pool.close()


async def test_the_concurrency_limit_queues_calls() -> None:
    pool = cpu.CpuPool(1, timeout=30)
    try:
        await pool.run(cpu_work.pid)
        started = time.monotonic()
        calls = [asyncio.ensure_future(pool.run(cpu_work.spin, 0.3)) for _ in range(3)]
        await asyncio.sleep(0.1)
        assert (pool.stats.running, pool.stats.waiting) == (1, 2)
        await asyncio.gather(*calls)
        assert time.monotonic() - started >= 0.9  # one at a time
    finally:
        await pool.close()


async def test_a_dead_process_and_an_unpicklable_function_are_clear_errors() -> None:
    pool = cpu.CpuPool(1, timeout=30)
    try:
        with pytest.raises(cpu.CpuPoolError, match="the process running crash died"):
            await pool.run(cpu_work.crash)
        with pytest.raises(cpu.CpuPoolError, match="define it at a module's top level"):
            await pool.run(lambda: 1)
        assert await pool.run(cpu_work.spin, 0.01) > 0  # still serving
    finally:
        await pool.close()


async def test_a_cancelled_call_frees_its_process_at_once() -> None:
    pool = cpu.CpuPool(1, timeout=30)
    try:
        first_pid = await pool.run(cpu_work.pid)
        running = asyncio.ensure_future(pool.run(cpu_work.spin, 30.0))
        await asyncio.sleep(0.3)
        running.cancel()
        started = time.monotonic()
        assert await pool.run(cpu_work.pid) != first_pid  # not queued behind 30 s of work
        assert time.monotonic() - started < 5
    finally:
        await pool.close()
