"""``python -m gateway``: bad configuration stops it at start with one line."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import typing

if typing.TYPE_CHECKING:
    from tests.gateway.conftest import Stack


def run_gateway(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in env and not k.startswith("DISCORD")}
    return subprocess.run(
        [sys.executable, "-m", "gateway"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_token_is_one_line_naming_the_variable() -> None:
    result = run_gateway({"SHARD_COUNT": "4"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        (
            "gateway: configuration error: DISCORD_TOKEN: is required but not set "
            "(or set DISCORD_TOKEN_FILE; or PLAYGROUND_URL to run against the playground, "
            "python -m playground)"
        )
    ]


def test_bad_shard_ids_is_one_line() -> None:
    result = run_gateway({"DISCORD_TOKEN": "abc.def.ghi", "SHARD_COUNT": "4", "SHARD_IDS": "2-9"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "gateway: configuration error: SHARD_IDS: shard 4 does not exist with a shard count of 4"
    ]


async def test_a_rejected_token_is_one_line_without_the_token(stack: Stack) -> None:
    env = stack.env(DISCORD_TOKEN="MTIz.wrong.tokenvaluethatisnotvalid")
    result = await asyncio.get_running_loop().run_in_executor(None, run_gateway, env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "gateway: DISCORD_TOKEN was rejected by Discord (401 Unauthorized)"
    )
    assert "tokenvaluethatisnotvalid" not in result.stderr
