"""Fleet requests to a real gateway and worker replicas, with a hung and a vanished target."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import typing

import pytest

from shared import rpc
from tests.worker.services.test_service import services_bot, spawn_worker, wait_for_async
from tests.worker.test_commands import replicas

if typing.TYPE_CHECKING:
    import pathlib

    from tests.gateway.conftest import Stack


async def test_every_process_answers_and_one_hung_target_times_out_alone(
    stack: Stack, tmp_path: pathlib.Path
) -> None:
    async with (
        replicas(stack, 2, services_bot) as group,
        stack.gateway(SHARD_COUNT="1", SHARD_IDS="0") as gateway,
    ):
        bot = group[0].bot
        await wait_for_async(
            lambda: stack.redis.exists(stack.keys.gateway_status(gateway.gateway_id)), 1
        )
        answers = await bot.fleet.ask("stats", timeout=10)
        assert all(a.ok for a in answers), answers
        by_role = {(a.role, a.target): a.value for a in answers}
        assert set(by_role) == {
            ("gateway", gateway.gateway_id),
            *(("worker", r.worker_id) for r in group),
        }
        assert "0" in by_role["gateway", gateway.gateway_id]["shards"]
        assert by_role["worker", group[1].worker_id]["worker"] == group[1].worker_id

        # Only registered questions: the gateway has no "pid"; workers answer it.
        answers = await bot.fleet.ask("pid", timeout=10)
        errors = {a.role: a.error for a in answers if not a.ok}
        assert isinstance(errors["gateway"], rpc.UnknownMethodError)
        assert [a.value for a in answers if a.role == "worker"] == [os.getpid()] * 2

        # A process that stopped answering (SIGSTOP: alive, its queue still there).
        process = spawn_worker(stack, tmp_path / "hung.log")
        try:
            await wait_for_async(lambda: stack.redis.zcard(stack.keys.workers()), 3)
            process.send_signal(signal.SIGSTOP)
            # A process whose heartbeat is fresh but whose queue is gone (it just died).
            await stack.redis.zadd(stack.keys.workers(), {"main-default-ghost": time.time()})
            started = time.monotonic()
            answers = await bot.fleet.ask("stats", roles=("worker",), timeout=2.0)
            elapsed = time.monotonic() - started
        finally:
            process.send_signal(signal.SIGCONT)
            process.terminate()
            await asyncio.get_running_loop().run_in_executor(None, process.wait, 30)
        # Each silent target waited on at once (about 2 s), not one after another (4 s).
        assert elapsed < 3.5, elapsed
        ok = sorted(a.target for a in answers if a.ok)
        assert ok == sorted(r.worker_id for r in group)
        failed = {a.target: a.error for a in answers if not a.ok}
        assert "main-default-ghost" in failed
        assert isinstance(failed["main-default-ghost"], rpc.TargetUnavailableError)
        [hung] = [t for t in failed if t != "main-default-ghost"]
        assert isinstance(failed[hung], rpc.RpcTimeoutError)
        assert f"worker {hung} did not answer within 2 s" in str(failed[hung])


async def test_asking_before_start_is_a_clear_error() -> None:
    with pytest.raises(rpc.RpcError, match="before the worker has started"):
        await services_bot().fleet.ask("stats")
