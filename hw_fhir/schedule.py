"""Recurrence schedules for homework: when each occurrence of an activity is due.

A :class:`Schedule` is the Python side of a CarePlan ``activity.detail.scheduledTiming``
(FHIR ``Timing``): a frequency (``once``, ``daily``, ``weekly``, ``every-n-days``), a local
due time, a start date, an optional end (``count`` occurrences and/or ``until`` a local
date, inclusive) and the IANA time zone the patient lives in.

Due instants are computed in local wall-clock time, so a 20:00 activity stays at 20:00 on
both sides of a daylight-saving change. Two local times need a rule, and we use the one
RFC 5545 (iCalendar) and Python's ``fold=0`` use:

* a due time that does not exist that day (spring-forward gap, e.g. 02:30 in New York on
  the second Sunday of March) is moved forward by the length of the gap (03:30 EDT);
* a due time that happens twice (fall-back, e.g. 01:30 on the first Sunday of November)
  is the first of the two instants (01:30 EDT, still summer time).

Every :class:`Occurrence` has a ``sequence`` (1 for the first occurrence on or after
``start``) and a stable ``key`` (``"2026-03-08/1"``: local date and sequence) that a
materializer can put in ``Task.identifier`` to create each Task exactly once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from datetime import timezone as dt_timezone
from typing import Any, NoReturn
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import InvalidInput, Issue

__all__ = [
    "FREQUENCIES",
    "DAYS_OF_WEEK",
    "TIMEZONE_EXTENSION",
    "DEFAULT_TIME_OF_DAY",
    "Occurrence",
    "Schedule",
]

FREQUENCIES: tuple[str, ...] = ("once", "daily", "weekly", "every-n-days")
#: FHIR ``days-of-week`` codes, Monday first (index = ``date.weekday()``).
DAYS_OF_WEEK: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: Extension carrying the IANA time zone on a Timing (FHIR extensions pack).
TIMEZONE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/timezone"
#: The R4 core spelling of the same extension, accepted on input.
_TZ_CODE_EXTENSION = "http://hl7.org/fhir/StructureDefinition/tz-code"
#: Due time used when a FHIR Timing gives no ``timeOfDay``.
DEFAULT_TIME_OF_DAY = time(9, 0)

_DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_MONTH_NAMES = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_FULL_DAY_NAMES = {name.lower(): DAYS_OF_WEEK[n] for n, name in enumerate(_DAY_NAMES)}
_FHIR_TIME = re.compile(r"([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?")
_UNSUPPORTED_REPEAT = {
    "boundsDuration": "a duration bound; give boundsPeriod",
    "boundsRange": "a range bound; give boundsPeriod",
    "countMax": "a range of counts; give count",
    "frequencyMax": "a range of frequencies",
    "periodMax": "a range of periods",
    "when": "event-related times (when); give timeOfDay",
    "offset": "offsets from events",
}


@dataclass(frozen=True, order=True)
class Occurrence:
    """One due instance of a scheduled activity."""

    due: datetime
    """When it is due: a timezone-aware UTC datetime."""
    sequence: int
    """1 for the first occurrence of the schedule, 2 for the next..."""
    local_date: date
    """The patient's local calendar date of the occurrence."""
    local_due: datetime = field(compare=False)
    """The due instant on the patient's wall clock (aware, in the schedule's zone)."""

    @property
    def key(self) -> str:
        """Return the stable key of this occurrence: ``"<local date>/<sequence>"``."""
        return f"{self.local_date.isoformat()}/{self.sequence}"


