"""Counting in rolling windows: how a rollout's pace is checked, by tests and by the rollout benchmark."""

from __future__ import annotations

from collections.abc import Iterable


def most_in_window(times: Iterable[float], window: float) -> int:
    """The most of `times` in any half-open interval of length `window`."""
    ordered = sorted(times)
    most, start = 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - window:
            start += 1
        most = max(most, end - start + 1)
    return most
