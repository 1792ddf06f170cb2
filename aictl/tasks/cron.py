"""Standard 5-field cron expressions: parse once, then ask for the next time after an instant.

    ┌ minute (0-59)
    │ ┌ hour (0-23)
    │ │ ┌ day of month (1-31)
    │ │ │ ┌ month (1-12 or jan-dec)
    │ │ │ │ ┌ day of week (0-7 or sun-sat; 0 and 7 are Sunday)
    * * * * *

Each field is a comma list of `*`, `N`, `A-B`, and any of those with a `/STEP`
(`N/STEP` means `N-max/STEP`). `@yearly` (`@annually`), `@monthly`, `@weekly`,
`@daily` (`@midnight`) and `@hourly` stand for their usual expressions. As in
Vixie cron, when both day of month and day of week are restricted (neither
starts with `*`) a day matching EITHER fires; otherwise both must match.

Time zone: an expression is evaluated in the machine's local time zone, unless it
starts with `CRON_TZ=Area/City ` (or `TZ=`), or a zone is passed in.

Daylight saving time, as Vixie cron handles it:
- A wall-clock time skipped by a spring-forward jump (02:30 on that night in most
  of Europe and America) fires once, at the first instant after the jump — unless the
  hour field starts with `*`: a job that runs every hour (or every N minutes) runs by
  the real clock, and the missing wall times simply do not occur.
- A wall-clock time that happens twice at a fall-back fires once (the first time) —
  unless the hour field starts with `*`: such jobs fire in both passes, so "every 15
  minutes" stays every 15 minutes of real time.
"""

from __future__ import annotations

import bisect
import calendar
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo

from aictl.domain.errors import UsageError

FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 7),
)
MONTHS = {
    m: i
    for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), start=1)
}
DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
MAX_SHIFT = timedelta(hours=3)  # larger than any DST (or double summer time) shift there is
SEARCH_YEARS = 30  # `0 0 29 2 1` (Feb 29 falling on a Monday) recurs within 28 years


class CronError(UsageError):
    code = "cron_invalid"


@dataclass(frozen=True)
class Cron:
    """A parsed expression; `next_after(ts)` is the first instant strictly after `ts` that it fires."""

    text: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: tuple[int, ...]
    months: tuple[int, ...]
    weekdays: tuple[int, ...]  # 0 = Sunday … 6 = Saturday
    dom_star: bool
    dow_star: bool
    hour_star: bool
    tz_name: str | None = None

    @property
    def tz(self) -> tzinfo | None:
        return _zone(self.tz_name) if self.tz_name else None

    def day_matches(self, y: int, m: int, d: int) -> bool:
        dom = d in self.days
        dow = (calendar.weekday(y, m, d) + 1) % 7 in self.weekdays
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow

    def matches(self, wall: datetime) -> bool:
        """Does this wall-clock time (naive, or read in its own zone) match every field?"""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_matches(wall.year, wall.month, wall.day)
        )

    def next_after(self, ts: float, tz: tzinfo | None = None) -> float:
        """The first firing time strictly after `ts` (a UNIX timestamp), as a UNIX timestamp."""
        zone = tz or self.tz or _local_zone()
        return next_after(self, ts, zone)

    def walls_after(self, start: datetime) -> Iterator[datetime]:
        """Matching wall-clock minutes strictly after the naive datetime `start`, in order."""
        t = start.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = min(start.year + SEARCH_YEARS, 9998)  # datetime ends at year 9999
        mins, hours, months = self.minutes, self.hours, self.months
        while t.year <= limit:
            if t.month not in months:
                i = bisect.bisect_right(months, t.month)
                t = datetime(t.year, months[i], 1) if i < len(months) else datetime(t.year + 1, months[0], 1)
                continue
            if not self.day_matches(t.year, t.month, t.day):
                t = datetime(t.year, t.month, t.day) + timedelta(days=1)
                continue
            if t.hour not in hours:
                i = bisect.bisect_right(hours, t.hour)
                t = (
                    datetime(t.year, t.month, t.day, hours[i])
                    if i < len(hours)
                    else datetime(t.year, t.month, t.day) + timedelta(days=1)
                )
                continue
            if t.minute not in mins:
                i = bisect.bisect_right(mins, t.minute)
                t = t.replace(minute=mins[i]) if i < len(mins) else t.replace(minute=0) + timedelta(hours=1)
                continue
            yield t
            t += timedelta(minutes=1)


