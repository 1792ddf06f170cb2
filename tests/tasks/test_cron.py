"""Cron parsing and next_after: known cases (month ends, leap years, Vixie day rule, DST) and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aictl.domain.errors import UsageError
from aictl.tasks.cron import CronError, parse

UTC = UTC
NY = ZoneInfo("America/New_York")
BERLIN = ZoneInfo("Europe/Berlin")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")  # a 30-minute DST shift


def nexts(expr: str, start: str, tz=UTC, n: int = 1) -> list[str]:
    c = parse(expr)
    t = datetime.fromisoformat(start).replace(tzinfo=tz).timestamp()
    out = []
    for _ in range(n):
        t = c.next_after(t, tz)
        out.append(datetime.fromtimestamp(t, tz).isoformat(timespec="minutes"))
    return out


@pytest.mark.parametrize(
    "expr, start, expected",
    [
        ("* * * * *", "2026-01-01T00:00", ["2026-01-01T00:01+00:00", "2026-01-01T00:02+00:00"]),
        ("* * * * *", "2026-01-01T00:00:59", ["2026-01-01T00:01+00:00", "2026-01-01T00:02+00:00"]),
        ("0 * * * *", "2026-01-01T00:00", ["2026-01-01T01:00+00:00", "2026-01-01T02:00+00:00"]),
        ("*/15 * * * *", "2026-01-01T23:50", ["2026-01-02T00:00+00:00", "2026-01-02T00:15+00:00"]),
        (
            "5,10-12 3 * * *",
            "2026-01-01T03:10",
            ["2026-01-01T03:11+00:00", "2026-01-01T03:12+00:00", "2026-01-02T03:05+00:00"],
        ),
        ("0-30/10 * * * *", "2026-01-01T00:25", ["2026-01-01T00:30+00:00", "2026-01-01T01:00+00:00"]),
        (
            "10/20 * * * *",
            "2026-01-01T00:00",
            ["2026-01-01T00:10+00:00", "2026-01-01T00:30+00:00", "2026-01-01T00:50+00:00", "2026-01-01T01:10+00:00"],
        ),
        # month ends: the 31st only in months that have one; the 30th skips February
        (
            "0 0 31 * *",
            "2026-01-31T00:00",
            ["2026-03-31T00:00+00:00", "2026-05-31T00:00+00:00", "2026-07-31T00:00+00:00", "2026-08-31T00:00+00:00"],
        ),
        ("0 12 30 * *", "2026-01-30T12:00", ["2026-03-30T12:00+00:00"]),
        ("59 23 31 12 *", "2026-12-31T23:59", ["2027-12-31T23:59+00:00"]),
        # leap day
        ("0 0 29 2 *", "2026-01-01T00:00", ["2028-02-29T00:00+00:00", "2032-02-29T00:00+00:00"]),
        # names and day-of-week forms
        ("0 9 * * mon-fri", "2026-11-20T10:00", ["2026-11-23T09:00+00:00", "2026-11-24T09:00+00:00"]),
        ("0 0 * * 7", "2026-11-20T00:00", ["2026-11-22T00:00+00:00"]),  # 7 is Sunday too
        ("0 0 * * SUN", "2026-11-20T00:00", ["2026-11-22T00:00+00:00"]),
        ("0 0 1 jan,Jul *", "2026-02-01T00:00", ["2026-07-01T00:00+00:00", "2027-01-01T00:00+00:00"]),
        # Vixie: both day fields restricted → either matches (the 13th, or any Friday)
        (
            "0 0 13 * fri",
            "2026-11-10T00:00",
            [
                "2026-11-13T00:00+00:00",
                "2026-11-20T00:00+00:00",
                "2026-11-27T00:00+00:00",
                "2026-12-04T00:00+00:00",
                "2026-12-11T00:00+00:00",
                "2026-12-13T00:00+00:00",
            ],
        ),
        # … but a day field starting with * makes it AND (odd days that are Mondays)
        ("0 0 */2 * mon", "2026-11-01T00:00", ["2026-11-09T00:00+00:00", "2026-11-23T00:00+00:00"]),
        ("0 0 1 * *", "2026-01-31T13:00", ["2026-02-01T00:00+00:00"]),
        # OR semantics within February: every Monday of February, and Feb 29
        ("0 0 29 2 mon", "2026-02-24T00:00", ["2027-02-01T00:00+00:00", "2027-02-08T00:00+00:00"]),
        (
            "0 0 29 2 mon",
            "2028-02-22T00:00",
            ["2028-02-28T00:00+00:00", "2028-02-29T00:00+00:00", "2029-02-05T00:00+00:00"],
        ),
        # aliases
        ("@hourly", "2026-01-01T10:30", ["2026-01-01T11:00+00:00"]),
        ("@daily", "2026-01-01T10:30", ["2026-01-02T00:00+00:00"]),
        ("@midnight", "2026-01-01T00:00", ["2026-01-02T00:00+00:00"]),
        ("@weekly", "2026-11-20T10:30", ["2026-11-22T00:00+00:00"]),
        ("@monthly", "2026-12-15T00:00", ["2027-01-01T00:00+00:00"]),
        ("@yearly", "2026-01-01T00:00", ["2027-01-01T00:00+00:00"]),
        ("@annually", "2026-06-01T00:00", ["2027-01-01T00:00+00:00"]),
    ],
)
def test_known_cases_utc(expr, start, expected):
    assert nexts(expr, start, UTC, len(expected)) == expected


@pytest.mark.parametrize(
    "expr, start, tz, expected",
    [
        # spring forward (NY 2026-03-08 02:00 → 03:00): a fixed 02:30 job fires once, at the jump
        ("30 2 * * *", "2026-03-07T12:00", NY, ["2026-03-08T03:00-04:00", "2026-03-09T02:30-04:00"]),
        ("*/20 2 * * *", "2026-03-08T01:00", NY, ["2026-03-08T03:00-04:00", "2026-03-09T02:00-04:00"]),
        # … an every-30-minutes job runs by the real clock: 02:00 and 02:30 do not exist that night
        (
            "*/30 * * * *",
            "2026-03-08T01:00",
            NY,
            ["2026-03-08T01:30-05:00", "2026-03-08T03:00-04:00", "2026-03-08T03:30-04:00"],
        ),
        # fall back (NY 2026-11-01 02:00 EDT → 01:00 EST): a fixed 01:30 job fires once …
        ("30 1 * * *", "2026-10-31T12:00", NY, ["2026-11-01T01:30-04:00", "2026-11-02T01:30-05:00"]),
        # … an every-30-minutes job fires in both passes of the repeated hour
        (
            "*/30 * * * *",
            "2026-11-01T00:45",
            NY,
            [
                "2026-11-01T01:00-04:00",
                "2026-11-01T01:30-04:00",
                "2026-11-01T01:00-05:00",
                "2026-11-01T01:30-05:00",
                "2026-11-01T02:00-05:00",
            ],
        ),
        # Europe (2026-03-29 02:00 CET → 03:00 CEST; 2026-10-25 03:00 CEST → 02:00 CET)
        ("0 2 * * *", "2026-03-28T12:00", BERLIN, ["2026-03-29T03:00+02:00", "2026-03-30T02:00+02:00"]),
        ("15 2 * * *", "2026-10-24T12:00", BERLIN, ["2026-10-25T02:15+02:00", "2026-10-26T02:15+01:00"]),
        (
            "0 * * * *",
            "2026-10-25T01:30",
            BERLIN,
            ["2026-10-25T02:00+02:00", "2026-10-25T02:00+01:00", "2026-10-25T03:00+01:00"],
        ),
        # daily jobs keep their wall-clock time across the change
        ("0 9 * * *", "2026-03-28T10:00", BERLIN, ["2026-03-29T09:00+02:00"]),
        # a 30-minute shift (Lord Howe: 2026-10-04 02:00 → 02:30)
        ("10 2 * * *", "2026-10-03T12:00", LORD_HOWE, ["2026-10-04T02:30+11:00", "2026-10-05T02:10+11:00"]),
    ],
)
def test_known_cases_across_dst(expr, start, tz, expected):
    assert nexts(expr, start, tz, len(expected)) == expected


def test_timestamp_inside_the_repeated_hour():
    # 01:40 EST (the second 01:40 of the night): a fixed-time 01:30 job has already fired today
    second_pass = datetime(2026, 11, 1, 1, 40, tzinfo=NY, fold=1).timestamp()
    nxt = parse("30 1 * * *").next_after(second_pass, NY)
    assert datetime.fromtimestamp(nxt, NY).isoformat(timespec="minutes") == "2026-11-02T01:30-05:00"
    # 01:40 EDT (the first pass): an every-30-minutes job next fires at 01:00 EST, 20 real minutes later
    first_pass = datetime(2026, 11, 1, 1, 40, tzinfo=NY, fold=0).timestamp()
    nxt = parse("*/30 * * * *").next_after(first_pass, NY)
    assert nxt - first_pass == 20 * 60


def test_cron_tz_prefix_and_tz_argument():
    c = parse("CRON_TZ=America/New_York 0 9 * * *")
    assert c.tz_name == "America/New_York" and c.text == "CRON_TZ=America/New_York 0 9 * * *"
    t = datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(c.next_after(t), UTC).isoformat() == "2026-06-01T13:00:00+00:00"
    c2 = parse("0 9 * * *", tz="Europe/Berlin")
    assert c2.text == "CRON_TZ=Europe/Berlin 0 9 * * *"  # stored with its zone, so every sweeper agrees
    assert datetime.fromtimestamp(c2.next_after(t), UTC).isoformat() == "2026-06-02T07:00:00+00:00"


def test_local_zone_is_the_default(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    t = datetime(2026, 6, 1, 12, tzinfo=UTC).timestamp()
    assert datetime.fromtimestamp(parse("0 9 * * *").next_after(t), UTC).isoformat() == "2026-06-02T00:00:00+00:00"


@pytest.mark.parametrize(
    "expr, fragment",
    [
        ("", "empty cron expression"),
        ("* * * *", "has 4 field(s); it needs 5"),
        ("* * * * * *", "has 6 field(s)"),
        ("60 * * * *", "minute field '60': 60 is out of range 0-59"),
        ("* 24 * * *", "hour field '24': 24 is out of range 0-23"),
        ("* * 0 * *", "day-of-month field '0': 0 is out of range 1-31"),
        ("* * 32 * *", "day-of-month field '32'"),
        ("* * * 13 *", "month field '13'"),
        ("* * * foo *", "month field 'foo': 'foo' is not a number or a name"),
        ("* * * * 8", "day-of-week field '8': 8 is out of range 0-7"),
        ("* * * * mon-sun", "runs backwards"),
        ("*/0 * * * *", "step '0' must be a positive number"),
        ("*/x * * * *", "step 'x'"),
        ("1,,2 * * * *", "empty list item"),
        ("5-2 * * * *", "range 5-2 runs backwards"),
        ("? * * * *", "minute field '?'"),
        ("@reboot", "unknown cron alias '@reboot'"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("CRON_TZ=Mars/Olympus 0 * * * *", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_expressions_name_the_field(expr, fragment):
    with pytest.raises(CronError) as e:
        parse(expr)
    assert fragment in e.value.message, e.value.message
    assert isinstance(e.value, UsageError) and e.value.exit_code == 2


def test_feb_29_alone_is_possible():
    assert parse("0 0 29 2 *")  # leap years have it
    assert parse("0 0 30 2 1")  # Mondays still fire (either day field may match)


# -- properties ------------------------------------------------------------------------


def field(lo: int, hi: int):
    single = st.integers(lo, hi).map(str)
    rng = st.tuples(st.integers(lo, hi), st.integers(lo, hi)).map(lambda p: f"{min(p)}-{max(p)}")
    step = st.tuples(st.sampled_from(["*", f"{lo}-{hi}"]), st.integers(1, hi - lo + 1)).map(lambda p: f"{p[0]}/{p[1]}")
    item = st.one_of(st.just("*"), single, rng, step)
    return st.lists(item, min_size=1, max_size=3).map(",".join)


exprs = st.tuples(field(0, 59), field(0, 23), field(1, 28), field(1, 12), field(0, 7)).map(" ".join)
instants = st.integers(
    int(datetime(2000, 1, 1, tzinfo=UTC).timestamp()), int(datetime(2060, 1, 1, tzinfo=UTC).timestamp())
).map(float)


def reference_next(c, ts: float) -> float:
    """Brute force in UTC: day by day, then every minute of a matching day."""
    t = datetime.fromtimestamp(ts, UTC)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    for _ in range(366 * 30):
        if day.month in c.months and c.day_matches(day.year, day.month, day.day):
            for h in c.hours:
                for m in c.minutes:
                    cand = day.replace(hour=h, minute=m)
                    if cand > t:
                        return cand.timestamp()
        day += timedelta(days=1)
    raise AssertionError("no firing found")


@settings(max_examples=300, deadline=None)
@given(exprs, instants)
def test_property_utc_next_is_later_matches_and_is_the_first(expr, ts):
    c = parse(expr)
    nxt = c.next_after(ts, UTC)
    assert nxt > ts
    assert c.matches(datetime.fromtimestamp(nxt, UTC))
    assert nxt == reference_next(c, ts)


@settings(max_examples=300, deadline=None)
@given(exprs, instants, st.sampled_from([NY, BERLIN, LORD_HOWE, ZoneInfo("Asia/Kolkata")]))
def test_property_dst_zones_next_is_later_and_matches_or_is_a_jump(expr, ts, tz):
    c = parse(expr)
    nxt = c.next_after(ts, tz)
    assert nxt > ts
    wall = datetime.fromtimestamp(nxt, tz)
    if not c.matches(wall):
        # only allowed for a wall time skipped by a spring-forward jump: nxt is the jump itself
        before = datetime.fromtimestamp(nxt - 1, tz)
        assert before.utcoffset() < wall.utcoffset(), (expr, wall)
    # and monotone: asking again from the result moves strictly forward
    assert c.next_after(nxt, tz) > nxt


def test_the_end_of_the_calendar_is_an_error_not_a_crash():
    t = datetime(9996, 3, 1, tzinfo=UTC).timestamp()
    with pytest.raises(CronError, match="does not fire"):
        parse("0 0 29 2 *").next_after(t, UTC)
