"""Job scheduling (aws-iot-jobs.md §6.8): `startTime`, `endTime` and maintenance windows, as pure functions of
the job's `schedulingConfig` and a time.

Times are `YYYY-MM-DDTHH:MM` (seconds optional), UTC unless they carry an offset or `Z`. Maintenance windows
start on AWS's six-field cron form, `cron(minutes hours day-of-month month day-of-week year)`, evaluated in UTC;
day-of-week numbers run 1 (Sunday) to 7 as AWS's do. A window lasts `durationInMinutes`, scaled like every
minute-denominated setting (IOTJOBS_SECONDS_PER_MINUTE); cron start times are wall-clock times and are not.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter

SCHEDULING = "schedulingConfig"
STOP_ROLLOUT = "STOP_ROLLOUT"
CANCEL = "CANCEL"
FORCE_CANCEL = "FORCE_CANCEL"
ROLLOUTS_SHOWN = 7
"""scheduledJobRollouts: the next seven window starts."""
_SEARCH_YEARS = 10
"""How many jumps to a later (or earlier) allowed year a search makes."""
_STARTS_PER_YEAR = 366 * 24 * 60
"""A bound on the starts one search steps through: a window opening every minute, for a year."""
_CRON = re.compile(r"^\s*(?:cron\((?P<inner>[^()]*)\)|(?P<bare>[^()]*))\s*$")
_DOW_NUMBER = re.compile(r"\d+")


class ScheduleError(ValueError):
    """A scheduling value that cannot be read; the message names it."""


def parse_time(value: str, member: str) -> float:
    """Epoch seconds of a StringDateTime; UTC unless it says otherwise."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise ScheduleError(f"{member} '{value}' is not a date and time such as 2024-05-01T10:30") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_time(at: float) -> str:
    """The form AWS shows scheduled rollouts in: YYYY-MM-DDTHH:MM, UTC."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M")


@dataclass(frozen=True)
class Window:
    cron: str
    """The five fields croniter reads (minutes to day-of-week, numbers Unix-style)."""
    years: frozenset[int] | None
    """The years the window may open in; None: any."""
    duration: float
    """Seconds (scaled minutes)."""

    def _starts(self, at: float, backwards: bool) -> Iterator[float]:
        """Window starts after `at` (or before it, `backwards`), skipping to the years the window allows."""
        base = datetime.fromtimestamp(at, UTC)
        for _ in range(_SEARCH_YEARS):
            it = croniter(self.cron, base)
            for _ in range(_STARTS_PER_YEAR):
                start: datetime = it.get_prev(datetime) if backwards else it.get_next(datetime)
                if self.years is None or start.year in self.years:
                    yield start.timestamp()
                    continue
                if backwards:
                    earlier = [y for y in self.years if y < start.year]
                    if not earlier:
                        return
                    base = datetime(max(earlier) + 1, 1, 1, tzinfo=UTC)
                else:
                    later = [y for y in self.years if y > start.year]
                    if not later:
                        return
                    base = datetime(min(later), 1, 1, tzinfo=UTC) - timedelta(seconds=1)
                break
            else:
                return

    def next_start(self, at: float) -> float | None:
        """The first start strictly after `at`."""
        return next(self._starts(at, backwards=False), None)

    def open_until(self, at: float) -> float | None:
        """If `at` is inside an opening of this window, when that opening closes."""
        for start in self._starts(at + 1, backwards=True):  # croniter's seconds: a start at `at` itself counts
            if start <= at:
                return start + self.duration if at < start + self.duration else None
        return None


def windows(config: dict[str, Any] | None, seconds_per_minute: float) -> list[Window]:
    block = (config or {}).get(SCHEDULING) or {}
    return [
        window_of(w["startTime"], int(w["durationInMinutes"]), seconds_per_minute, f"maintenanceWindows[{i}]")
        for i, w in enumerate(block.get("maintenanceWindows") or [])
    ]


def window_of(expression: str, minutes: int, seconds_per_minute: float, member: str) -> Window:
    match = _CRON.match(expression)
    fields = (match["inner"] if match and match["inner"] is not None else (match["bare"] if match else "")).split()
    if len(fields) != 6:
        raise ScheduleError(
            f"{member}.startTime '{expression}' must be cron(minutes hours day-of-month month day-of-week year)"
        )
    minute, hour, dom, month, dow, year = fields
    if dom != "?" and dow != "?":
        raise ScheduleError(f"{member}.startTime '{expression}' must give '?' for day-of-month or day-of-week")
    unix_dow = _unix_day_of_week(dow)
    cron = " ".join((minute, hour, "*" if dom == "?" else dom, month, unix_dow))
    if not croniter.is_valid(cron):
        raise ScheduleError(f"{member}.startTime '{expression}' is not a cron expression this service can evaluate")
    return Window(cron, _years(year, expression, member), minutes * seconds_per_minute)


def _unix_day_of_week(field: str) -> str:
    """AWS numbers the days of the week 1 (Sunday) to 7; croniter 0 (Sunday) to 6. Names are the same."""
    if field == "?":
        return "*"
    parts = []
    for part in field.split(","):
        base, slash, step = part.partition("/")
        day, mark, nth = base.partition("#")
        parts.append(_DOW_NUMBER.sub(lambda m: str(int(m.group()) - 1), day) + mark + nth + slash + step)
    return ",".join(parts)


def _years(field: str, expression: str, member: str) -> frozenset[int] | None:
    if field == "*":
        return None
    years: set[int] = set()
    try:
        for part in field.split(","):
            span, _, step = part.partition("/")
            first, _, last = span.partition("-")
            low = int(first)
            high = int(last) if last else (low if not step else 2199)
            years.update(range(low, high + 1, int(step) if step else 1))
    except ValueError:
        raise ScheduleError(f"{member}.startTime '{expression}' has a year field that is not a year") from None
    return frozenset(years)


@dataclass(frozen=True)
class Plan:
    """What the schedule says at one time."""

    start_at: float | None
    end_at: float | None
    end_behavior: str
    windows: list[Window]

    def open_until(self, at: float) -> float | None:
        """Inside a window: when it closes (the latest close among the windows open at `at`); None: outside."""
        closes = [until for window in self.windows if (until := window.open_until(at)) is not None]
        return max(closes) if closes else None

    def next_open(self, at: float) -> float | None:
        starts = [start for window in self.windows if (start := window.next_start(at)) is not None]
        return min(starts) if starts else None

    def rollouts(self, at: float, count: int = ROLLOUTS_SHOWN) -> list[float]:
        """The next `count` window starts after `at` (scheduledJobRollouts)."""
        found: list[float] = []
        cursor = max(at, self.start_at or at)
        while len(found) < count:
            start = self.next_open(cursor)
            if start is None or (self.end_at is not None and start >= self.end_at):
                break
            found.append(start)
            cursor = start
        return found


def plan(config: dict[str, Any] | None, seconds_per_minute: float) -> Plan:
    start_at, end_at = bounds(config)
    return Plan(
        start_at=start_at,
        end_at=end_at,
        end_behavior=((config or {}).get(SCHEDULING) or {}).get("endBehavior") or STOP_ROLLOUT,
        windows=windows(config, seconds_per_minute),
    )


def bounds(config: dict[str, Any] | None) -> tuple[float | None, float | None]:
    """The start and end times (epoch seconds) a job's schedule names, if it names them."""
    block = (config or {}).get(SCHEDULING) or {}
    start, end = block.get("startTime"), block.get("endTime")
    return (
        parse_time(start, "schedulingConfig.startTime") if start else None,
        parse_time(end, "schedulingConfig.endTime") if end else None,
    )


