"""Rollout pacing (aws-iot-jobs.md §6.7): the rate a job rolls out at, and how many of its waiting things
may be released now without more than that rate in any rolling minute.

A release is remembered as (until, count): `count` things released at `until` minus one minute. A token
bucket is not enough (it lets up to 2R - 1 through in one rolling minute); counting what was released in
the last minute is exact, and releasing again as soon as the oldest release leaves the window keeps the
rollout as close to the rate as the targets allow.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

ROLLOUT_CONFIG = "jobExecutionsRolloutConfig"
MAX_RATE = 1000
"""The highest rate AWS allows, and the cap of an exponential rate given without `maximumPerMinute`."""

DELIVERY_SECONDS = 1.0
"""How much longer than a minute a release counts against the rate. A release reaches its things through a
command topic and the broker, some milliseconds later and not all equally late; without this second the next
release could reach its devices within a minute of the last of the previous one, and a rolling minute at the
devices could see more than the rate. It is real time: a scaled minute (IOTJOBS_SECONDS_PER_MINUTE) does not
shrink the delivery."""

SLICES = 10
"""A minute's rate goes out in this many slices, a tenth of a minute apart, not in one burst: a slice reaches
its devices well within DELIVERY_SECONDS, where a burst of a thousand notifications may not."""

Released = tuple[float, int]
"""(until, count): `count` things released one minute before `until`."""


def rate(config: dict[str, Any] | None, notified: int, succeeded: int) -> int | None:
    """Things per minute the job may notify now; None when it has no rollout configuration (no limit)."""
    block = (config or {}).get(ROLLOUT_CONFIG) or {}
    maximum = block.get("maximumPerMinute")
    exponential = block.get("exponentialRate")
    if not exponential:
        return None if maximum is None else int(maximum)
    cap = MAX_RATE if maximum is None else int(maximum)
    criteria = exponential["rateIncreaseCriteria"]
    if criteria.get("numberOfNotifiedThings") is not None:
        steps = notified // int(criteria["numberOfNotifiedThings"])
    else:
        steps = succeeded // int(criteria["numberOfSucceededThings"])
    # Decimal: 100 x 1.1 x 1.1 is exactly 121, where floats give 121.00000000000003 or, elsewhere, x.9999.
    base = Decimal(int(exponential["baseRatePerMinute"]))
    factor = Decimal(str(exponential["incrementFactor"]))
    current = base
    for _ in range(steps):
        if current >= cap:
            break
        current *= factor
    return min(int(current), cap)


def slice_size(limit: int, position: int) -> int:
    """What the `position`-th release takes at a rate of `limit` a minute: the rate split as evenly as it goes
    into SLICES slices (into `limit` slices of one below SLICES). A release frees its own size when it leaves
    the window, which the release at the same position a minute later takes: whole slices, no fragments."""
    base, extra = divmod(limit, SLICES)
    sizes = [base + (1 if i < extra else 0) for i in range(SLICES)]
    sizes = [size for size in sizes if size]
    return sizes[position % len(sizes)]


def in_window(recent: tuple[Released, ...], now: float) -> int:
    """Things released in the rolling minute that ends at `now`."""
    return sum(count for until, count in recent if until > now)


def allowance(limit: int | None, recent: tuple[Released, ...], now: float) -> int | None:
    """How many more may be released at `now` (None: any number)."""
    if limit is None:
        return None
    return max(0, limit - in_window(recent, now))


def next_release(limit: int | None, recent: tuple[Released, ...], need: int = 1) -> float | None:
    """The first time at which `allowance` reaches `need`, once the window holds more than `limit - need`;
    None if it already does (or there is no limit)."""
    if limit is None:
        return None
    used = sum(count for _until, count in recent)
    for until, count in sorted(recent):
        if used <= limit - need:
            break
        used -= count
        if used <= limit - need:
            return until
    return None


def recorded(recent: tuple[Released, ...], now: float, until: float, count: int) -> tuple[Released, ...]:
    """The window after releasing `count` at `now`: what has left it is dropped, so it stays small."""
    kept = tuple(item for item in recent if item[0] > now)
    return (*kept, (until, count)) if count else kept
