"""The circuit breaker on a fake clock: closed, open, half-open, and the per-call deadline."""

from __future__ import annotations

import asyncio
import typing

import pytest

from shared import breaker
from shared import clock as clock_module


class OutageError(Exception):
    pass


async def fail() -> None:
    raise OutageError


async def ok() -> str:
    return "answer"


def make(fake: clock_module.Clock, **options: typing.Any) -> breaker.CircuitBreaker:
    return breaker.CircuitBreaker(
        "redis", clock=fake, failures=3, reset_after=2.0, deadline=0.05, **options
    )


async def test_failures_in_a_row_open_it_then_calls_fail_at_once() -> None:
    async with clock_module.FakeClock() as fake:
        cut = make(fake)
        for _ in range(2):
            with pytest.raises(OutageError):
                await cut.call(fail)
        assert cut.state is breaker.State.CLOSED
        assert await cut.call(ok) == "answer"  # a success resets the count
        for _ in range(3):
            with pytest.raises(OutageError):
                await cut.call(fail)
        assert cut.state is breaker.State.OPEN
        called = []

        async def never() -> None:
            called.append(1)

        with pytest.raises(breaker.BreakerOpen):
            await cut.call(never)
        assert not called
        assert cut.refused == 1
        assert cut.opened == 1


async def test_after_reset_after_one_probe_goes_and_decides() -> None:
    async with clock_module.FakeClock() as fake:
        cut = make(fake)
        changes: list[tuple[breaker.State, breaker.State]] = []
        cut.on_change(lambda old, new: changes.append((old, new)))
        for _ in range(3):
            with pytest.raises(OutageError):
                await cut.call(fail)
        fake.advance(1.9)
        assert cut.state is breaker.State.OPEN
        fake.advance(0.1)
        assert cut.state is breaker.State.HALF_OPEN
        # The probe fails: open again, for another reset_after.
        with pytest.raises(OutageError):
            await cut.call(fail)
        assert cut.state is breaker.State.OPEN
        fake.advance(2.0)
        # While the probe is under way, the others are refused at once.
        gate = asyncio.Event()

        async def slow_ok() -> str:
            await gate.wait()
            return "late"

        probe = asyncio.get_running_loop().create_task(cut.call(slow_ok))
        await asyncio.sleep(0)
        with pytest.raises(breaker.BreakerOpen):
            await cut.call(ok)
        gate.set()
        assert await probe == "late"
        assert cut.state is breaker.State.CLOSED
        assert [(a.value, b.value) for a, b in changes] == [
            ("closed", "open"),
            ("open", "half-open"),
            ("half-open", "open"),
            ("open", "half-open"),
            ("half-open", "closed"),
        ]


async def test_a_call_that_never_answers_misses_its_deadline_and_counts() -> None:
    async with clock_module.FakeClock() as fake:
        cut = make(fake)
        for _ in range(3):
            with pytest.raises(breaker.DeadlineExceeded):
                await cut.call(asyncio.Event().wait)
        assert cut.timeouts == 3
        assert cut.state is breaker.State.OPEN


async def test_an_answered_error_is_not_an_outage() -> None:
    async with clock_module.FakeClock() as fake:
        cut = make(fake, is_failure=lambda exc: isinstance(exc, OutageError))

        async def refused() -> None:
            raise ValueError("WRONGTYPE")

        for _ in range(5):
            with pytest.raises(ValueError, match="WRONGTYPE"):
                await cut.call(refused)
        assert cut.state is breaker.State.CLOSED
