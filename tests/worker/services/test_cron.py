"""Cron expressions: next times, day-field rules, time zones across daylight saving, errors."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import croniter
import pytest

from worker.services import cron

BERLIN = "Europe/Berlin"


def at(text: str, tz: str = "UTC") -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=zoneinfo.ZoneInfo(tz))


def fires(expression: str, after: str, count: int, tz: str = "UTC") -> list[dt.datetime]:
    """The next ``count`` times after ``after`` (a UTC time), in UTC."""
    parsed = cron.parse(expression, tz)
    moment, found = at(after), []
    for _ in range(count):
        moment = parsed.next_after(moment)
        found.append(moment)
    return found


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("*/5 * * * *", "2026-11-22 10:03:10", "2026-11-22 10:05:00"),
        ("*/5 * * * *", "2026-11-22 10:05:00", "2026-11-22 10:10:00"),  # strictly after
        ("*/5 * * * *", "2026-11-22 10:05:00.5", "2026-11-22 10:10:00"),
        ("0 9 * * mon", "2026-11-22 10:00:00", "2026-11-23 09:00:00"),  # the 22nd is a Sunday
        ("30 23 31 * *", "2026-11-01 00:00:00", "2026-12-31 23:30:00"),  # November has 30 days
        ("0 0 29 2 *", "2026-03-01 00:00:00", "2028-02-29 00:00:00"),  # the next leap day
        ("15 10-12/2 * jan-mar,dec *", "2026-11-22 00:00:00", "2026-12-01 10:15:00"),
        ("@hourly", "2026-11-22 10:59:59", "2026-11-22 11:00:00"),
        ("@weekly", "2026-11-22 00:00:00", "2026-11-29 00:00:00"),
        ("0 0 * * 7", "2026-11-22 00:00:00", "2026-11-29 00:00:00"),  # 7 is Sunday too
        ("5/20 * * * *", "2026-11-22 10:06:00", "2026-11-22 10:25:00"),  # from 5, every 20
        ("0 22-2 * * *", "2026-11-22 03:00:00", "2026-11-22 22:00:00"),  # a range may wrap
        ("0 0 L * *", "2026-02-01 00:00:00", "2026-02-28 00:00:00"),  # the last day
        ("0 0 L * *", "2028-02-01 00:00:00", "2028-02-29 00:00:00"),
        ("0 0 * * mon#2", "2026-11-01 00:00:00", "2026-11-09 00:00:00"),  # the second Monday
        ("0 0 * * mon#2", "2026-11-09 00:00:00", "2026-12-14 00:00:00"),
        ("0 18 * * L5", "2026-11-01 00:00:00", "2026-11-27 18:00:00"),  # the last Friday
        ("0 0 15W * *", "2026-11-01 00:00:00", "2026-11-16 00:00:00"),  # the 15th: a Sunday
    ],
)
def test_next_after(expression: str, after: str, expected: str) -> None:
    assert cron.parse(expression).next_after(at(after)) == at(expected)


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        # Both restricted: either matches (Vixie). November 2026 starts on a Sunday.
        ("0 0 1 * mon", [1, 2, 9, 16, 23, 30]),
        ("0 0 1-31 * mon", list(range(1, 31))),  # '1-31' is restricted: every day matches
        ("0 0 1 * 0-6", list(range(1, 31))),
        # A field starting with '*' counts as unrestricted: both must match (Vixie, not
        # croniter's default, which would fire on odd days or Mondays).
        ("0 0 */2 * mon", [9, 23]),
        ("0 0 1 * */2", [1]),  # the 1st is a Sunday (0), which */2 includes
        ("0 0 * * mon", [2, 9, 16, 23, 30]),
        ("0 0 ? * mon", [2, 9, 16, 23, 30]),
    ],
)
def test_day_of_month_and_day_of_week_follow_vixie_cron(expression: str, days: list[int]) -> None:
    november = [t for t in fires(expression, "2026-10-31 12:00", 40) if t < at("2026-12-01")]
    assert [t.day for t in november] == days


def test_a_berlin_morning_stays_at_nine_local_across_both_changes() -> None:
    spring = fires("0 9 * * *", "2026-03-27 12:00", 3, BERLIN)
    autumn = fires("0 9 * * *", "2026-10-23 12:00", 3, BERLIN)
    assert spring == [at("2026-03-28 08:00"), at("2026-03-29 07:00"), at("2026-03-30 07:00")]
    assert autumn == [at("2026-10-24 07:00"), at("2026-10-25 08:00"), at("2026-10-26 08:00")]
    assert {t.astimezone(zoneinfo.ZoneInfo(BERLIN)).hour for t in spring + autumn} == {9}


def test_a_skipped_local_time_fires_once_when_the_gap_ends() -> None:
    # 2026-03-29: Berlin's clocks jump from 02:00 to 03:00 (01:00 UTC); 02:30 never happens.
    assert fires("30 2 * * *", "2026-03-28 12:00", 2, BERLIN) == [
        at("2026-03-29 01:00"),  # 03:00 local, the end of the gap
        at("2026-03-30 00:30"),  # 02:30 local again
    ]
    # Four skipped times are one run, not four runs at the same instant.
    assert fires("*/15 2 * * *", "2026-03-28 12:00", 2, BERLIN) == [
        at("2026-03-29 01:00"),
        at("2026-03-30 00:00"),
    ]


def test_a_repeated_local_time_fires_once_at_its_first_occurrence() -> None:
    # 2026-10-25: Berlin's clocks fall back from 03:00 to 02:00 (01:00 UTC); 02:30 happens
    # at 00:30 and 01:30 UTC.
    assert fires("30 2 * * *", "2026-10-24 12:00", 2, BERLIN) == [
        at("2026-10-25 00:30"),
        at("2026-10-26 01:30"),
    ]
    # Asked from inside the repeated hour, the next time is the next day's.
    assert fires("30 2 * * *", "2026-10-25 01:15", 1, BERLIN) == [at("2026-10-26 01:30")]


def test_an_hourly_schedule_follows_the_clock_through_both_changes() -> None:
    assert fires("30 * * * *", "2026-03-28 23:45", 3, BERLIN) == [
        at("2026-03-29 00:30"),  # 01:30 CET; 02:30 does not exist
        at("2026-03-29 01:30"),  # 03:30 CEST
        at("2026-03-29 02:30"),
    ]
    assert fires("30 * * * *", "2026-10-24 23:45", 3, BERLIN) == [
        at("2026-10-25 00:30"),  # 02:30 CEST
        at("2026-10-25 01:30"),  # 02:30 CET: the repeated hour runs too
        at("2026-10-25 02:30"),
    ]
    # From inside the first 02:xx hour, the second one is still to come.
    assert fires("*/20 * * * *", "2026-10-25 00:50", 3, BERLIN) == [
        at("2026-10-25 01:00"),
        at("2026-10-25 01:20"),
        at("2026-10-25 01:40"),
    ]


def expected_fires(
    expression: str, tz: str, start: dt.datetime, end: dt.datetime
) -> list[dt.datetime]:
    """The documented rules, minute by minute in UTC: a minute fires when its local time
    matches, except a repeated local time of a fixed hour (only its first occurrence), and
    the minute a gap ends also fires for a fixed hour if any skipped local time matched."""
    zone = zoneinfo.ZoneInfo(tz)
    fixed_hour = not expression.split()[1].startswith("*")
    day = dt.timedelta(days=1)
    walk = croniter.croniter(expression, start.astimezone(zone).replace(tzinfo=None) - day)
    last = end.astimezone(zone).replace(tzinfo=None) + day
    matching = {walk.get_next(dt.datetime)}
    while max(matching) < last:
        matching.add(walk.get_next(dt.datetime))
    found, minute = [], dt.timedelta(minutes=1)
    moment = start + minute
    while moment <= end:
        local = moment.astimezone(zone)
        wall = local.replace(tzinfo=None)
        previous = (moment - minute).astimezone(zone).replace(tzinfo=None)
        skipped = {previous + minute * i for i in range(1, int((wall - previous) / minute))}
        first_time = wall in matching and not (fixed_hour and local.fold)
        if first_time or (fixed_hour and skipped & matching):
            found.append(moment)
        moment += minute
    return found


@pytest.mark.parametrize(
    ("tz", "change"),
    [
        (BERLIN, "2026-03-29 01:00"),
        (BERLIN, "2026-10-25 01:00"),
        ("America/New_York", "2026-03-08 07:00"),
        ("America/New_York", "2026-11-01 06:00"),
        ("Australia/Sydney", "2026-04-04 16:00"),  # 03:00 back to 02:00
        ("Australia/Lord_Howe", "2026-10-03 15:30"),  # 02:00 forward to 02:30: half an hour
    ],
)
@pytest.mark.parametrize(
    "expression",
    ["30 2 * * *", "*/15 * * * *", "30 * * * *", "*/20 2 * * *", "15,45 1-3 * * *", "0 */2 * * *"],
)
def test_every_time_around_a_change_follows_the_rules(
    expression: str, tz: str, change: str
) -> None:
    start, end = at(change) - dt.timedelta(hours=12), at(change) + dt.timedelta(hours=12)
    parsed, found, moment = cron.parse(expression, tz), [], start
    while (moment := parsed.next_after(moment)) <= end:
        found.append(moment)
    assert found == expected_fires(expression, tz, start, end)


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("* * * *", "expected 5 fields"),
        ("* * * * * *", "expected 5 fields"),  # no seconds field
        ("60 * * * *", "minute '60' is not valid"),
        ("* 24 * * *", "hour '24' is not valid"),
        ("* * 0 * *", "day of month '0' is not valid"),
        ("* * * foo *", "month 'foo' is not valid"),
        ("* * * * mon#6", "day of week 'mon#6' is not valid"),
        ("*/0 * * * *", "minute '\\*/0' is not valid"),
        ("H * * * *", "H and R values are not supported"),
        ("0 0 1 * mon#2", "day of week 'mon#2' needs '\\*' as day of month"),
        ("0 0 15W * mon", "day of month '15W' needs '\\*' as day of week"),
        ("0 0 30 2 *", "never fires"),
    ],
)
def test_bad_expressions_say_what_is_wrong(expression: str, message: str) -> None:
    with pytest.raises(cron.CronError, match=message):
        cron.parse(expression)


@pytest.mark.parametrize("tz", ["Europe/Berln", "", "../etc/passwd", "CET+1"])
def test_an_unknown_zone_is_refused(tz: str) -> None:
    with pytest.raises(cron.CronError, match="unknown time zone"):
        cron.parse("0 9 * * *", tz)
