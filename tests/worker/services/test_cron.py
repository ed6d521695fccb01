"""Cron expressions: parsing, next times, and errors that name the bad part."""

from __future__ import annotations

import datetime as dt

import pytest

from worker.services import cron


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", "2026-11-22 10:03:10", "2026-11-22 10:05:00"),
        ("*/5 * * * *", "2026-11-22 10:05:00", "2026-11-22 10:10:00"),  # strictly after
        ("0 9 * * mon", "2026-11-22 10:00:00", "2026-11-23 09:00:00"),  # the 22nd is a Sunday
        ("30 23 31 * *", "2026-11-01 00:00:00", "2026-12-31 23:30:00"),  # November has 30 days
        ("0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),  # the next leap day
        ("0 12 1 * 5", "2026-11-22 00:00:00", "2026-11-27 12:00:00"),  # day OR weekday
        ("15 10-12/2 * jan-mar,dec *", "2026-11-22 00:00:00", "2026-12-01 10:15:00"),
        ("@hourly", "2026-11-22 10:59:59", "2026-11-22 11:00:00"),
        ("@weekly", "2026-11-22 00:00:00", "2026-11-29 00:00:00"),
        ("0 0 * * 7", "2026-11-22 00:00:00", "2026-11-29 00:00:00"),  # 7 is Sunday too
        ("5/20 * * * *", "2026-11-22 10:06:00", "2026-11-22 10:25:00"),  # from 5, every 20
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert cron.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("60 * * * *", "minute: 60 is outside 0-59"),
        ("* 24 * * *", "hour: 24 is outside 0-23"),
        ("* * 0 * *", "day of month: 0 is outside 1-31"),
        ("* * * foo *", "month: 'foo' is not a number or a name"),
        ("*/0 * * * *", "minute: bad step '0'"),
        ("5-1 * * * *", "minute: range '5-1' runs backwards"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message):
        cron.parse(expression)
