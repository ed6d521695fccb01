"""The event loop a service runs on: uvloop by default, asyncio's own on request.

uvloop (libuv under asyncio's API; hikari and aio-pika support it) lowers the cost of every
socket read and write, timer and callback, which is most of what a gateway and a worker do per
event: the A/B is in docs/benchmarks.md ("Event loop"). ``EVENT_LOOP=asyncio`` runs asyncio's
own loop instead (a platform uvloop does not support, or to compare).
"""

from __future__ import annotations

import asyncio
import typing

__all__: typing.Sequence[str] = ("CHOICES", "DEFAULT", "loop_factory", "run")

_T = typing.TypeVar("_T")
#: What ``EVENT_LOOP`` accepts.
CHOICES: typing.Final = ("uvloop", "asyncio")
DEFAULT: typing.Final = "uvloop"


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