def parse(expr: str, tz: str | None = None) -> Cron:
    """Parse a cron expression; CronError (exit 2) names the field that is wrong and why."""
    if not isinstance(expr, str) or not expr.strip():
        raise CronError("empty cron expression", hint='e.g. "0 * * * *" (hourly) or "@daily"')
    text = " ".join(expr.split())
    body = text
    tz_name = tz
    m = re.match(r"^(?:CRON_TZ|TZ)=(\S+)\s+(.*)$", body)
    if m:
        if tz and tz != m.group(1):
            raise CronError(f"cron expression {text!r} names time zone {m.group(1)}, but {tz} was also given")
        tz_name, body = m.group(1), m.group(2)
    if tz_name:
        _zone(tz_name)  # an unknown zone is an error now, not at the first firing
    if body.startswith("@"):
        if body.lower() not in ALIASES:
            raise CronError(
                f"unknown cron alias {body!r}",
                hint=f"use one of {', '.join(ALIASES)} or five fields: minute hour day month weekday",
            )
        body = ALIASES[body.lower()]
    parts = body.split(" ")
    if len(parts) != 5:
        raise CronError(
            f"cron expression {text!r} has {len(parts)} field(s);"
            " it needs 5: minute hour day-of-month month day-of-week",
            hint='e.g. "*/15 * * * *" (every 15 minutes) or "0 9 * * mon-fri" (weekdays at 9:00)',
        )
    values = [_field(text, parts[i], *FIELDS[i]) for i in range(5)]
    weekdays = tuple(sorted({d % 7 for d in values[4]}))
    cron = Cron(
        text=text if not tz or m else f"CRON_TZ={tz} {text}",
        minutes=values[0],
        hours=values[1],
        days=values[2],
        months=values[3],
        weekdays=weekdays,
        dom_star=parts[2].startswith("*"),
        dow_star=parts[4].startswith("*"),
        hour_star=parts[1].startswith("*"),
        tz_name=tz_name,
    )
    _check_possible(cron)
    return cron


def _field(text: str, spec: str, name: str, lo: int, hi: int) -> tuple[int, ...]:
    names = MONTHS if name == "month" else DAYS if name == "day-of-week" else {}
    out: set[int] = set()

    def bad(why: str) -> CronError:
        return CronError(
            f"cron expression {text!r}: {name} field {spec!r}: {why}",
            hint=f"{name} takes {lo}-{hi}"
            + (f" or names ({', '.join(names)})" if names else "")
            + ", as N, A-B, */S, A-B/S or comma lists",
        )

    def number(tok: str) -> int:
        if tok.lower() in names:
            return names[tok.lower()]
        if not tok.isdigit():
            raise bad(f"{tok!r} is not a number" + (" or a name" if names else ""))
        v = int(tok)
        if not lo <= v <= hi:
            raise bad(f"{v} is out of range {lo}-{hi}")
        return v

    for item in spec.split(","):
        if not item:
            raise bad("empty list item")
        rng, _, step_s = item.partition("/")
        step = 1
        if _:
            if not step_s.isdigit() or int(step_s) == 0:
                raise bad(f"step {step_s!r} must be a positive number")
            step = int(step_s)
        if rng == "*":
            a, b = lo, hi
        elif "-" in rng:
            a_s, _, b_s = rng.partition("-")
            a, b = number(a_s), number(b_s)
            if a > b:
                raise bad(f"range {rng} runs backwards")
        else:
            a = number(rng)
            b = hi if _ else a  # N/S means N-max/S
        out.update(range(a, b + 1, step))
    return tuple(sorted(out))


