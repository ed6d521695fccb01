"""CPU-bound work off the event loop: a small pool of processes with a limit and a timeout.

A handler that hashes, renders an image or parses a large file would stall its replica's
event loop (every other event waits). ``await bot.cpu.run(fn, *args)`` runs ``fn`` in a
separate process instead. At most ``CPU_PROCESSES`` calls run at once (the rest wait their
turn); a call longer than its timeout has its process killed and replaced, and the caller
gets :class:`CpuTimeoutError`. ``fn`` and its arguments must be picklable: define ``fn`` at a
module's top level.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import concurrent.futures.process
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import pickle
import typing

__all__: typing.Sequence[str] = ("CpuPool", "CpuPoolError", "CpuStats", "CpuTimeoutError")

_LOGGER = logging.getLogger("shardline.cpu")
T = typing.TypeVar("T")


class CpuPoolError(RuntimeError):
    """A CPU-bound call could not run, or its process died."""


class CpuTimeoutError(CpuPoolError, TimeoutError):
    """A CPU-bound call ran longer than its timeout; its process was killed."""


@dataclasses.dataclass(slots=True)
class CpuStats:
    calls: int = 0
    timeouts: int = 0
    failures: int = 0
    running: int = 0
    waiting: int = 0


class _Slot:
    """One process (a one-worker executor): killing it on a timeout harms no other call."""

    def __init__(self, context: multiprocessing.context.BaseContext) -> None:
        self.executor = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context)

    def kill(self) -> None:
        # The executor has no public way to stop a running call; its process table is the
        # only handle on the child (CPython 3.11's ``_processes``: pid -> Process).
        processes = getattr(self.executor, "_processes", None) or {}
        for process in list(processes.values()):
            with contextlib.suppress(Exception):
                process.kill()
        self.executor.shutdown(wait=False, cancel_futures=True)


class CpuPool:
    """``bot.cpu``: ``await bot.cpu.run(fn, *args, timeout=...)``."""

    def __init__(self, processes: int = 1, *, timeout: float = 30.0) -> None:
        if processes < 1:
            raise ValueError("a CPU pool needs at least one process")
        self.processes = processes
        self.timeout = timeout
        self.stats = CpuStats()
        # forkserver: children start from a clean server process, never a fork of a running
        # event loop with its threads and sockets.
        self._context = multiprocessing.get_context("forkserver")
        self._free: asyncio.Queue[_Slot] | None = None
        self._slots_made: set[_Slot] = set()

    def _slots(self) -> asyncio.Queue[_Slot]:
        if self._free is None:  # processes start lazily: most replicas never need them
            self._free = asyncio.Queue()
            for _ in range(self.processes):
                self._free.put_nowait(self._new_slot())
        return self._free

    def _new_slot(self) -> _Slot:
        slot = _Slot(self._context)
        self._slots_made.add(slot)
        return slot

    def _replace(self, slot: _Slot) -> _Slot:
        slot.kill()
        self._slots_made.discard(slot)
        return self._new_slot()

    async def run(
        self,
        fn: typing.Callable[..., T],
        *args: typing.Any,
        timeout: float | None = None,
        **kwargs: typing.Any,
    ) -> T:
        """``fn(*args, **kwargs)`` in a pool process; the event loop stays free meanwhile."""
        limit = self.timeout if timeout is None else timeout
        free = self._slots()
        self.stats.waiting += 1
        try:
            slot = await free.get()
        finally:
            self.stats.waiting -= 1
        self.stats.running += 1
        self.stats.calls += 1
        name = getattr(fn, "__qualname__", repr(fn))
        loop = asyncio.get_running_loop()
        try:
            future = loop.run_in_executor(slot.executor, functools.partial(fn, *args, **kwargs))
            return await asyncio.wait_for(future, limit)
        except asyncio.CancelledError:
            # The caller gave up; the process would go on computing for nobody.
            slot = self._replace(slot)
            raise
        except TimeoutError:
            if future.done() and not future.cancelled():
                raise  # fn's own TimeoutError, not the pool's limit
            self.stats.timeouts += 1
            slot = self._replace(slot)
            raise CpuTimeoutError(
                f"{name} ran longer than {limit:g} s; its process was stopped"
            ) from None
        except concurrent.futures.process.BrokenProcessPool:
            self.stats.failures += 1
            slot = self._replace(slot)
            raise CpuPoolError(f"the process running {name} died") from None
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            if "pickle" not in str(exc).lower():
                raise
            self.stats.failures += 1
            raise CpuPoolError(
                f"{name} cannot be sent to another process ({exc}); define it at a module's "
                "top level and pass picklable arguments"
            ) from None
        finally:
            self.stats.running -= 1
            free.put_nowait(slot)

    async def close(self) -> None:
        """Stop every process, busy ones included (a call still running is abandoned)."""
        for slot in list(self._slots_made):
            if slot.executor._processes:  # noqa: SLF001 - see _Slot.kill
                slot.kill()
            else:
                slot.executor.shutdown(wait=False, cancel_futures=True)
        self._slots_made.clear()
        self._free = None
        _LOGGER.debug("cpu pool closed")
