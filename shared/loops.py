"""The event loop a service runs on: asyncio's own, or uvloop on request (``EVENT_LOOP``).

uvloop (libuv under asyncio's API; hikari and aio-pika support it) makes socket reads and
writes, timers and callbacks cheaper. Measured for issue 22 (docs/benchmarks.md, "The worker's
cost per event"): a bare aio-pika consume loop ran 10-20% faster on it, but neither service's
CPU per event nor its latency moved measurably (their time is in Python: hikari, pamqp,
redis-py), so asyncio's loop stays the default and uvloop is there to measure elsewhere.
"""

from __future__ import annotations

import asyncio
import typing

__all__: typing.Sequence[str] = ("CHOICES", "DEFAULT", "loop_factory", "run")

_T = typing.TypeVar("_T")
#: What ``EVENT_LOOP`` accepts.
CHOICES: typing.Final = ("asyncio", "uvloop")
DEFAULT: typing.Final = "asyncio"


def loop_factory(name: str) -> typing.Callable[[], asyncio.AbstractEventLoop]:
    """A new loop of the kind ``name`` (one of :data:`CHOICES`)."""
    if name == "uvloop":
        import uvloop  # noqa: PLC0415 - only the uvloop loop needs it

        return uvloop.new_event_loop
    if name == "asyncio":
        return asyncio.new_event_loop
    raise ValueError(f"expected one of {', '.join(CHOICES)}, got {name!r}")


def run(main: typing.Coroutine[typing.Any, typing.Any, _T], *, loop: str = DEFAULT) -> _T:
    """``asyncio.run(main)`` on a loop of the kind ``loop``."""
    with asyncio.Runner(loop_factory=loop_factory(loop)) as runner:
        return runner.run(main)
