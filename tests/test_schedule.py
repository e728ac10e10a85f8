"""Recurrence schedules: occurrences across DST, bounds, FHIR Timing round-trips, validation."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone

import pytest

from hw_fhir.errors import InvalidInput
from hw_fhir.models import validate
from hw_fhir.schedule import TIMEZONE_EXTENSION, Occurrence, Schedule

UTC = timezone.utc


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fixed(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


def daily(**kw) -> Schedule:
    base = dict(
        frequency="daily",
        time_of_day=time(20, 0),
        timezone="America/New_York",
        start=date(2026, 3, 1),
    )
    base.update(kw)
    return Schedule(**base)


def all_of(schedule: Schedule) -> list[Occurrence]:
    return list(schedule.iter_occurrences())


# -- DST ---------------------------------------------------------------------------------


def test_new_york_spring_forward_keeps_local_due_time():
    # US DST starts Sunday 2026-03-08: EST (-5) before, EDT (-4) after.
    s = daily(start=date(2026, 3, 6))
    got = s.occurrences(utc(2026, 3, 6), utc(2026, 3, 11, 6))
    assert [o.local_date for o in got] == [date(2026, 3, d) for d in range(6, 11)]
    for o in got:
        offset = -5 if o.local_date < date(2026, 3, 8) else -4
        assert o.due == datetime.combine(o.local_date, time(20), fixed(offset))
        assert o.due.tzinfo == UTC
        assert (o.local_due.hour, o.local_due.minute) == (20, 0)
    assert got[1].due - got[0].due == timedelta(hours=24)
    assert got[2].due - got[1].due == timedelta(hours=23)  # the short night


def test_new_york_nonexistent_time_moves_forward_by_the_gap():
    s = daily(start=date(2026, 3, 7), time_of_day=time(2, 30))
    got = {o.local_date: o for o in s.occurrences(utc(2026, 3, 7), utc(2026, 3, 10))}
    gap_day = got[date(2026, 3, 8)]
    # 02:30 does not exist on 8 March: it becomes 03:30 EDT (= 02:30 EST).
    assert gap_day.due == utc(2026, 3, 8, 7, 30)
    assert (gap_day.local_due.hour, gap_day.local_due.minute) == (3, 30)
    assert got[date(2026, 3, 7)].due == datetime(2026, 3, 7, 2, 30, tzinfo=fixed(-5))
    assert got[date(2026, 3, 9)].due == datetime(2026, 3, 9, 2, 30, tzinfo=fixed(-4))


def test_new_york_fall_back_keeps_local_time_and_picks_first_ambiguous_instant():
    # US DST ends Sunday 2026-11-01: 01:00-02:00 happens twice.
    evening = daily(start=date(2026, 10, 30))
    got = evening.occurrences(utc(2026, 10, 30), utc(2026, 11, 4))
    for o in got:
        offset = -4 if o.local_date < date(2026, 11, 1) else -5
        assert o.due == datetime.combine(o.local_date, time(20), fixed(offset))
        assert o.local_due.hour == 20
    ambiguous = daily(start=date(2026, 11, 1), time_of_day=time(1, 30), count=2)
    first, second = all_of(ambiguous)
    assert first.due == datetime(2026, 11, 1, 1, 30, tzinfo=fixed(-4))  # the earlier 01:30
    assert second.due == datetime(2026, 11, 2, 1, 30, tzinfo=fixed(-5))
    assert second.due - first.due == timedelta(hours=25)


def test_berlin_spring_forward_and_fall_back():
    # EU DST 2026: starts Sunday 29 March (02:00 -> 03:00), ends Sunday 25 October.
    s = daily(timezone="Europe/Berlin", start=date(2026, 3, 27))
    spring = s.occurrences(utc(2026, 3, 27), utc(2026, 3, 31))
    assert [o.due.hour for o in spring] == [19, 19, 18, 18]  # 20:00 CET, then 20:00 CEST
    assert all(o.local_due.hour == 20 for o in spring)
    autumn = s.occurrences(utc(2026, 10, 23), utc(2026, 10, 27))
    assert [o.local_date.day for o in autumn] == [23, 24, 25, 26]
    assert [o.due.hour for o in autumn] == [18, 18, 19, 19]
    gap = daily(timezone="Europe/Berlin", start=date(2026, 3, 29), time_of_day=time(2, 30), count=1)
    assert all_of(gap)[0].due == datetime(2026, 3, 29, 2, 30, tzinfo=fixed(1))  # = 03:30 CEST
    twice = daily(
        timezone="Europe/Berlin", start=date(2026, 10, 25), time_of_day=time(2, 30), count=1
    )
    assert all_of(twice)[0].due == datetime(2026, 10, 25, 2, 30, tzinfo=fixed(2))  # first 02:30


def test_auckland_local_dates_differ_from_utc_dates():
    # NZDT (+13) until Sunday 5 April 2026 03:00, then NZST (+12).
    s = daily(timezone="Pacific/Auckland", start=date(2026, 4, 3), time_of_day=time(8, 0))
    got = s.occurrences(utc(2026, 4, 2), utc(2026, 4, 7))
    assert [o.key for o in got] == [
        "2026-04-03/1",
        "2026-04-04/2",
        "2026-04-05/3",
        "2026-04-06/4",
        "2026-04-07/5",
    ]
    # 08:00 in Auckland is the previous evening in UTC.
    assert got[0].due == utc(2026, 4, 2, 19, 0)
    assert got[2].due == utc(2026, 4, 4, 20, 0)  # after the change: +12
    # a UTC window covering only 2 April already contains the 3 April occurrence
    only = s.occurrences(utc(2026, 4, 2), utc(2026, 4, 3))
    assert [o.local_date for o in only] == [date(2026, 4, 3)]


def test_same_local_time_in_far_apart_zones_gives_different_instants():
    kw = dict(start=date(2026, 6, 1), count=3, time_of_day=time(20, 0))
    auckland = all_of(daily(timezone="Pacific/Auckland", **kw))
    honolulu = all_of(daily(timezone="Pacific/Honolulu", **kw))
    assert [o.key for o in auckland] == [o.key for o in honolulu]
    for a, h in zip(auckland, honolulu):
        assert h.due - a.due == timedelta(hours=22)  # +12 vs -10
        assert a.local_due.hour == h.local_due.hour == 20


# -- windows, bounds, keys ---------------------------------------------------------------


def test_window_is_half_open_and_requires_aware_datetimes():
    s = daily(timezone="UTC", start=date(2026, 1, 1), time_of_day=time(12))
    assert [o.local_date.day for o in s.occurrences(utc(2026, 1, 2, 12), utc(2026, 1, 4, 12))] == [
        2,
        3,
    ]
    assert s.occurrences(utc(2026, 1, 2, 12), utc(2026, 1, 2, 12)) == []
    with pytest.raises(InvalidInput, match="timezone-aware"):
        s.occurrences(datetime(2026, 1, 1), utc(2026, 1, 5))
    with pytest.raises(InvalidInput, match="before window_start"):
        s.occurrences(utc(2026, 1, 5), utc(2026, 1, 1))


def test_keys_are_stable_whatever_the_window():
    s = Schedule(
        frequency="weekly",
        days_of_week=("mon", "wed", "fri"),
        start=date(2026, 2, 4),
        time_of_day=time(18, 30),
        timezone="Europe/Berlin",
    )
    whole = s.occurrences(utc(2026, 1, 1), utc(2026, 6, 1))
    pieces = []
    cut = utc(2026, 1, 1)
    while cut < utc(2026, 6, 1):
        pieces += s.occurrences(cut, cut + timedelta(days=9))
        cut += timedelta(days=9)
    pieces = [o for o in pieces if o.due < utc(2026, 6, 1)]
    assert [o.key for o in pieces] == [o.key for o in whole]
    assert [o.sequence for o in whole] == list(range(1, len(whole) + 1))
    assert len({o.key for o in whole}) == len(whole)


def test_count_limits_occurrences():
    s = daily(start=date(2026, 3, 1), count=5)
    got = s.occurrences(utc(2026, 1, 1), utc(2027, 1, 1))
    assert [o.local_date for o in got] == [date(2026, 3, d) for d in range(1, 6)]
    assert [o.sequence for o in got] == [1, 2, 3, 4, 5]
    assert s.last_date == date(2026, 3, 5)
    assert s.occurrences(utc(2026, 3, 6, 1, 1), utc(2026, 4, 1)) == []
    assert [o.sequence for o in s.occurrences(utc(2026, 3, 6), utc(2026, 4, 1))] == [5]


def test_until_is_inclusive_local_date():
    s = daily(start=date(2026, 3, 1), until=date(2026, 3, 4))
    got = s.occurrences(utc(2026, 1, 1), utc(2027, 1, 1))
    assert [o.local_date for o in got] == [date(2026, 3, d) for d in range(1, 5)]
    assert s.last_date == date(2026, 3, 4)
    assert daily(start=date(2026, 3, 1)).last_date is None


def test_count_and_until_stop_at_whichever_comes_first():
    by_count = daily(start=date(2026, 3, 1), count=3, until=date(2026, 3, 10))
    by_until = daily(start=date(2026, 3, 1), count=30, until=date(2026, 3, 2))
    assert len(all_of(by_count)) == 3
    assert len(all_of(by_until)) == 2


def test_weekly_days_and_interval():
    # start Wednesday 2026-03-04; every 2 weeks on Monday and Thursday
    s = Schedule(
        frequency="weekly",
        interval=2,
        days_of_week=("thu", "mon"),
        start=date(2026, 3, 4),
        count=5,
        time_of_day=time(9),
        timezone="UTC",
    )
    got = all_of(s)
    expected = [
        date(2026, 3, 5),
        date(2026, 3, 16),
        date(2026, 3, 19),
        date(2026, 3, 30),
        date(2026, 4, 2),
    ]
    assert [o.local_date for o in got] == expected
    assert all(o.local_date.weekday() in (0, 3) for o in got)
    # a window starting mid-way keeps the sequence numbers
    later = s.occurrences(utc(2026, 3, 20), utc(2026, 5, 1))
    assert [(o.sequence, o.local_date) for o in later] == [(4, expected[3]), (5, expected[4])]


def test_weekly_start_day_itself_counts():
    s = Schedule(
        frequency="weekly", days_of_week=("mon",), start=date(2026, 3, 2), count=2, timezone="UTC"
    )
    assert [o.local_date for o in all_of(s)] == [date(2026, 3, 2), date(2026, 3, 9)]
    assert all_of(s)[0].due == utc(2026, 3, 2, 9, 0)  # default 09:00


def test_every_n_days():
    s = Schedule(
        frequency="every-n-days",
        interval=3,
        start=date(2026, 3, 1),
        time_of_day=time(7, 15),
        timezone="Europe/Berlin",
    )
    got = s.occurrences(utc(2026, 3, 9), utc(2026, 3, 20))
    assert [o.local_date.day for o in got] == [10, 13, 16, 19]
    assert [o.sequence for o in got] == [4, 5, 6, 7]
    assert all((o.local_date - date(2026, 3, 1)).days % 3 == 0 for o in got)


def test_once():
    s = Schedule(
        frequency="once", start=date(2026, 3, 8), time_of_day=time(20), timezone="Europe/Berlin"
    )
    (only,) = s.occurrences(utc(2026, 1, 1), utc(2027, 1, 1))
    assert only.due == datetime(2026, 3, 8, 20, tzinfo=fixed(1))
    assert only.key == "2026-03-08/1"
    assert s.last_date == date(2026, 3, 8)
    assert s.next_occurrence(only.due + timedelta(seconds=1)) is None
    assert s.next_occurrence(utc(2026, 1, 1)) == only


def test_next_occurrence():
    s = daily(timezone="UTC", start=date(2026, 3, 1), time_of_day=time(12))
    assert s.next_occurrence(utc(2026, 3, 5, 12)).local_date == date(2026, 3, 5)
    assert s.next_occurrence(utc(2026, 3, 5, 12, 1)).local_date == date(2026, 3, 6)
    assert s.next_occurrence(utc(2020, 1, 1)).sequence == 1


def test_string_inputs_are_normalised():
    s = Schedule(
        frequency="weekly",
        days_of_week=["Thursday", "MON", "thu"],
        start="2026-03-02",
        until="2026-03-31",
        time_of_day="20:00",
        timezone="America/New_York",
    )
    assert s.days_of_week == ("mon", "thu")
    assert s.start == date(2026, 3, 2) and s.until == date(2026, 3, 31)
    assert s.time_of_day == time(20, 0)
    assert s == Schedule(
        frequency="weekly",
        days_of_week=("mon", "thu"),
        start=date(2026, 3, 2),
        until=date(2026, 3, 31),
        time_of_day=time(20),
        timezone="America/New_York",
    )


# -- describe ----------------------------------------------------------------------------


def test_describe():
    weekly = Schedule(
        frequency="weekly",
        days_of_week=("thu", "mon"),
        count=8,
        time_of_day=time(20),
        start=date(2026, 3, 2),
        timezone="UTC",
    )
    assert weekly.describe() == "Every Monday and Thursday at 20:00, 8 times"
    assert daily(until=date(2026, 4, 30)).describe() == "Every day at 20:00, until 30 April 2026"
    assert (
        Schedule(
            frequency="every-n-days",
            interval=3,
            start=date(2026, 3, 1),
            time_of_day=time(7, 5),
            timezone="UTC",
        ).describe()
        == "Every 3 days at 07:05"
    )
    fortnightly = Schedule(
        frequency="weekly",
        interval=2,
        days_of_week=("mon", "wed", "fri"),
        start=date(2026, 3, 1),
        timezone="UTC",
    )
    assert fortnightly.describe() == "Every 2 weeks on Monday, Wednesday and Friday at 09:00"
    once = Schedule(frequency="once", start=date(2026, 3, 8), time_of_day=time(20), timezone="UTC")
    assert once.describe() == "Once on Sunday 8 March 2026 at 20:00"


# -- FHIR Timing -------------------------------------------------------------------------

ROUND_TRIP = [
    Schedule(
        frequency="once", start=date(2026, 3, 8), time_of_day=time(20), timezone="Europe/Berlin"
    ),
    daily(),
    daily(count=10),
    daily(until=date(2026, 5, 1), time_of_day=time(6, 45, 30)),
    Schedule(
        frequency="every-n-days", interval=2, start=date(2026, 3, 1), timezone="Pacific/Auckland"
    ),
    Schedule(
        frequency="weekly",
        days_of_week=("mon", "thu"),
        count=8,
        time_of_day=time(20),
        start=date(2026, 3, 2),
        timezone="America/New_York",
    ),
    Schedule(
        frequency="weekly",
        interval=3,
        days_of_week=("sun",),
        until=date(2026, 12, 31),
        count=4,
        start=date(2026, 3, 2),
        timezone="UTC",
    ),
]


@pytest.mark.parametrize("schedule", ROUND_TRIP, ids=lambda s: s.describe())
def test_fhir_timing_round_trips_through_a_valid_careplan(schedule):
    timing = schedule.to_fhir_timing()
    careplan = {
        "resourceType": "CarePlan",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/p1"},
        "activity": [
            {
                "detail": {
                    "status": "scheduled",
                    "instantiatesCanonical": ["http://example.org/Questionnaire/mood|1.0.0"],
                    "scheduledTiming": timing,
                }
            }
        ],
    }
    stored = validate(careplan)["activity"][0]["detail"]["scheduledTiming"]
    back = Schedule.from_fhir_timing(stored)
    assert back == schedule
    assert back.occurrences(utc(2026, 1, 1), utc(2026, 7, 1)) == schedule.occurrences(
        utc(2026, 1, 1), utc(2026, 7, 1)
    )


def test_to_fhir_timing_content():
    s = Schedule(
        frequency="weekly",
        days_of_week=("thu", "mon"),
        count=8,
        time_of_day=time(20),
        start=date(2026, 3, 2),
        until=date(2026, 4, 30),
        timezone="America/New_York",
    )
    timing = s.to_fhir_timing()
    repeat = timing["repeat"]
    assert repeat["dayOfWeek"] == ["mon", "thu"]
    assert (repeat["frequency"], repeat["period"], repeat["periodUnit"]) == (2, 1, "wk")
    assert repeat["timeOfDay"] == ["20:00:00"]
    assert repeat["count"] == 8
    assert repeat["boundsPeriod"] == {"start": "2026-03-02", "end": "2026-04-30"}
    assert timing["extension"] == [{"url": TIMEZONE_EXTENSION, "valueCode": "America/New_York"}]
    every = Schedule(frequency="every-n-days", interval=4, start=date(2026, 3, 2), timezone="UTC")
    assert every.to_fhir_timing()["repeat"]["period"] == 4
    assert every.to_fhir_timing()["repeat"]["periodUnit"] == "d"


def test_from_fhir_timing_accepts_other_common_encodings():
    # once a day, only on Monday and Thursday (days + periodUnit d)
    by_day = {
        "repeat": {
            "frequency": 1,
            "period": 1,
            "periodUnit": "d",
            "dayOfWeek": ["mon", "thu"],
            "timeOfDay": ["20:00:00"],
            "boundsPeriod": {"start": "2026-03-02"},
        }
    }
    s = Schedule.from_fhir_timing(by_day, "Europe/Berlin")
    assert (s.frequency, s.days_of_week, s.interval) == ("weekly", ("mon", "thu"), 1)
    # "once a week" without days: the weekday of the start
    weekly = {
        "repeat": {
            "frequency": 1,
            "period": 1,
            "periodUnit": "wk",
            "boundsPeriod": {"start": "2026-03-04"},
        }
    }
    s = Schedule.from_fhir_timing(weekly, "UTC")
    assert s.days_of_week == ("wed",) and s.time_of_day == time(9)
    # a single event with an offset: a one-off, moved into the patient's zone
    s = Schedule.from_fhir_timing({"event": ["2026-03-08T19:00:00Z"]}, "Europe/Berlin")
    assert (s.frequency, s.start, s.time_of_day) == ("once", date(2026, 3, 8), time(20))
    # R4 tz-code extension; dateTime bounds are read in the patient's zone
    tz_code = {
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/tz-code",
                "valueCode": "Pacific/Auckland",
            }
        ],
        "repeat": {
            "frequency": 1,
            "period": 1.0,
            "periodUnit": "d",
            "boundsPeriod": {"start": "2026-03-07T20:00:00Z"},
        },
    }
    s = Schedule.from_fhir_timing(tz_code)
    assert s.timezone == "Pacific/Auckland" and s.start == date(2026, 3, 8)
    # an explicit zone wins over the extension
    assert Schedule.from_fhir_timing(tz_code, "UTC").start == date(2026, 3, 7)


@pytest.mark.parametrize(
    "repeat, message",
    [
        ({"frequency": 2, "period": 1, "periodUnit": "d"}, "More than once a day"),
        ({"frequency": 1, "period": 1, "periodUnit": "mo"}, "periodUnit 'mo'"),
        (
            {"frequency": 1, "period": 1, "periodUnit": "d", "timeOfDay": ["08:00:00", "20:00:00"]},
            "one due time per day",
        ),
        ({"frequency": 1, "period": 1, "periodUnit": "d", "when": ["MORN"]}, "when"),
        ({"frequency": 1, "period": 1, "periodUnit": "d", "timeOfDay": ["8pm"]}, "hh:mm:ss"),
        ({"frequency": 1, "period": 1.5, "periodUnit": "d"}, "whole number"),
        ({"frequency": 3, "period": 1, "periodUnit": "wk", "dayOfWeek": ["mon"]}, "does not match"),
        (
            {
                "frequency": 1,
                "period": 1,
                "periodUnit": "d",
                "boundsPeriod": {"start": "2026-03-09", "end": "2026-03-01"},
            },
            "before it starts",
        ),
    ],
)
def test_from_fhir_timing_rejects_what_it_cannot_express(repeat, message):
    repeat.setdefault("boundsPeriod", {"start": "2026-03-01"})
    with pytest.raises(InvalidInput, match=message):
        Schedule.from_fhir_timing({"repeat": repeat}, "UTC")


def test_from_fhir_timing_needs_a_zone_and_a_start():
    timing = {
        "repeat": {
            "frequency": 1,
            "period": 1,
            "periodUnit": "d",
            "boundsPeriod": {"start": "2026-03-01"},
        }
    }
    with pytest.raises(InvalidInput, match="no time zone"):
        Schedule.from_fhir_timing(timing)
    with pytest.raises(InvalidInput, match="unknown time zone"):
        Schedule.from_fhir_timing(timing, "Mars/Olympus_Mons")
    with pytest.raises(InvalidInput, match="boundsPeriod.start"):
        Schedule.from_fhir_timing(
            {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}}, "UTC"
        )


# -- validation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes, field, message",
    [
        (dict(until=date(2026, 2, 1)), "until", "ends (until 2026-02-01) before it starts"),
        (dict(count=0), "count", "count must be a whole number of at least 1"),
        (dict(timezone="Europe/Atlantis"), "timezone", "unknown time zone 'Europe/Atlantis'"),
        (dict(timezone=""), "timezone", "unknown time zone"),
        (dict(frequency="weekly"), "days_of_week", "needs at least one day of the week"),
        (dict(frequency="every-n-days", interval=0), "interval", "at least 1"),
        (dict(interval=2), "interval", "use frequency 'every-n-days'"),
        (dict(frequency="every-n-days", interval=1), "interval", "2 or more days"),
        (
            dict(frequency="monthly"),
            "frequency",
            "must be one of once, daily, weekly, every-n-days",
        ),
        (dict(frequency="weekly", days_of_week=("mon", "funday")), "days_of_week", "'funday'"),
        (dict(days_of_week=("mon",)), "days_of_week", "only applies to weekly"),
        (dict(frequency="once", count=3), "count", "count must be 1"),
        (dict(start=datetime(2026, 3, 1, 9)), "start", "must be a date"),
        (dict(start="next week"), "start", "must be a date"),
        (dict(time_of_day=time(20, tzinfo=UTC)), "time_of_day", "local time"),
        (dict(time_of_day="25:00"), "time_of_day", "local time"),
    ],
)
def test_validation_errors(changes, field, message):
    with pytest.raises(InvalidInput) as info:
        daily(**changes)
    assert message in str(info.value)
    assert f"Schedule.{field}" in [i.expression for i in info.value.issues]
    assert info.value.status == 400


def test_validation_reports_every_problem_at_once():
    with pytest.raises(InvalidInput) as info:
        Schedule(
            frequency="daily",
            start=date(2026, 3, 1),
            interval=0,
            count=-1,
            timezone="Nowhere/Special",
        )
    fields = {i.expression for i in info.value.issues}
    assert fields == {"Schedule.interval", "Schedule.count", "Schedule.timezone"}


def test_schedule_is_frozen_and_hashable():
    s = daily()
    with pytest.raises(AttributeError):
        s.count = 3  # type: ignore[misc]
    assert hash(s) == hash(daily())
