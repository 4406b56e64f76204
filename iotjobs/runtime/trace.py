"""The trace a strict write's commands carry (ADR 0008): which step of the write each decision is, and how
many more reports the writer will count from it.

A write that reaches 100,000 things counts the reports of `IOTJOBS_CONSISTENCY_MAX_THINGS` of them at most.
The budget keeps the others from being sent at all: a decision uses one report of its budget and shares the
rest among the commands it causes, in order; a command left with none carries no trace and reports nothing.
"""

from __future__ import annotations

from typing import Any

Trace = dict[str, Any]


def caused_traces(trace: Trace | None, count: int) -> list[Trace | None]:
    """The traces of the `count` commands a decision on `trace` causes (None: untraced)."""
    if trace is None:
        return [None] * count
    step = trace.get("step", "")
    budget = trace.get("budget")
    if budget is None:  # a trace from before budgets: every command is traced
        return [{**trace, "step": f"{step}.{i}"} for i in range(count)]
    share, extra = divmod(max(0, budget - 1), count) if count else (0, 0)
    shares = [share + (1 if i < extra else 0) for i in range(count)]
    return [{**trace, "step": f"{step}.{i}", "budget": n} if n else None for i, n in enumerate(shares)]


def traced_count(trace: Trace, count: int) -> int:
    """How many of the `count` commands a decision on `trace` causes carry the trace on."""
    budget = trace.get("budget")
    return count if budget is None else min(count, max(0, budget - 1))