def _check_possible(cron: Cron) -> None:
    """`0 0 30 2 *` can never fire: say so now instead of searching forever."""
    if cron.dom_star or not cron.dow_star:
        return  # day of week restricted too (either may match), or every day allowed
    if not any(d <= (29 if m == 2 else calendar.monthrange(2001, m)[1]) for m in cron.months for d in cron.days):
        raise CronError(
            f"cron expression {cron.text!r} never fires: no month it names has that day",
            hint="check the day-of-month and month fields",
        )


def next_after(cron: Cron, ts: float, zone: tzinfo) -> float:
    """First instant > ts at which `cron` fires in `zone`, with the DST rules of the module docstring."""
    at = datetime.fromtimestamp(ts, tz=UTC)
    wall = at.astimezone(zone).replace(tzinfo=None)
    # Near an offset change, wall-clock order and real order differ by up to the shift: start earlier.
    offsets = {_offset(at + d, zone) for d in (-MAX_SHIFT, timedelta(0), MAX_SHIFT)}
    steady = len(offsets) == 1
    start = wall if steady else wall - MAX_SHIFT
    best: datetime | None = None
    best_wall: datetime | None = None
    for w in cron.walls_after(start):
        if best_wall is not None and w > best_wall + MAX_SHIFT:
            break
        for inst in _instants(cron, w, zone):
            if inst > at and (best is None or inst < best):
                best, best_wall = inst, w
        if best is not None and steady and best - at < MAX_SHIFT and _offset(best, zone) == _offset(at, zone):
            break  # no offset change between ts and best: nothing later in wall time can come sooner
    if best is None:
        raise CronError(f"cron expression {cron.text!r} does not fire within {SEARCH_YEARS} years")
    return best.timestamp()


def _instants(cron: Cron, w: datetime, zone: tzinfo) -> list[datetime]:
    """The real instants at which wall time `w` fires (none, one, or two)."""
    first = w.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = w.replace(tzinfo=zone, fold=1).astimezone(UTC)
    exists0 = first.astimezone(zone).replace(tzinfo=None) == w
    exists1 = second.astimezone(zone).replace(tzinfo=None) == w
    if exists0 and exists1 and first != second:  # a fall-back: this wall time happens twice
        return [first, second] if cron.hour_star else [first]
    if exists0 or exists1:
        return [first if exists0 else second]
    # A spring-forward gap: this wall time never happens.
    if cron.hour_star:
        return []
    return [_transition(second, first, zone)]


def _transition(lo: datetime, hi: datetime, zone: tzinfo) -> datetime:
    """The first whole second in (lo, hi] whose offset is the one in force at hi (the end of a gap)."""
    import math

    lo, hi = min(lo, hi), max(lo, hi)
    target = _offset(hi, zone)
    while hi - lo > timedelta(seconds=1):
        mid = lo + (hi - lo) / 2
        if _offset(mid, zone) == target:
            hi = mid
        else:
            lo = mid
    # (lo, hi] is at most a second long and zones change offset on whole seconds: one candidate.
    return datetime.fromtimestamp(math.floor(lo.timestamp()) + 1, tz=UTC)


def _offset(at: datetime, zone: tzinfo) -> timedelta | None:
    return at.astimezone(zone).utcoffset()


def _zone(name: str) -> tzinfo:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise CronError(f"unknown time zone {name!r}", hint="use an IANA name such as Europe/Berlin or UTC") from None


def _local_zone() -> tzinfo:
    """The machine's zone (TZ, else /etc/localtime) with its DST rules, not just today's offset."""
    import os
    from zoneinfo import ZoneInfo

    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return _zone(name)
        except CronError:
            pass
    link = os.path.realpath("/etc/localtime")
    if "zoneinfo/" in link:
        try:
            return _zone(link.split("zoneinfo/", 1)[1])
        except CronError:
            pass
    try:
        with open("/etc/localtime", "rb") as f:
            return ZoneInfo.from_file(f, key="localtime")
    except (OSError, ValueError):
        return UTC


def describe_next(cron: Cron, ts: float) -> str:
    """The next firing as local ISO time, for humans."""
    zone = cron.tz or _local_zone()
    return datetime.fromtimestamp(cron.next_after(ts), tz=UTC).astimezone(zone).isoformat(timespec="minutes")