@dataclass(frozen=True, kw_only=True)
class Schedule:
    """When a homework activity recurs, in the patient's local time.

    ``interval`` is in days for ``daily`` (always 1) and ``every-n-days`` (2 or more),
    in weeks for ``weekly``; weeks run Monday to Sunday and count from the week that
    contains ``start``. ``count`` and ``until`` may both be given: the schedule ends at
    whichever comes first. Dates, times and day names may be given as ISO strings
    (``"2026-03-08"``, ``"20:00"``, ``"mon"``/``"Monday"``); they are normalised.
    Raise :class:`~hw_fhir.errors.InvalidInput` listing every problem.
    """

    frequency: str
    start: date
    timezone: str
    time_of_day: time = DEFAULT_TIME_OF_DAY
    interval: int = 1
    days_of_week: tuple[str, ...] = ()
    count: int | None = None
    until: date | None = None

    def __post_init__(self) -> None:
        issues: list[Issue] = []
        self._normalise(issues)
        if not issues:
            self._check_rules(issues)
        if issues:
            raise InvalidInput(
                "Invalid schedule: " + "; ".join(i.message for i in issues), issues=issues
            )

    # -- construction -------------------------------------------------------------

    def _normalise(self, issues: list[Issue]) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        def problem(name: str, message: str) -> None:
            issues.append(Issue(message, expression=f"Schedule.{name}"))

        if self.frequency not in FREQUENCIES:
            problem(
                "frequency",
                f"frequency must be one of {', '.join(FREQUENCIES)} (got {self.frequency!r})",
            )
        start = _as_date(self.start)
        if start is None:
            problem("start", f"start must be a date such as 2026-03-08 (got {self.start!r})")
        put("start", start)
        if self.until is not None:
            until = _as_date(self.until)
            if until is None:
                problem("until", f"until must be a date such as 2026-04-30 (got {self.until!r})")
            put("until", until)
        time_of_day = _as_time(self.time_of_day)
        if time_of_day is None:
            problem(
                "time_of_day",
                f"time_of_day must be a local time such as 20:00 (got {self.time_of_day!r})",
            )
        put("time_of_day", time_of_day)
        if not isinstance(self.timezone, str) or _zone(self.timezone) is None:
            problem(
                "timezone",
                f"unknown time zone {self.timezone!r}; use an IANA name such as "
                "'Europe/Berlin' or 'America/New_York'",
            )
        if not _is_int(self.interval) or self.interval < 1:
            problem(
                "interval", f"interval must be a whole number of at least 1 (got {self.interval!r})"
            )
        if self.count is not None and (not _is_int(self.count) or self.count < 1):
            problem("count", f"count must be a whole number of at least 1 (got {self.count!r})")
        days, unknown = _as_days(self.days_of_week)
        if unknown:
            problem(
                "days_of_week",
                f"unknown day(s) of the week {', '.join(map(repr, unknown))}; use "
                f"{', '.join(DAYS_OF_WEEK)}",
            )
        put("days_of_week", days)

    def _check_rules(self, issues: list[Issue]) -> None:
        def problem(name: str, message: str) -> None:
            issues.append(Issue(message, expression=f"Schedule.{name}"))

        if self.until is not None and self.until < self.start:
            problem(
                "until",
                f"the schedule ends (until {self.until.isoformat()}) before it starts "
                f"({self.start.isoformat()})",
            )
        if self.frequency == "weekly" and not self.days_of_week:
            problem("days_of_week", "a weekly schedule needs at least one day of the week")
        if self.frequency != "weekly" and self.days_of_week:
            problem(
                "days_of_week",
                f"days_of_week only applies to weekly schedules, not {self.frequency!r}",
            )
        if self.frequency == "daily" and self.interval != 1:
            problem(
                "interval",
                "a daily schedule has interval 1; use frequency 'every-n-days' for "
                f"every {self.interval} days",
            )
        if self.frequency == "every-n-days" and self.interval < 2:
            problem(
                "interval",
                "an every-n-days schedule needs an interval of 2 or more days; use "
                "frequency 'daily' for every day",
            )
        if self.frequency == "once" and self.count not in (None, 1):
            problem("count", f"a one-off activity happens once; count must be 1 (got {self.count})")
        if self.frequency == "once" and not issues:
            object.__setattr__(self, "count", 1)

    # -- time arithmetic ------------------------------------------------------------

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)

    def due_on(self, local_date: date) -> datetime:
        """Return the UTC instant the activity is due on a local date (see module doc)."""
        local = datetime.combine(local_date, self.time_of_day, tzinfo=self.zone)
        return local.astimezone(dt_timezone.utc)

    def occurrences(self, window_start: datetime, window_end: datetime) -> list[Occurrence]:
        """Return the occurrences due in ``[window_start, window_end)``, earliest first."""
        _require_aware(window_start, "window_start")
        _require_aware(window_end, "window_end")
        if window_end < window_start:
            raise InvalidInput(
                f"window_end ({window_end.isoformat()}) is before window_start "
                f"({window_start.isoformat()})"
            )
        found = []
        for occurrence in self.iter_occurrences(window_start):
            if occurrence.due >= window_end:
                break
            found.append(occurrence)
        return found

    def iter_occurrences(self, after: datetime | None = None) -> Iterator[Occurrence]:
        """Yield every occurrence due at or after ``after`` (all when None), in order.

        The iterator is endless for a schedule without ``count`` or ``until``.
        """
        zone = self.zone
        from_date = self.start
        if after is not None:
            _require_aware(after, "after")
            from_date = max(self.start, after.astimezone(zone).date() - timedelta(days=1))
        for sequence, local_date in self._dates_from(from_date):
            due = self.due_on(local_date)
            if after is not None and due < after:
                continue
            yield Occurrence(
                due=due,
                sequence=sequence,
                local_date=local_date,
                local_due=due.astimezone(zone),
            )

    def next_occurrence(self, after: datetime) -> Occurrence | None:
        """Return the first occurrence due at or after ``after``, or None when finished."""
        return next(self.iter_occurrences(after), None)

    @property
    def last_date(self) -> date | None:
        """The local date of the final occurrence, or None when the schedule never ends."""
        if self.count is None and self.until is None:
            return None
        last = None
        for _, local_date in self._dates_from(self.start, stop_at_count=self.count):
            last = local_date
        return last

    def _dates_from(
        self, from_date: date, *, stop_at_count: int | None = None
    ) -> Iterator[tuple[int, date]]:
        """Yield ``(sequence, local date)`` of each occurrence on or after ``from_date``."""
        dates = (
            self._weekly_dates(from_date)
            if self.frequency == "weekly"
            else self._stepped_dates(from_date)
        )
        try:
            for sequence, local_date in dates:
                if self.count is not None and sequence > self.count:
                    return
                if self.until is not None and local_date > self.until:
                    return
                yield sequence, local_date
                if stop_at_count is not None and sequence >= stop_at_count:
                    return
        except OverflowError:  # past date.max: the calendar has ended
            return

    def _stepped_dates(self, from_date: date) -> Iterator[tuple[int, date]]:
        if self.frequency == "once":
            if from_date <= self.start:
                yield 1, self.start
            return
        step = self.interval
        k = 0 if from_date <= self.start else -(-(from_date - self.start).days // step)
        while True:
            yield k + 1, self.start + timedelta(days=k * step)
            k += 1

    def _weekly_dates(self, from_date: date) -> Iterator[tuple[int, date]]:
        offsets = [DAYS_OF_WEEK.index(d) for d in self.days_of_week]
        first_monday = self.start - timedelta(days=self.start.weekday())
        first_week = [o for o in offsets if first_monday + timedelta(days=o) >= self.start]
        span = 7 * self.interval
        period = 0 if from_date <= self.start else (from_date - first_monday).days // span
        sequence = 0 if period == 0 else len(first_week) + (period - 1) * len(offsets)
        while True:
            monday = first_monday + timedelta(days=period * span)
            for offset in offsets:
                local_date = monday + timedelta(days=offset)
                if local_date < self.start:
                    continue
                sequence += 1
                if local_date >= from_date:
                    yield sequence, local_date
            period += 1

    # -- FHIR Timing ------------------------------------------------------------------

    def to_fhir_timing(self) -> dict[str, Any]:
        """Return this schedule as a FHIR R4 ``Timing`` (for ``scheduledTiming``).

        ``once`` is ``count`` 1 without a period; ``daily``/``every-n-days`` are once per
        ``period`` days; ``weekly`` is ``frequency`` = number of days per ``period``
        weeks on ``dayOfWeek``. ``boundsPeriod`` holds the local start and ``until``
        dates; the IANA zone rides in the :data:`TIMEZONE_EXTENSION` extension.
        """
        repeat: dict[str, Any] = {}
        if self.frequency == "weekly":
            repeat.update(
                frequency=len(self.days_of_week),
                period=self.interval,
                periodUnit="wk",
                dayOfWeek=list(self.days_of_week),
            )
        elif self.frequency != "once":
            repeat.update(frequency=1, period=self.interval, periodUnit="d")
        if self.count is not None:
            repeat["count"] = self.count
        repeat["timeOfDay"] = [_fhir_time(self.time_of_day)]
        bounds = {"start": self.start.isoformat()}
        if self.until is not None:
            bounds["end"] = self.until.isoformat()
        repeat["boundsPeriod"] = bounds
        return {
            "extension": [{"url": TIMEZONE_EXTENSION, "valueCode": self.timezone}],
            "repeat": repeat,
        }

    @classmethod
    def from_fhir_timing(cls, timing: dict[str, Any], timezone: str | None = None) -> Schedule:
        """Build a schedule from a FHIR ``Timing``.

        ``timezone`` (IANA name) wins over a time-zone extension on the Timing; one of
        the two is required. Raise :class:`~hw_fhir.errors.InvalidInput` for timings
        this model cannot express (several times a day, monthly, ``when``...).
        """
        if not isinstance(timing, dict):
            raise InvalidInput("A Timing must be a JSON object")
        zone_name = timezone or _timing_zone(timing)
        if not zone_name:
            raise InvalidInput(
                "The Timing names no time zone; pass the patient's IANA time zone",
                issues=[Issue("No time zone given", expression="Timing.extension")],
            )
        if _zone(zone_name) is None:
            raise InvalidInput(
                f"unknown time zone {zone_name!r}; use an IANA name such as 'Europe/Berlin'"
            )
        repeat = timing.get("repeat")
        events = timing.get("event") or []
        if repeat is None:
            return _from_events(events, zone_name)
        if not isinstance(repeat, dict):
            _fail("Timing.repeat must be an object", "Timing.repeat")
        if events:
            _fail("A Timing with both event and repeat is not supported", "Timing.event")
        return _from_repeat(repeat, zone_name)

    # -- words -----------------------------------------------------------------------

    def describe(self) -> str:
        """Return a human sentence, e.g. ``Every Monday and Thursday at 20:00, 8 times``."""
        at = f"at {self.time_of_day.strftime('%H:%M')}"
        if self.frequency == "once":
            return f"Once on {_long_date(self.start, weekday=True)} {at}"
        if self.frequency == "daily":
            words = f"Every day {at}"
        elif self.frequency == "every-n-days":
            words = f"Every {self.interval} days {at}"
        else:
            names = [_DAY_NAMES[DAYS_OF_WEEK.index(d)] for d in self.days_of_week]
            if self.interval == 1:
                days = "day" if len(names) == 7 else _join(names)
                words = f"Every {days} {at}"
            else:
                words = f"Every {self.interval} weeks on {_join(names)} {at}"
        if self.count is not None:
            words += ", once" if self.count == 1 else f", {self.count} times"
        if self.until is not None:
            words += f", until {_long_date(self.until)}"
        return words


# -- helpers ----------------------------------------------------------------------------


def _fail(message: str, expression: str) -> NoReturn:
    raise InvalidInput(message, issues=[Issue(message, expression=expression)])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _zone(name: str) -> ZoneInfo | None:
    if not name or not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _as_date(value: Any) -> date | None:
    if isinstance(value, datetime):
        return None
    if isinstance(value, date):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _as_time(value: Any) -> time | None:
    if isinstance(value, time):
        return value if value.tzinfo is None else None
    if isinstance(value, str) and re.fullmatch(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?", value):
        try:
            return time.fromisoformat(value)
        except ValueError:
            return None
    return None


def _as_days(values: Iterable[Any] | None) -> tuple[tuple[str, ...], list[Any]]:
    if values is None:
        return (), []
    if isinstance(values, str):
        values = [values]
    chosen: set[str] = set()
    unknown: list[Any] = []
    for value in values:
        name = value.strip().lower() if isinstance(value, str) else None
        code = name if name in DAYS_OF_WEEK else _FULL_DAY_NAMES.get(name or "")
        if code is None:
            unknown.append(value)
        else:
            chosen.add(code)
    return tuple(d for d in DAYS_OF_WEEK if d in chosen), unknown


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise InvalidInput(f"{name} must be a datetime (got {value!r})")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be timezone-aware (got naive {value.isoformat()})")


def _fhir_time(value: time) -> str:
    return value.isoformat(timespec="microseconds" if value.microsecond else "seconds")


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _long_date(value: date, *, weekday: bool = False) -> str:
    text = f"{value.day} {_MONTH_NAMES[value.month - 1]} {value.year}"
    return f"{_DAY_NAMES[value.weekday()]} {text}" if weekday else text


def _timing_zone(timing: dict[str, Any]) -> str | None:
    for ext in timing.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") in (TIMEZONE_EXTENSION, _TZ_CODE_EXTENSION):
            value = ext.get("valueCode")
            if isinstance(value, str):
                return value
    return None


def _local_date(value: Any, zone_name: str, expression: str) -> date:
    """Return the local date of a FHIR date/dateTime (a dateTime is moved into the zone)."""
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        parsed = _as_date(value)
        if parsed is not None:
            return parsed
    if isinstance(value, str) and "T" in value:
        try:
            instant = datetime.fromisoformat(value)
        except ValueError:
            instant = None
        if instant is not None and instant.tzinfo is not None:
            return instant.astimezone(ZoneInfo(zone_name)).date()
    _fail(f"{expression} must be a full date or dateTime with offset (got {value!r})", expression)


def _whole(value: Any, expression: str) -> int:
    if _is_int(value):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    _fail(f"{expression} must be a whole number (got {value!r})", expression)


def _from_events(events: Any, zone_name: str) -> Schedule:
    if not isinstance(events, list) or len(events) != 1:
        _fail(
            "A Timing needs a repeat element, or exactly one event for a one-off activity",
            "Timing.event" if events else "Timing.repeat",
        )
    event = events[0]
    if isinstance(event, str) and "T" in event:
        try:
            instant = datetime.fromisoformat(event)
        except ValueError:
            instant = None
        if instant is None or instant.tzinfo is None:
            _fail(f"Timing.event must carry a UTC offset (got {event!r})", "Timing.event")
        local = instant.astimezone(ZoneInfo(zone_name))
        return Schedule(
            frequency="once",
            start=local.date(),
            time_of_day=local.time().replace(tzinfo=None),
            timezone=zone_name,
        )
    return Schedule(
        frequency="once", start=_local_date(event, zone_name, "Timing.event"), timezone=zone_name
    )


def _from_repeat(repeat: dict[str, Any], zone_name: str) -> Schedule:
    for element, what in _UNSUPPORTED_REPEAT.items():
        if repeat.get(element) not in (None, []):
            _fail(f"Timing.repeat.{element} is not supported: {what}", f"Timing.repeat.{element}")
    times = repeat.get("timeOfDay") or []
    if len(times) > 1:
        _fail(
            "Only one due time per day is supported (timeOfDay has several)",
            "Timing.repeat.timeOfDay",
        )
    time_of_day = DEFAULT_TIME_OF_DAY
    if times:
        if not isinstance(times[0], str) or not _FHIR_TIME.fullmatch(times[0]):
            _fail(
                f"Timing.repeat.timeOfDay must be hh:mm:ss (got {times[0]!r})",
                "Timing.repeat.timeOfDay",
            )
        time_of_day = time.fromisoformat(times[0].replace(":60", ":59"))
    bounds = repeat.get("boundsPeriod") or {}
    if not isinstance(bounds, dict) or not bounds.get("start"):
        _fail(
            "Timing.repeat.boundsPeriod.start (the first day) is required",
            "Timing.repeat.boundsPeriod.start",
        )
    start = _local_date(bounds["start"], zone_name, "Timing.repeat.boundsPeriod.start")
    until = None
    if bounds.get("end"):
        until = _local_date(bounds["end"], zone_name, "Timing.repeat.boundsPeriod.end")
    count = repeat.get("count")
    if count is not None:
        count = _whole(count, "Timing.repeat.count")
    days = repeat.get("dayOfWeek") or []
    frequency = repeat.get("frequency")
    frequency = 1 if frequency is None else _whole(frequency, "Timing.repeat.frequency")
    unit = repeat.get("periodUnit")
    period = repeat.get("period")
    common: dict[str, Any] = dict(
        start=start, until=until, count=count, time_of_day=time_of_day, timezone=zone_name
    )
    if period is None and unit is None:
        if count == 1 and not days:
            return Schedule(frequency="once", **common)
        _fail(
            "Timing.repeat needs period and periodUnit (or count 1 for a one-off)",
            "Timing.repeat.period",
        )
    period = _whole(period, "Timing.repeat.period")
    if unit == "d":
        if frequency != 1:
            _fail(
                f"More than once a day is not supported (frequency {frequency} per {period} d)",
                "Timing.repeat.frequency",
            )
        if days:
            if period != 1:
                _fail(
                    "dayOfWeek with a period of several days is not supported",
                    "Timing.repeat.dayOfWeek",
                )
            return Schedule(frequency="weekly", days_of_week=tuple(days), **common)
        return Schedule(
            frequency="daily" if period == 1 else "every-n-days", interval=period, **common
        )
    if unit == "wk":
        if not days:
            if frequency != 1:
                _fail(
                    f"{frequency} times per week needs dayOfWeek to say which days",
                    "Timing.repeat.dayOfWeek",
                )
            days = [DAYS_OF_WEEK[start.weekday()]]
        elif frequency not in (1, len(set(days))):
            _fail(
                f"frequency {frequency} does not match the {len(set(days))} day(s) in dayOfWeek",
                "Timing.repeat.frequency",
            )
        return Schedule(frequency="weekly", interval=period, days_of_week=tuple(days), **common)
    _fail(
        f"periodUnit {unit!r} is not supported; use d (days) or wk (weeks)",
        "Timing.repeat.periodUnit",
    )
