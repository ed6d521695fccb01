"""A plugin for the services tests (WORKER_PLUGINS=tests.worker.plugin_services).

``SERVICE_LEASE`` sets the service's lease (seconds); ``SCHEDULE_EVERY`` adds an interval
schedule that records each run in Redis.
"""

from __future__ import annotations

import asyncio
import os
import typing

import orjson

from shared import rpc

if typing.TYPE_CHECKING:
    from worker import bot as bot_module
    from worker.services import ScheduledRun


class NotFoundError(rpc.RemoteError):
    """Raised by the service, caught by callers as itself."""


def runs_key(bot: bot_module.Bot) -> str:
    assert bot.keys is not None
    return f"{bot.keys.prefix}:test-schedule-runs"


def setup(bot: bot_module.Bot) -> None:
    counter = bot.services.define("counter", lease=float(os.environ.get("SERVICE_LEASE", "10")))
    state = {"count": 0, "polls": 0}

    @counter.method
    async def whoami(args: typing.Any) -> dict[str, typing.Any]:
        del args
        return {"pid": os.getpid(), "bot": id(bot)}

    @counter.method
    async def add(args: typing.Any) -> int:
        state["count"] += int(args["n"])
        return state["count"]

    @counter.method
    async def find(args: typing.Any) -> str:
        raise NotFoundError(f"no item {args['name']!r}")

    @counter.method
    async def divide(args: typing.Any) -> float:
        return float(args["a"]) / float(args["b"])

    @counter.background
    async def poll() -> None:
        while True:
            state["polls"] += 1
            await asyncio.sleep(0.05)

    @counter.method
    async def polls(args: typing.Any) -> int:
        del args
        return state["polls"]

    @bot.fleet.answer("pid")
    async def pid(args: typing.Any) -> int:
        del args
        return os.getpid()

    every = os.environ.get("SCHEDULE_EVERY")
    if every:

        @bot.schedules.every(
            seconds=float(every), lease=float(os.environ.get("SERVICE_LEASE", "3"))
        )
        async def tick(run: ScheduledRun) -> None:
            assert bot.redis is not None
            await bot.redis.rpush(
                runs_key(bot), orjson.dumps({"due": run.due.timestamp(), "pid": os.getpid()})
            )
