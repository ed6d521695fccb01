"""How every long-running Shardline process lives: start, wait for SIGTERM, close."""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import time
import typing

from shared import logging as shard_logging

if typing.TYPE_CHECKING:
    from shared import secret

__all__: typing.Sequence[str] = ("cancel_and_wait", "run_until_stopped", "settle_heap")

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
        await start()
        settle_heap()
        logger.info("%s ready", name, extra={"seconds": round(time.monotonic() - started, 3)})
        await stopping.wait()
        logger.info("%s stopping: SIGTERM", name)
    finally:
        await close()
