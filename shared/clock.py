"""Time as a parameter: what the rate limiters, cooldowns and leases read and wait on.

Production passes :class:`SystemClock`. Tests pass :class:`FakeClock`, whose time moves only
when every task it watches is waiting on it (trio's ``MockClock(autojump_threshold=0)``, for
asyncio): a test asserts which request waited how long, exactly, however loaded the machine.

Times that several processes compare (the Lua scripts' ``now``) are :meth:`Clock.now_ms`, on
the wall clock every replica shares; waits are measured on :meth:`Clock.monotonic`.
"""

from __future__ import annotations

import abc
import asyncio
import contextvars
import heapq
import itertools
import time
import typing

__all__: typing.Sequence[str] = ("Clock", "FakeClock", "SystemClock")

_T = typing.TypeVar("_T")


class Clock(abc.ABC):
    """Where a component reads the time and waits."""

    __slots__ = ()

    @abc.abstractmethod
    def now_ms(self) -> int:
        """Milliseconds since the Unix epoch: the time replicas agree on (in Redis scripts)."""

    @abc.abstractmethod
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back: for measuring this process's waits."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` on this clock."""


class SystemClock(Clock):
    """The real time: ``time.time``, ``time.monotonic`` and ``asyncio.sleep``."""

    __slots__ = ()

    def now_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


#: The fake clock whose actor the current task is (tasks inherit it from their creator).
_ACTOR: contextvars.ContextVar[FakeClock | None] = contextvars.ContextVar(
    "shardline_fake_clock_actor", default=None
)


class FakeClock(Clock):
    """Time that stands still until every watched task waits on it, then jumps.

    Tasks started with :meth:`spawn`, and every task they create in turn, are watched. While
    one of them runs or awaits real I/O (Redis, HTTP) time stands still; once each is done or
    in :meth:`sleep`, time jumps to the earliest wake-up and wakes exactly the tasks due then.
    :meth:`advance` moves time by hand: the tasks it wakes are late, as after a stalled loop.
    A watched task that awaits another watched task counts as running (time stands still for
    good): await watched tasks from the test's own task, which is not watched.

    Use it as an async context manager (it installs the event loop's task factory that
    recognises watched tasks).
    """

    __slots__ = (
        "_asleep",
        "_check_scheduled",
        "_loop",
        "_now_us",
        "_previous_factory",
        "_sequence",
        "_sleepers",
        "_watched",
    )

    def __init__(self, *, start_ms: int = 1_700_000_000_000) -> None:
        self._now_us = start_ms * 1000
        self._sleepers: list[tuple[int, int, asyncio.Future[None], asyncio.Task[typing.Any] | None]]
        self._sleepers = []
        self._sequence = itertools.count()
        self._watched: set[asyncio.Task[typing.Any]] = set()
        self._asleep: set[asyncio.Task[typing.Any]] = set()
        self._check_scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._previous_factory: typing.Any = None

    # --- Clock ---------------------------------------------------------------------------------

    def now_ms(self) -> int:
        return self._now_us // 1000

    def monotonic(self) -> float:
        return self._now_us / 1_000_000

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        deadline = self._now_us + max(1, round(seconds * 1_000_000))
        task = asyncio.current_task()
        heapq.heappush(self._sleepers, (deadline, next(self._sequence), waiter, task))
        if task is not None:
            self._asleep.add(task)
        self._schedule_check()
        try:
            await waiter
        finally:
            if task is not None:
                self._asleep.discard(task)
            if not waiter.done():  # cancelled: skipped when its deadline comes up
                waiter.cancel()

    # --- driving ---------------------------------------------------------------------------

    def spawn(self, coroutine: typing.Coroutine[typing.Any, typing.Any, _T]) -> asyncio.Task[_T]:
        """Start ``coroutine`` as a watched task (time waits for it and what it starts)."""
        context = contextvars.copy_context()
        context.run(_ACTOR.set, self)
        return asyncio.get_running_loop().create_task(coroutine, context=context)

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` at once, waking every task due by then (late)."""
        self._now_us += round(seconds * 1_000_000)
        self._wake_due()

    @property
    def sleeping(self) -> int:
        """How many tasks wait on this clock."""
        return sum(1 for _, _, waiter, _ in self._sleepers if not waiter.done())

    async def __aenter__(self) -> typing.Self:
        self._loop = asyncio.get_running_loop()
        self._previous_factory = self._loop.get_task_factory()
        self._loop.set_task_factory(self._make_task)
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._loop is not None:
            self._loop.set_task_factory(self._previous_factory)
            self._loop = None

    # --- internals -------------------------------------------------------------------------

    def _make_task(
        self,
        loop: asyncio.AbstractEventLoop,
        coroutine: typing.Coroutine[typing.Any, typing.Any, typing.Any]
        | typing.Generator[typing.Any, None, typing.Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[typing.Any]:
        actor = context.get(_ACTOR) if context is not None else _ACTOR.get()
        task = asyncio.Task(coroutine, loop=loop, context=context)
        if actor is self:
            self._watched.add(task)
            task.add_done_callback(self._forget)
        return task

    def _forget(self, task: asyncio.Task[typing.Any]) -> None:
        self._watched.discard(task)
        self._asleep.discard(task)
        self._schedule_check()

    def _schedule_check(self) -> None:
        if not self._check_scheduled:
            self._check_scheduled = True
            asyncio.get_running_loop().call_soon(self._jump_if_idle)

    def _jump_if_idle(self) -> None:
        self._check_scheduled = False
        if not self._watched <= self._asleep:
            return  # a watched task runs or awaits I/O: time stands still
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        if self._sleepers:
            self._now_us = max(self._now_us, self._sleepers[0][0])
            self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self._now_us:
            _, _, waiter, task = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)
                # Running from now on, not from when the loop gets to it: no jump before then.
                if task is not None:
                    self._asleep.discard(task)
