"""Cron schedules as a Kubernetes CronJob reads them: five fields, or a macro.

``minute hour day-of-month month day-of-week``; each field ``*``, a number, a range ``a-b``,
a step ``*/n`` or ``a-b/n``, or a comma list of those; months and weekdays also by their
three-letter English names; weekday 0 and 7 are Sunday. When both day fields are restricted
a day matches either (Vixie cron's rule, which Kubernetes follows). Macros: ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight``, ``@hourly``.

Pure: no I/O, no clock; the caller passes the time to start from.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day of month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_SEARCH_DAYS = 366 * 5  # Feb 29 on a Monday can be years away; further means "never"


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A parsed schedule: the allowed values of each field."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    def matches_day(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first whole minute strictly after ``after`` that the schedule fires at
        (``after``'s timezone kept), or None when no day in five years matches."""
        start = after.replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
        day = start.date()
        for _ in range(_SEARCH_DAYS):
            if self.matches_day(day):
                first = start if day == start.date() else None
                for hour in sorted(self.hours):
                    if first is not None and hour < first.hour:
                        continue
                    for minute in sorted(self.minutes):
                        if first is not None and hour == first.hour and minute < first.minute:
                            continue
                        return dt.datetime.combine(day, dt.time(hour, minute), after.tzinfo)
            day += dt.timedelta(days=1)
        return None


def parse_cron(text: str) -> CronSchedule:
    """A schedule from its text; ValueError with one readable line when it is not one."""
    expression = _MACROS.get(text.strip().lower(), text)
    if expression.startswith("@"):
        raise ValueError(f"unknown macro {text!r} (expected one of {', '.join(_MACROS)})")
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(
            "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), "
            f"found {len(fields)}"
        )
    values = [_field(raw, *spec) for raw, spec in zip(fields, _FIELDS, strict=True)]
    weekdays = frozenset(0 if d == 7 else d for d in values[4])
    return CronSchedule(
        text=text,
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        days_restricted=fields[2] != "*",
        weekdays_restricted=fields[4] != "*",
    )


def _field(raw: str, name: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    allowed: set[int] = set()
    for part in raw.split(","):
        base, _, step_text = part.partition("/")
        step = 1
        if step_text:
            step = _number(step_text, name, names=(), offset=0)
            if step < 1:
                raise ValueError(f"{name}: the step in {part!r} must be at least 1")
        if base == "*":
            first, last = low, high
        elif "-" in base:
            left, _, right = base.partition("-")
            first = _number(left, name, names, low)
            last = _number(right, name, names, low)
        else:
            first = _number(base, name, names, low)
            last = high if step_text else first
        for value in (first, last):
            if not low <= value <= high:
                raise ValueError(f"{name}: {value} is outside {low}-{high}")
        if first > last:
            raise ValueError(f"{name}: the range {base!r} runs backwards")
        allowed.update(range(first, last + 1, step))
    return frozenset(allowed)


def _number(text: str, name: str, names: tuple[str, ...], offset: int) -> int:
    lowered = text.lower()
    if lowered in names:
        return names.index(lowered) + offset
    if not text.isdigit():
        raise ValueError(f"{name}: {text!r} is not a number")
    return int(text)
