"""How every long-running Shardline process lives: start, wait for SIGTERM, close."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
import typing

from shared import broker
from shared import logging as shard_logging

if typing.TYPE_CHECKING:
    from shared import clock as clock_module
    from shared import secret

__all__: typing.Sequence[str] = ("TaskGroup", "cancel_and_wait", "run_until_stopped", "settle_heap")

_LOGGER = logging.getLogger("shardline.lifecycle")


def settle_heap() -> None:
    """Once started: collect, then exempt what start-up built from future collections.

    Modules, hikari's factories and plugins live as long as the process; frozen, they are no
    longer scanned by every full collection on the hot path (about a tenth of a worker's time
    per event, measured with ``bench.worker_throughput``).
    """
    gc.collect()
    gc.freeze()


async def cancel_and_wait(
    tasks: typing.Iterable[asyncio.Task[typing.Any]], *, timeout: float = 10.0
) -> None:
    """Cancel ``tasks`` and wait for them to finish, cancelling again any that swallowed it.

    A library that catches ``CancelledError`` (redis-py can, while connecting) would otherwise
    leave ``await task`` hanging and a SIGTERM drain stuck until the orchestrator's SIGKILL.
    Gives up after ``timeout`` seconds with a warning naming what still runs.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    pending = {task for task in tasks if not task.done()}
    finished: set[asyncio.Task[typing.Any]] = {task for task in tasks if task.done()}
    while pending:
        for task in pending:
            task.cancel()
        remaining = deadline - loop.time()
        done, pending = await asyncio.wait(pending, timeout=max(0.0, min(1.0, remaining)))
        finished |= done
        if pending and remaining <= 1.0:
            _LOGGER.warning(
                "tasks still running after cancellation",
                extra={"tasks": sorted(task.get_name() for task in pending)},
            )
            break
    for task in finished:
        if not task.cancelled() and task.exception() is not None:
            _LOGGER.error(
                "task failed before it was stopped",
                exc_info=task.exception(),
                extra={"task": task.get_name()},
            )


class TaskGroup:
    """Owns a component's background tasks: loops that run until closed, and one-off work.

    A loop never dies on one error (it is logged and the next round runs); a loop that ends
    anyway is named by :attr:`ended`, which liveness checks read. :meth:`close` cancels
    everything and waits for it, whatever it was doing. One owner per task, as in trio's
    nurseries: nothing is left running after its component closed.
    """

    __slots__ = ("_logger", "_loops", "_work")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._loops: list[asyncio.Task[None]] = []
        self._work: set[asyncio.Task[typing.Any]] = set()

    def every(
        self,
        interval: float,
        step: typing.Callable[[], typing.Awaitable[object]],
        *,
        name: str,
        first_now: bool = False,
        clock: clock_module.Clock | None = None,
    ) -> asyncio.Task[None]:
        """Run ``step`` every ``interval`` seconds (first at once with ``first_now``), waiting
        on ``clock`` when given (tests pass a fake one)."""
        sleep = clock.sleep if clock is not None else asyncio.sleep

        async def loop() -> None:
            if not first_now:
                await sleep(interval)
            while True:
                try:
                    await step()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # the next round may well succeed
                    self._logger.warning("%s round failed", name, extra={"error": repr(exc)})
                await sleep(interval)

        task = asyncio.get_running_loop().create_task(loop(), name=name)
        self._loops.append(task)
        return task

    def spawn(
        self, coroutine: typing.Coroutine[typing.Any, typing.Any, object], *, name: str
    ) -> asyncio.Task[typing.Any]:
        """Run one piece of work in the background; a failure is logged, never lost."""
        task = asyncio.get_running_loop().create_task(coroutine, name=name)
        self._work.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[typing.Any]) -> None:
        self._work.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._logger.warning(
                "%s failed", task.get_name(), extra={"error": repr(task.exception())}
            )

    @property
    def ended(self) -> list[str]:
        """Loops that stopped although nobody closed them (a liveness failure)."""
        return sorted(t.get_name() for t in self._loops if t.done() and not t.cancelled())

    async def stop_loops(self, *names: str) -> None:
        """Stop the named loops (all of them without names), leaving one-off work running."""
        stopping = [t for t in self._loops if not names or t.get_name() in names]
        self._loops = [t for t in self._loops if t not in stopping]
        await cancel_and_wait(stopping)

    async def wait_work(self, timeout: float) -> None:
        """Let one-off work finish (a shard still starting), for up to ``timeout`` seconds."""
        if self._work:
            await asyncio.wait(set(self._work), timeout=timeout)

    async def close(self) -> None:
        await cancel_and_wait([*self._loops, *self._work])
        self._loops.clear()
        self._work.clear()


async def run_until_stopped(
    *,
    name: str,
    start: typing.Callable[[], typing.Awaitable[None]],
    close: typing.Callable[[], typing.Awaitable[None]],
    stopping: asyncio.Event,
    secrets: typing.Iterable[secret.Secret | None],
) -> None:
    """Mask ``secrets`` in logs, start, run until SIGTERM/SIGINT, then close (always)."""
    logger = logging.getLogger(f"shardline.{name}")
    for value in secrets:
        shard_logging.register_secret(value)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    started = time.monotonic()
    try:
        try:
            await start()
        except broker.BrokerStoppedError:
            logger.info("%s stopped before RabbitMQ answered", name)
            return
        settle_heap()
        logger.info("%s ready", name, extra={"seconds": round(time.monotonic() - started, 3)})
        await stopping.wait()
        logger.info("%s stopping: SIGTERM", name)
    finally:
        await close()
