"""The stack's gateway health check, applied as Swarm applies it, to a real gateway that
cold-starts 64 shards at ``max_concurrency`` 1.

Discord allows one IDENTIFY per bucket per 5 s (discord-api-docs, Gateway: "Sharding for
Large Bots" / max_concurrency), so such a gateway needs at least 64 x 5 s = 320 s to be
ready. A health check that waits for readiness (what stack.yml had: /readyz, a 30 s start
period, 3 retries at 10 s) replaces it after about a minute, in the middle of doing its job;
the check must pass the whole time. This runs the whole cold start: about five and a half
minutes, the only way to show the check holds to the last shard.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import re
import signal
import subprocess
import sys
import time
import typing

import pytest
import yaml

from tests import servers
from tests.gateway.conftest import stop_process

if typing.TYPE_CHECKING:
    from tests.conftest import EmulatorFactory
    from tests.gateway.conftest import Stack

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]
SHARDS: typing.Final = 64


def seconds(duration: str) -> float:
    """A Compose duration (``10s``, ``1m30s``, ``500ms``) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts, duration
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    command: list[str]
    interval: float
    timeout: float
    retries: int
    start_period: float

    @classmethod
    def of_service(cls, name: str) -> HealthCheck:
        stack = yaml.safe_load((ROOT / "stack.yml").read_text())
        check = stack["services"][name]["healthcheck"]
        kind, *command = check["test"]
        assert kind == "CMD", "a CMD-SHELL check would need a shell the image may not have"
        assert command[0] == "python"
        return cls(
            [sys.executable, *command[1:]],
            seconds(check["interval"]),
            seconds(check["timeout"]),
            int(check["retries"]),
            seconds(check.get("start_period", "0s")),
        )


class Swarm:
    """Docker's health state machine (docs.docker.com, Dockerfile reference, HEALTHCHECK):
    the first probe runs ``interval`` after the start, each probe is killed at ``timeout``;
    failures inside ``start_period`` do not count until a probe has succeeded; ``retries``
    consecutive counted failures make the task unhealthy, and Swarm replaces it."""

    def __init__(self, check: HealthCheck) -> None:
        self.check = check
        self.started = False
        self.streak = 0
        self.unhealthy_at: float | None = None
        self.failures: list[str] = []

    def observe(self, ok: bool, since_start: float, said: str) -> None:
        if ok:
            self.started = True
            self.streak = 0
            return
        self.failures.append(f"{since_start:.0f} s: {said}")
        if since_start < self.check.start_period and not self.started:
            return
        self.streak += 1
        if self.streak >= self.check.retries and self.unhealthy_at is None:
            self.unhealthy_at = since_start


async def probe(command: list[str], timeout: float, env: dict[str, str]) -> tuple[bool, str]:
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        _, err = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        process.kill()
        await process.wait()
        return False, "timed out"
    return process.returncode == 0, err.decode(errors="replace").strip()[-200:]


@pytest.mark.timeout(900)
async def test_the_stack_health_check_keeps_a_gateway_identifying_64_shards(
    make_emulator: EmulatorFactory, stack: Stack
) -> None:
    check = HealthCheck.of_service("gateway-main")
    stack.discord = discord = await make_emulator(max_concurrency=1, recommended_shards=SHARDS)
    port = servers.free_port()
    # The old check, on the same run: what a health check on readiness would have done.
    readiness = HealthCheck(
        [c.replace("/livez", "/readyz") for c in check.command],
        check.interval, check.timeout, check.retries, check.start_period,
    )  # fmt: skip
    assert readiness.command != check.command, "the stack's check no longer probes /livez"
    env = {**os.environ, "HEALTH_PORT": str(port)}
    swarm, old_swarm = Swarm(check), Swarm(readiness)
    gateway = stack.spawn(
        SHARD_COUNT=str(SHARDS), SHARD_IDS=f"0-{SHARDS - 1}", HEALTH_PORT=str(port)
    )
    started = time.monotonic()
    try:
        # 64 windows of 5 s, and a margin for a loaded machine.
        deadline = started + SHARDS * discord.gateway.options.identify_window + 240
        next_probe = started + check.interval
        while len(discord.connected_shards()) < SHARDS:
            assert time.monotonic() < deadline, f"{len(discord.connected_shards())} shards up"
            assert gateway.poll() is None, "the gateway exited"
            await asyncio.sleep(max(0.0, next_probe - time.monotonic()))
            since = time.monotonic() - started
            live, ready = await asyncio.gather(
                probe(check.command, check.timeout, env),
                probe(readiness.command, readiness.timeout, env),
            )
            swarm.observe(live[0], since, live[1])
            old_swarm.observe(ready[0], since, ready[1])
            assert swarm.unhealthy_at is None, (
                f"Swarm would replace the gateway at {swarm.unhealthy_at:.0f} s with "
                f"{len(discord.connected_shards())}/{SHARDS} shards up: {swarm.failures}"
            )
            next_probe += check.interval
        took = time.monotonic() - started
    finally:
        stderr = await stop_process(gateway, signal.SIGTERM)
    assert gateway.returncode == 0, stderr[-2000:]
    # Discord's limit held the whole way, and that is what took the time.
    assert discord.records.identify_violations == []
    assert len(discord.records.identifies) == SHARDS
    assert took >= (SHARDS - 1) * discord.gateway.options.identify_window
    # The live check never failed, and the one on readiness would have killed it early.
    assert swarm.failures == []
    assert old_swarm.unhealthy_at is not None
    assert old_swarm.unhealthy_at < took / 2
