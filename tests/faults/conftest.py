"""The fault suite: real processes killed, real servers stopped, under load. Each test adds a
row to a summary table printed at the end of the run."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from tests.gateway.conftest import stack

if typing.TYPE_CHECKING:
    from _pytest.terminal import TerminalReporter

__all__ = ["Row", "fault_report", "stack"]


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    scenario: str
    sent: int
    handled: int
    lost: int
    duplicates: int
    recovery: float
    bound: float
    promise: str


_ROWS: list[Row] = []


@pytest.fixture
def fault_report() -> typing.Callable[[Row], None]:
    return _ROWS.append


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if not _ROWS:
        return
    headers = ("scenario", "sent", "handled", "lost", "dup", "recovery s", "bound s", "promise")
    rows = [
        (r.scenario, r.sent, r.handled, r.lost, r.duplicates, f"{r.recovery:.1f}", f"{r.bound:g}",
         r.promise)
        for r in _ROWS
    ]  # fmt: skip
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]
    terminalreporter.section("fault suite")
    for line in (headers, *rows):
        terminalreporter.write_line(
            "  ".join(str(x).ljust(w) for x, w in zip(line, widths, strict=True))
        )
