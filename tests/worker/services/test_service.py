"""Services led by one replica, called from any: real RabbitMQ, Redis, worker processes."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import typing

import pytest

from shared import rpc
from tests.worker import plugin_services
from tests.worker.test_commands import replicas
from worker import bot as bot_module

if typing.TYPE_CHECKING:
    import pathlib

    from tests.gateway.conftest import Stack
    from worker import app


def services_bot() -> bot_module.Bot:
    bot = bot_module.Bot()
    plugin_services.setup(bot)
    return bot


def leaders(group: list[app.WorkerApp]) -> list[app.WorkerApp]:
    return [r for r in group if r.service_host is not None and "counter" in r.service_host.leading]


async def wait_for(predicate: typing.Callable[[], typing.Any], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


async def test_a_service_runs_once_and_answers_calls_from_two_replicas(stack: Stack) -> None:
    async with replicas(stack, 2, services_bot) as group:
        await wait_for(lambda: leaders(group))
        [leader] = leaders(group)
        first, second = (r.bot for r in group)
        answers = await asyncio.gather(
            *(bot.services.call("counter", "whoami") for bot in (first, second) for _ in range(5))
        )
        assert {a["bot"] for a in answers} == {id(leader.bot)}  # one state, wherever called
        totals = await asyncio.gather(
            *(bot.services.call("counter", "add", {"n": 1}) for bot in (first, second) * 10)
        )
        assert sorted(totals) == list(range(1, 21))  # one process counted every call
        polls = await first.services.call("counter", "polls")
        await asyncio.sleep(0.3)
        assert await second.services.call("counter", "polls") > polls  # the background task runs
        status = leader.status()
        assert status["leading"] == ["counter"]
        [other] = [r for r in group if r is not leader]
        assert 'service="counter"} 1.0' in leader.render_metrics()
        assert 'service="counter"} 0.0' in other.render_metrics()


async def test_remote_errors_arrive_typed(stack: Stack) -> None:
    async with replicas(stack, 1, services_bot) as [replica]:
        bot = replica.bot
        await wait_for(lambda: leaders([replica]))
        with pytest.raises(plugin_services.NotFoundError, match="no item 'x'"):
            await bot.services.call("counter", "find", {"name": "x"})
        with pytest.raises(
            rpc.RemoteError, match="ZeroDivisionError: the handler failed"
        ) as raised:
            await bot.services.call("counter", "divide", {"a": 1, "b": 0})
        assert raised.value.remote_type == "builtins.ZeroDivisionError"
        with pytest.raises(rpc.UnknownMethodError, match="no handler 'nope'"):
            await bot.services.call("counter", "nope")
        with pytest.raises(rpc.TargetUnavailableError, match="'nowhere' is not defined"):
            await bot.services.call("nowhere", "whoami")
        # The service keeps answering after all of that.
        assert (await bot.services.call("counter", "whoami"))["bot"] == id(bot)


async def test_a_graceful_stop_hands_the_service_over_at_once(stack: Stack) -> None:
    async with replicas(stack, 2, services_bot) as group:
        await wait_for(lambda: leaders(group))
        [leader] = leaders(group)
        [other] = [r for r in group if r is not leader]
        started = time.monotonic()
        assert leader.service_host is not None
        await leader.service_host.close()  # what SIGTERM does first: releases the lease
        answer = await other.bot.services.call("counter", "whoami", timeout=5)
        assert answer["bot"] == id(other.bot)
        assert time.monotonic() - started < 5.0  # well before the 10 s lease would end


async def wait_for_async(
    probe: typing.Callable[[], typing.Awaitable[typing.Any]], expected: typing.Any
) -> None:
    deadline = time.monotonic() + 20
    while await probe() != expected:
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


def spawn_worker(stack: Stack, log: pathlib.Path, **extra: str) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **stack.env(
            WORKER_PLUGINS="tests.worker.plugin_services", WORKER_ROLES="services", **extra
        ),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "worker"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )


async def test_the_leader_killed_another_takes_over_within_the_lease(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    lease = 2.0
    monkeypatch.setenv("SERVICE_LEASE", str(lease))
    processes = [
        spawn_worker(stack, tmp_path / f"worker-{i}.log", SERVICE_LEASE=str(lease))
        for i in range(2)
    ]
    try:
        # The caller is a replica that only handles events: it never leads.
        async with replicas(stack, 1, services_bot) as [caller]:
            assert caller.service_host is not None
            await caller.service_host.close()
            bot = caller.bot
            leader_key = stack.keys.service_leader("counter")

            async def leader_pid() -> int:
                return int((await bot.services.call("counter", "whoami", timeout=15))["pid"])

            first_pid = await leader_pid()
            assert first_pid in {p.pid for p in processes}
            # Both candidates are up (the caller and the two processes heartbeat as workers).
            await wait_for_async(lambda: stack.redis.zcard(stack.keys.workers()), 3)
            assert (await stack.redis.get(leader_key)) is not None
            # Calls keep flowing while the leader dies; each must succeed.
            stop = asyncio.Event()
            results: list[tuple[float, int]] = []

            async def keep_calling() -> None:
                while not stop.is_set():
                    pid = await leader_pid()
                    # When the answer came: a call made just before the kill is answered by
                    # the successor once it leads.
                    results.append((time.monotonic(), pid))
                    await asyncio.sleep(0.05)

            caller_task = asyncio.get_running_loop().create_task(keep_calling())
            await asyncio.sleep(0.5)
            os.kill(first_pid, signal.SIGKILL)
            killed_at = time.monotonic()
            await wait_for(lambda: any(pid != first_pid for _, pid in results), timeout=15)
            stop.set()
            await caller_task  # raises if any call failed
            taken_over = next(at for at, pid in results if pid != first_pid)
            # The lease ends at most ``lease`` after the last renewal; the successor wakes then
            # (and a loaded machine may take a moment more; a second lease would mean it slept).
            assert taken_over - killed_at < 2 * lease, taken_over - killed_at
            assert all(pid == first_pid for at, pid in results if at < killed_at)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
            await asyncio.get_running_loop().run_in_executor(None, process.wait, 30)
