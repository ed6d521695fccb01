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

__all__: typing.Sequence[str] = ("run_until_stopped", "settle_heap")


def settle_heap() -> None:
    """Once started: collect, then exempt what start-up built from future collections.

    Modules, hikari's factories and plugins live as long as the process; frozen, they are no
    longer scanned by every full collection on the hot path (about a tenth of a worker's time
    per event, measured with ``bench.worker_throughput``).
    """
    gc.collect()
    gc.freeze()


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
