"""How the tests run ``shardline``: in this process (output captured) or as a real process."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import pathlib
import sys
import typing

import orjson

from cli import __main__ as cli

if typing.TYPE_CHECKING:
    import pytest

ROOT: typing.Final = pathlib.Path(__file__).resolve().parents[2]


@dataclasses.dataclass(frozen=True, slots=True)
class Ran:
    code: int
    out: str
    err: str

    def document(self) -> typing.Any:
        """The one JSON document on stdout (fails if anything else is there)."""
        return orjson.loads(self.out)

    @property
    def error_line(self) -> str:
        """The error, checked to be exactly one line on stderr with nothing on stdout."""
        assert self.out == "", self.out
        assert self.err.endswith("\n"), self.err
        assert self.err.count("\n") == 1, self.err
        assert self.err.startswith("shardline"), self.err
        return self.err.rstrip("\n")


async def shardline(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Exit status and stdout."""
    ran = await run(capsys, *argv)
    return ran.code, ran.out


async def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Ran:
    capsys.readouterr()
    code = await cli.run(list(argv))
    captured = capsys.readouterr()
    return Ran(code, captured.out, captured.err)


async def json_document(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, typing.Any]:
    """Exit status and the JSON document of ``shardline ARGV --json``."""
    ran = await run(capsys, *argv, "--json")
    return ran.code, ran.document()


async def process(env: typing.Mapping[str, str], *argv: str) -> Ran:
    """``python -m cli ARGV`` as an operator runs it: its own logging, its own streams."""
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "cli", *argv,
        env={**os.environ, **env}, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(child.communicate(), timeout=60)
    assert child.returncode is not None
    return Ran(child.returncode, out.decode(), err.decode())