def is_scheduled(config: dict[str, Any] | None) -> bool:
    block = (config or {}).get(SCHEDULING) or {}
    return bool(block.get("startTime") or block.get("maintenanceWindows") or block.get("endTime"))


def check(config: dict[str, Any] | None, now: float, seconds_per_minute: float) -> None:
    """CreateJob's rules for `schedulingConfig` (aws-iot-jobs.md §6.8); ScheduleError names what is wrong."""
    block = (config or {}).get(SCHEDULING) or {}
    the_plan = plan(config, seconds_per_minute)
    lead = 30 * seconds_per_minute
    year = timedelta(days=365).total_seconds()
    if the_plan.start_at is not None and not now + lead <= the_plan.start_at <= now + year:
        raise ScheduleError(f"schedulingConfig.startTime '{block['startTime']}' must be 30 minutes to one year ahead")
    if the_plan.end_at is not None:
        if not now + lead <= the_plan.end_at <= now + 2 * year:
            raise ScheduleError(f"schedulingConfig.endTime '{block['endTime']}' must be 30 minutes to two years ahead")
        begins = the_plan.start_at if the_plan.start_at is not None else now
        if not lead <= the_plan.end_at - begins <= 2 * year:
            raise ScheduleError(
                "schedulingConfig.endTime must be 30 minutes to two years after schedulingConfig.startTime"
            )
    elif block.get("endBehavior"):
        raise ScheduleError("schedulingConfig.endBehavior applies only with schedulingConfig.endTime")
