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


def in_window(recent: tuple[Released, ...], now: float) -> int:
    """Things released in the rolling minute that ends at `now`."""
    return sum(count for until, count in recent if until > now)


def allowance(limit: int | None, recent: tuple[Released, ...], now: float) -> int | None:
    """How many more may be released at `now` (None: any number)."""
    if limit is None:
        return None
    return max(0, limit - in_window(recent, now))


def next_release(limit: int | None, recent: tuple[Released, ...]) -> float | None:
    """The first time at which `allowance` is positive, once the window holds `limit` or more; None if it
    already is (or there is no limit)."""
    if limit is None:
        return None
    used = sum(count for _until, count in recent)
    for until, count in sorted(recent):
        if used < limit:
            break
        used -= count
        if used < limit:
            return until
    return None


def recorded(recent: tuple[Released, ...], now: float, until: float, count: int) -> tuple[Released, ...]:
    """The window after releasing `count` at `now`: what has left it is dropped, so it stays small."""
    kept = tuple(item for item in recent if item[0] > now)
    return (*kept, (until, count)) if count else kept
