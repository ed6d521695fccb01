"""What scripts rely on: ``--pool``, ``--json`` before or after the command, one error line on
stderr and an exit status that says what went wrong (``cli.exit_codes``)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
import typing

import pytest

from cli.exit_codes import ExitCode
from shared import keys, status
from tests.cli.running import ROOT, json_document, process, run

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack

#: Stands for a password in a URL: no output may show it.
PASSWORD: typing.Final = "hunter2-never-shown"


def closed_port() -> int:
    """A local port nothing listens on (it was free a moment ago)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unreachable_env(namespace: str, amqp_url: str, redis_url: str, *, down: str) -> dict[str, str]:
    """The operator's environment with Redis or RabbitMQ (``down``) at a closed port, its URL
    carrying a password."""
    port = closed_port()
    return {
        "NAMESPACE": namespace,
        "POOL": "main",
        "AMQP_URL": f"amqp://guest:{PASSWORD}@127.0.0.1:{port}/"
        if down == "rabbitmq"
        else amqp_url,
        "REDIS_URL": f"redis://:{PASSWORD}@127.0.0.1:{port}/0" if down == "redis" else redis_url,
    }


@pytest.mark.usefixtures("operator_env")
async def test_pool_reads_another_pools_state_given_before_or_after_the_command(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    async with stack.gateway(POOL="premium", SHARD_COUNT="1", SHARD_IDS="0") as gateway:
        await stack.discord.wait_for(
            lambda: gateway.group is not None and gateway.group.stats[0].connected
        )
        await gateway.write_status()
        premium = keys.RedisKeys(stack.namespace, "premium")
        assert await stack.redis.exists(premium.gateway_status(gateway.gateway_id))
        code, before = await json_document(capsys, "--pool", "premium", "status")
        assert code == 0
        after = (await run(capsys, "--json", "status", "--pool", "premium")).document()
        for doc in (before, after):
            assert (doc["pool"], doc["shard_count"]) == ("premium", 1)
            assert [g["gateway"] for g in doc["gateways"]] == [gateway.gateway_id]
            assert [(s["shard"], s["state"]) for s in doc["shards"]] == [(0, "connected")]
        # POOL=main from the environment: the premium gateway is not there.
        code, main = await json_document(capsys, "status")
        assert (code, main["pool"], main["gateways"], main["shards"]) == (0, "main", [], [])
        # Fleet requests go to the chosen pool's processes too.
        code, asked = await json_document(
            capsys, "ask", "stats", "--role", "gateway", "--pool", "premium", "--timeout", "10"
        )
        assert code == 0
        assert [(a["process"], a["ok"]) for a in asked["answers"]] == [(gateway.gateway_id, True)]
        code, asked = await json_document(capsys, "ask", "stats", "--role", "gateway")
        assert (code, asked["answers"]) == (0, [])


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["status", "--bogus"], "shardline: unrecognized arguments: --bogus"),
        (["restart-shard", "one"], "argument shard: expected a whole number, got 'one'"),
        (["reshard-plan"], "the following arguments are required: --shards"),
        (["reshard-plan", "--shards", "4", "--max-concurrency", "0"], "must be at least 1"),
        (["drain", "gw", "--timeout", "-1"], "argument --timeout: must be at least 0"),
        (["--pool", "Not-A-Pool", "status"], "argument --pool: expected lowercase letters"),
        (["status", "--pool", ""], "argument --pool: expected lowercase letters"),
        (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
        (["--json"], "the following arguments are required: COMMAND"),
    ],
)
async def test_a_bad_argument_is_one_line_on_stderr_and_exit_status_2(
    capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    ran = await run(capsys, *argv)
    assert ran.code == ExitCode.USAGE == 2
    assert says in ran.error_line
    assert ran.error_line.endswith("--help)")


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("NAMESPACE", "Bad Namespace", "configuration error: NAMESPACE: expected lowercase"),
        ("REDIS_URL", f"http://u:{PASSWORD}@h/", "configuration error: REDIS_URL: expected a"),
        ("AMQP_URL", f"amqp://u:{PASSWORD}@h:port/", "AMQP_URL: its port is not a number"),
    ],
)
async def test_bad_configuration_is_exit_status_2_without_echoing_it(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    says: str,
) -> None:
    monkeypatch.setenv(variable, value)
    ran = await run(capsys, "status", "--json")
    assert ran.code == ExitCode.USAGE
    assert says in ran.error_line
    assert PASSWORD not in ran.err


@pytest.mark.parametrize(
    ("down", "argv", "says"),
    [
        (
            "redis",
            ["status"],
            "shardline: cannot reach Redis at 127.0.0.1:{port} (ConnectionError)",
        ),
        ("redis", ["undrain", "gw"], "shardline: cannot reach Redis at 127.0.0.1:{port}"),
        ("rabbitmq", ["dead-letters"], "shardline: cannot reach RabbitMQ at 127.0.0.1:{port} ("),
        ("rabbitmq", ["ask", "stats"], "shardline: cannot reach RabbitMQ at 127.0.0.1:{port} ("),
    ],
)
async def test_an_unreachable_server_is_exit_status_3_with_one_line_and_no_password(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    namespace: str,
    amqp_url: str,
    redis_url: str,
    down: str,
    argv: list[str],
    says: str,
) -> None:
    env = unreachable_env(namespace, amqp_url, redis_url, down=down)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    port = (env["REDIS_URL"] if down == "redis" else env["AMQP_URL"]).rsplit(":", 1)[1]
    for options in ([], ["--json"]):
        ran = await run(capsys, *argv, *options)
        assert ran.code == ExitCode.UNAVAILABLE == 3
        assert ran.error_line.startswith(says.format(port=port.split("/")[0]))
        assert PASSWORD not in ran.err


