"""Five-field cron expressions (minute hour day-of-month month day-of-week) in a time zone.

Fields are read by croniter: ``*``, numbers, names (``jan``, ``mon``), ranges ``a-b`` (which
may wrap: ``fri-mon``, ``22-2``), steps, lists, ``L`` (last day of the month), ``15W`` (the
weekday nearest the 15th), ``mon#2`` (the second Monday), ``L5`` (the last Friday), ``7`` as
Sunday, and the aliases ``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``,
``@yearly``/``@annually``.

Day of month and day of week follow Vixie cron: when both are restricted, a day matching
either fires (``0 0 1 * mon``: the 1st and every Monday); a field that starts with ``*``
counts as unrestricted, so they must both match (``0 0 */2 * mon``: Mondays that fall on an
odd day of the month). ``#``, ``L`` in the day of week and ``W`` only combine with a ``*``
in the other day field.

Times are wall-clock times in the expression's zone. Where a daylight-saving change skips or
repeats local times:

- a fixed hour (the hour field does not start with ``*``) fires once a day: a time that does
  not exist (02:30 when clocks jump from 02:00 to 03:00) fires when the gap ends (03:00); a
  time that happens twice (02:30 when clocks fall back) fires at its first occurrence only;
- an hour field starting with ``*`` (every hour, ``*/2``) follows the clock as it runs:
  skipped times do not fire and the repeated hour fires again, so an hourly task stays an
  hour apart in real time.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
import typing
import zoneinfo

import croniter

__all__: typing.Sequence[str] = ("CronError", "CronExpression", "parse")

_ALIASES: typing.Final[dict[str, str]] = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}
_FIELDS: typing.Final = ("minute", "hour", "day of month", "month", "day of week")
_DAY_OF_MONTH: typing.Final = 2
_DAY_OF_WEEK: typing.Final = 4
#: Far enough ahead to see a fall-back transition whose repeated times are still to come
#: (no zone turns its clocks back by more than this).
_FOLD_LOOKAHEAD: typing.Final = dt.timedelta(hours=3)
#: Candidate local times examined for one next time; a repeated hour of minutely runs needs
#: about 120, so reaching this means a bug, not a rare schedule.
_MAX_CANDIDATES: typing.Final[int] = 10_000
#: Where parsing checks that an expression fires at all.
_REFERENCE: typing.Final = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


class CronError(ValueError):
    """An expression or time zone that cannot be used; the message says which part and why."""


@dataclasses.dataclass(frozen=True, slots=True)
class CronExpression:
    """A parsed expression and its zone; :func:`parse` builds it and checks that it fires."""

    source: str
    fields: str
    zone: zoneinfo.ZoneInfo
    #: The hour field starts with ``*``: across daylight-saving changes the schedule follows
    #: the clock as it runs instead of firing each local time once a day.
    follows_clock: bool

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first firing time strictly after ``moment`` (an aware datetime), in UTC."""
        moment = moment.astimezone(dt.UTC)
        walls = croniter.croniter(self.fields, self._first_wall(moment), implement_cron_bug=True)
        best: dt.datetime | None = None
        for _ in range(_MAX_CANDIDATES):
            try:
                wall: dt.datetime = walls.get_next(dt.datetime)
            except croniter.CroniterBadDateError as exc:
                raise CronError(f"{self.source!r} never fires") from exc
            earliest, instants = self._instants(wall)
            later = [instant for instant in instants if instant > moment]
            if later and (best is None or min(later) < best):
                best = min(later)
            # The earliest instant of each local time only grows: no later one beats best.
            if best is not None and best <= earliest:
                return best
        raise CronError(f"{self.source!r}: no next time found after {moment.isoformat()}")

    def _first_wall(self, moment: dt.datetime) -> dt.datetime:
        """The local time to search from: ``moment``'s own, or before it when clocks are
        about to fall back (the repeated local times are then still to come)."""
        offsets = (
            moment.astimezone(self.zone).utcoffset(),
            (moment + _FOLD_LOOKAHEAD).astimezone(self.zone).utcoffset(),
        )
        return (moment + min(o or dt.timedelta(0) for o in offsets)).replace(tzinfo=None)

    def _instants(self, wall: dt.datetime) -> tuple[dt.datetime, tuple[dt.datetime, ...]]:
        """When local time ``wall`` fires (in UTC), and the earliest instant it stands for."""
        first = wall.replace(tzinfo=self.zone, fold=0).astimezone(dt.UTC)
        second = wall.replace(tzinfo=self.zone, fold=1).astimezone(dt.UTC)
        if first == second:
            return first, (first,)
        early, late = sorted((first, second))
        if early.astimezone(self.zone).replace(tzinfo=None) == wall:  # it happens twice
            return early, ((early, late) if self.follows_clock else (early,))
        gap_end = _transition(self.zone, early, late)  # it never happens
        return gap_end, (() if self.follows_clock else (gap_end,))


