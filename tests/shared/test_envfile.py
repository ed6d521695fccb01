"""The .env file for native runs: parsed as Compose reads it, the environment winning."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import pytest

from shared import config, envfile

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_lines_comments_quotes_and_export() -> None:
    lines = [
        "# a comment",
        "",
        "POOL=premium",
        "export LOG_LEVEL=DEBUG",
        "WORKER_PLUGINS=a.b,c.d # the plugins",
        "SINGLE='kept as # it is \\n'",
        'DOUBLE="a \\"quoted\\" line\\nand another"',
        "EMPTY=",
        "SPACED = value",
    ]
    text = "\n".join(lines)
    assert envfile.parse(text) == {
        "POOL": "premium",
        "LOG_LEVEL": "DEBUG",
        "WORKER_PLUGINS": "a.b,c.d",
        "SINGLE": "kept as # it is \\n",
        "DOUBLE": 'a "quoted" line\nand another',
        "EMPTY": "",
        "SPACED": "value",
    }


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not a variable", "line 2: expected KEY=VALUE"),
        ("TOKEN='secret-value", "line 2: unterminated ' quote"),
        ('TOKEN="secret-value" trailing', "line 2: text after the closing quote"),
    ],
)
def test_a_bad_line_is_named_without_its_value(line: str, reason: str) -> None:
    with pytest.raises(envfile.EnvFileError) as raised:
        envfile.parse(f"POOL=main\n{line}\n", source=".env")
    assert str(raised.value) == f".env {reason}"
    assert "secret-value" not in str(raised.value)


def test_the_environment_wins_and_empty_values_count_as_unset(tmp_path: pathlib.Path) -> None:
    (tmp_path / ".env").write_text("POOL=from-file\nNAMESPACE=file-ns\nLOG_LEVEL=\n")
    found = envfile.environment({"POOL": "from-env", "NAMESPACE": ""}, directory=tmp_path)
    assert found["POOL"] == "from-env"
    assert found["NAMESPACE"] == "file-ns"  # an empty variable is unset, as Compose's :-
    assert "LOG_LEVEL" not in found


def test_env_file_names_another_file_or_none(tmp_path: pathlib.Path) -> None:
    (tmp_path / "prod.env").write_text("POOL=premium\n")
    (tmp_path / ".env").write_text("POOL=main\n")
    assert envfile.environment({"ENV_FILE": "prod.env"}, directory=tmp_path)["POOL"] == "premium"
    assert "POOL" not in envfile.environment({"ENV_FILE": ""}, directory=tmp_path)
    with pytest.raises(envfile.EnvFileError, match=r"^ENV_FILE: missing\.env does not exist$"):
        envfile.environment({"ENV_FILE": "missing.env"}, directory=tmp_path)
    assert envfile.environment({}, directory=tmp_path / "nowhere") == {}


def run(module: str, directory: pathlib.Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DISCORD", "SHARD", "ENV_FILE", "PLAYGROUND"))
    }
    return subprocess.run(
        [sys.executable, "-m", module],
        cwd=directory,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_native_gateway_reads_the_env_file_in_its_directory(tmp_path: pathlib.Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc.def.ghi\nSHARD_COUNT=4\nSHARD_IDS=2-9\n")
    result = run("gateway", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "gateway: configuration error: SHARD_IDS: shard 4 does not exist with a shard count of 4"
    ]
    # The environment wins over the file.
    assert run("gateway", tmp_path, SHARD_IDS="0-9").stderr.splitlines() == [
        "gateway: configuration error: SHARD_IDS: shard 4 does not exist with a shard count of 4"
    ]


def test_a_bad_env_file_stops_the_process_with_one_line(tmp_path: pathlib.Path) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc.def.ghi\nthis is not an assignment\n")
    result = run("worker", tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "worker: configuration error: .env line 2: expected KEY=VALUE"
    ]
    assert "abc.def.ghi" not in result.stderr


def test_config_reads_it_when_given_no_mapping(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".env").write_text("DISCORD_TOKEN=abc.def.ghi\nPOOL=premium\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("POOL", raising=False)
    monkeypatch.delenv("ENV_FILE", raising=False)
    assert config.CoreSettings.from_env().pool == "premium"