async def test_as_a_process_an_unreachable_server_prints_one_line_and_no_log(
    namespace: str, amqp_url: str, redis_url: str
) -> None:
    """Run as an operator runs it, where nothing captures the libraries' logging: aiormq
    logs a failed connection, and that must not add to the one line."""
    for down, argv in (("redis", ["status", "--json"]), ("rabbitmq", ["dead-letters"])):
        ran = await process(unreachable_env(namespace, amqp_url, redis_url, down=down), *argv)
        assert ran.code == ExitCode.UNAVAILABLE, ran
        line = ran.error_line
        assert line.startswith("shardline: cannot reach")
        assert PASSWORD not in line


@pytest.mark.usefixtures("operator_env")
async def test_help_lists_the_exit_statuses(capsys: pytest.CaptureFixture[str]) -> None:
    ran = await run(capsys, "--help")
    assert ran.code == ExitCode.OK
    assert ran.err == ""
    assert "--json" in ran.out
    assert "--pool NAME" in ran.out
    assert (
        "exit status: 0 ok, 1 problem, 2 usage, 3 unavailable, 4 timed out, 5 not authorized, "
        "130 interrupted" in " ".join(ran.out.split())
    )


async def _pretend_a_gateway(stack: Stack, gateway: str, *, leased: bool) -> None:
    """The status of a gateway holding shard 0 that takes no request (none runs)."""
    now = time.time()
    pretended = status.GatewayStatus(
        gateway=gateway, pool=stack.pool, shard_count=1, leased=leased, at=now,
        shards={0: status.ShardStatus(connected=True, latency=0.05)},
    )  # fmt: skip
    await stack.redis.zadd(stack.keys.gateway_index(), {gateway: now})
    await stack.redis.set(stack.keys.gateway_status(gateway), pretended.to_json())


@pytest.mark.usefixtures("operator_env")
async def test_a_wait_that_nothing_ends_is_exit_status_4(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    await _pretend_a_gateway(stack, "main-00000000", leased=True)
    ran = await run(capsys, "restart-shard", "0", "--wait", "--timeout", "0.5")
    assert ran.code == ExitCode.TIMED_OUT == 4
    assert ran.out == "asked the gateway holding shard 0 to restart it (it resumes)\n"
    assert ran.err == "shardline: no gateway took the request; is shard 0 running?\n"
    assert not await stack.redis.hexists(stack.keys.restart_requests(), "0")
    ran = await run(capsys, "drain", "main-00000000", "--wait", "--timeout", "0.5", "--json")
    assert ran.code == ExitCode.TIMED_OUT
    assert ran.out == ""  # no result: progress and the error went to stderr
    *progress, error = ran.err.splitlines()
    assert progress == [
        "draining main-00000000: its shards move to the other gateways, resuming sessions",
        "  main-00000000 holds 1 shards",
    ]
    assert error.startswith("shardline: the gateway still holds shards")


@pytest.mark.usefixtures("operator_env")
async def test_a_refusal_of_the_pools_state_is_exit_status_1_with_one_line(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    await _pretend_a_gateway(stack, "main-00000000", leased=False)
    for argv, says in (
        (["drain", "main-99999999"], "shardline: no live gateway 'main-99999999' in pool main"),
        (
            ["drain", "main-00000000"],
            "shardline: main-00000000 holds fixed SHARD_IDS; it cannot hand",
        ),
        (["reshard", "--shards", "2", "--abort"], "shardline: no re-shard is warming or switching"),
        (["reshard", "--shards", "1"], "shardline: the pool already runs 1 shards"),
    ):
        ran = await run(capsys, *argv, "--json")
        assert ran.code == ExitCode.PROBLEM == 1
        assert ran.error_line.startswith(says)
    assert not await stack.redis.exists(stack.keys.drain_requests())


@pytest.mark.usefixtures("operator_env")
async def test_ctrl_c_while_waiting_is_exit_status_130_with_one_line(stack: Stack) -> None:
    await _pretend_a_gateway(stack, "main-00000000", leased=True)
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", "drain", "main-00000000", "--wait", "--timeout", "60",
        env=dict(os.environ), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    waiting = await asyncio.wait_for(child.stdout.readline(), timeout=30)
    assert waiting.startswith(b"draining main-00000000")
    assert await asyncio.wait_for(child.stdout.readline(), timeout=30) == (
        b"  main-00000000 holds 1 shards\n"
    )
    child.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(child.communicate(), timeout=30)
    assert child.returncode == ExitCode.INTERRUPTED == 130
    assert err == b"shardline: interrupted\n"
    assert await stack.redis.hexists(stack.keys.drain_requests(), "main-00000000")