def parse(expression: str, tz: str = "UTC") -> CronExpression:
    """Parse ``expression`` in the IANA time zone ``tz``.

    Raises :class:`CronError` naming the bad field, the unknown zone, or an expression that
    never fires.
    """
    source = expression.strip()
    text = _ALIASES.get(source.lower(), source)
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise CronError(
            f"{source!r}: expected 5 fields (minute hour day-of-month month day-of-week) "
            f"or an alias such as @daily, got {len(parts)} fields"
        )
    for index, part in enumerate(parts):
        _check_field(source, index, part)
    _check_day_fields(source, parts[_DAY_OF_MONTH], parts[_DAY_OF_WEEK])
    parsed = CronExpression(
        source=source,
        fields=" ".join(parts),
        zone=_zone(tz),
        follows_clock=parts[1].startswith("*"),
    )
    parsed.next_after(_REFERENCE)  # refuse what never fires
    return parsed


def _zone(tz: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(
            f"unknown time zone {tz!r}: expected an IANA name such as 'Europe/Berlin' or 'UTC'"
        ) from exc


def _check_field(source: str, index: int, part: str) -> None:
    """Parse one field alone (``*`` elsewhere), so an error can say which field is wrong."""
    name = _FIELDS[index]
    if any(item[:1].lower() in {"h", "r"} for item in part.split(",")):
        # Hashed and random values would differ between replicas parsing the same schedule.
        raise CronError(f"{source!r}: {name} {part!r}: H and R values are not supported")
    probe = ["*"] * len(_FIELDS)
    probe[index] = part
    try:
        croniter.croniter(" ".join(probe), _REFERENCE, implement_cron_bug=True)
    except croniter.CroniterBadCronError as exc:
        raise CronError(f"{source!r}: {name} {part!r} is not valid ({_reason(exc)})") from exc


def _check_day_fields(source: str, day: str, weekday: str) -> None:
    """Refuse ``#``, ``L`` and ``W`` next to a restricted other day field: croniter neither
    ORs nor ANDs those as cron users would read them."""
    special_weekday = "#" in weekday or "l" in weekday.lower()
    if special_weekday and not day.startswith(("*", "?")):
        raise CronError(
            f"{source!r}: day of week {weekday!r} needs '*' as day of month, not {day!r}"
        )
    if "w" in day.lower() and not weekday.startswith(("*", "?")):
        raise CronError(
            f"{source!r}: day of month {day!r} needs '*' as day of week, not {weekday!r}"
        )


def _reason(exc: Exception) -> str:
    """croniter's message without the expression it quotes (our probe, not the user's)."""
    text = re.sub(r" in field \d+", "", str(exc))
    if text.startswith("["):
        text = text.partition("]")[2]
    return text.strip(" .").removeprefix("is ") or "not accepted"


def _transition(zone: zoneinfo.ZoneInfo, before: dt.datetime, after: dt.datetime) -> dt.datetime:
    """The instant in ``(before, after]`` where ``zone``'s offset changes to ``after``'s."""
    target = after.astimezone(zone).utcoffset()
    low, high = int(before.timestamp()), int(after.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        if dt.datetime.fromtimestamp(middle, zone).utcoffset() == target:
            high = middle
        else:
            low = middle
    return dt.datetime.fromtimestamp(high, dt.UTC)
