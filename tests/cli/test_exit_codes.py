"""The exit statuses of ``shardline``: one meaning per code, and the operations guide's table
lists exactly these (``cli.exit_codes``)."""

from __future__ import annotations

import pathlib
import re

from cli.exit_codes import CommandError, ExitCode

GUIDE = pathlib.Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def test_every_status_is_distinct_and_follows_the_shell_conventions() -> None:
    values = [int(code) for code in ExitCode]
    assert len(values) == len(set(values)), "two meanings share a status"
    assert ExitCode.OK == 0
    assert ExitCode.USAGE == 2, "argparse exits 2 on bad arguments"
    assert ExitCode.INTERRUPTED == 128 + 2, "128 + SIGINT, as shells report Ctrl-C"


def test_the_operations_guide_documents_exactly_these_statuses() -> None:
    text = GUIDE.read_text()
    table = text[text.index("The statuses are `cli.exit_codes.ExitCode`") :]
    documented = {int(status) for status in re.findall(r"^\| (\d+) \|", table, re.MULTILINE)}
    assert documented == {int(code) for code in ExitCode}


def test_a_command_error_carries_its_status_and_one_line_message() -> None:
    error = CommandError(ExitCode.UNAVAILABLE, "Redis at 127.0.0.1:6379 cannot be reached")
    assert error.code is ExitCode.UNAVAILABLE
    assert str(error) == "Redis at 127.0.0.1:6379 cannot be reached"
    assert isinstance(error, Exception)
