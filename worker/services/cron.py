"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Supports ``*``, numbers, ranges ``a-b``, steps ``*/n`` and ``a-b/n``, lists ``a,b``, month and
weekday names (``jan``, ``mon``), ``7`` as Sunday, and ``@hourly``, ``@daily``/``@midnight``,
``@weekly``, ``@monthly``, ``@yearly``/``@annually``. As in Vixie cron, when both day fields
are restricted a day matching either one fires.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import typing

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
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
#: (name, lowest, highest, names) of each field.
_FIELDS: typing.Final = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
#: How far ahead a next time is looked for (an expression like "0 0 30 2 *" never fires).
_HORIZON_DAYS: typing.Final[int] = 366 * 5


class CronError(ValueError):
    """A cron expression that cannot be parsed; the message says which part and why."""


@dataclasses.dataclass(frozen=True, slots=True)
class CronExpression:
    source: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    any_day: bool
    any_weekday: bool

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        weekday = (day.weekday() + 1) % 7
        if self.any_day or self.any_weekday:
            return day.day in self.days and weekday in self.weekdays
        return day.day in self.days or weekday in self.weekdays

    def next_after(self, moment: dt.datetime) -> dt.datetime:
        """The first firing time strictly after ``moment`` (an aware datetime), in UTC."""
        moment = moment.astimezone(dt.UTC)
        day = moment.date()
        for _ in range(_HORIZON_DAYS):
            if self._day_matches(day):
                for hour in self.hours:
                    for minute in self.minutes:
                        fire = dt.datetime(
                            day.year, day.month, day.day, hour, minute, tzinfo=dt.UTC
                        )
                        if fire > moment:
                            return fire
            day += dt.timedelta(days=1)
        raise CronError(f"{self.source!r} never fires")


def parse(expression: str) -> CronExpression:
    """Parse ``expression``, raising :class:`CronError` naming the bad field."""
    source = expression.strip()
    text = _ALIASES.get(source.lower(), source)
    parts = text.split()
    if len(parts) != len(_FIELDS):
        raise CronError(
            f"{source!r}: expected 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(parts)}"
        )
    values = [_field(part, *spec) for part, spec in zip(parts, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    parsed = CronExpression(
        source=source,
        minutes=tuple(sorted(values[0])),
        hours=tuple(sorted(values[1])),
        days=frozenset(values[2]),
        months=frozenset(values[3]),
        weekdays=weekdays,
        any_day=parts[2] == "*",
        any_weekday=parts[4] == "*",
    )
    parsed.next_after(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))  # refuse what never fires
    return parsed


def _field(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> set[int]:
    found: set[int] = set()
    for item in text.lower().split(","):
        body, _, step_text = item.partition("/")
        step = 1
        if step_text:
            if not step_text.isdigit() or int(step_text) == 0:
                raise CronError(f"{name}: bad step {step_text!r} in {item!r}")
            step = int(step_text)
        if body == "*":
            start, end = low, high
        else:
            first, dash, last = body.partition("-")
            start = _value(first, name, low, high, names)
            end = _value(last, name, low, high, names) if dash else start
            if dash and end < start:
                raise CronError(f"{name}: range {body!r} runs backwards")
            if step_text and not dash:
                end = high
        found.update(range(start, end + 1, step))
    return found


def _value(text: str, name: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text in names:
        return names.index(text) + (1 if low == 1 else 0)
    if not text.isdigit():
        raise CronError(f"{name}: {text!r} is not a number" + (" or a name" if names else ""))
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"{name}: {value} is outside {low}-{high}")
    return value
