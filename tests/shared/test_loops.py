"""The services' event loop: asyncio's own unless EVENT_LOOP asks for uvloop."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from shared import loops


async def _loop_kind() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_run_uses_the_loop_asked_for() -> None:
    assert not issubclass(loops.run(_loop_kind()), uvloop.Loop)
    assert issubclass(loops.run(_loop_kind(), loop="uvloop"), uvloop.Loop)
    assert not issubclass(loops.run(_loop_kind(), loop="asyncio"), uvloop.Loop)


def test_an_unknown_loop_is_refused() -> None:
    with pytest.raises(ValueError, match="expected one of asyncio, uvloop"):
        loops.loop_factory("trio")
