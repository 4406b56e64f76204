"""How a strict-consistency write counts the decisions it caused (ADR 0008): each decision reports its step
of the trace and how many commands it caused; the write is settled when none is outstanding. Reports come by
different ways (memory for this instance's keys, the replies topic for others'), so one may overtake its
cause's: it must not let the count reach zero early."""

from __future__ import annotations

from iotjobs.runtime.bus import Effects
from iotjobs.runtime.trace import caused_traces, traced_count


def test_reports_in_order_settle_when_every_caused_decision_has_reported() -> None:
    effects = Effects()
    effects.report("", {"0": 5}, 2)
    effects.report(".0", {"1": 7}, 0)
    assert effects.outstanding == 1
    effects.report(".1", {"0": 9}, 0)
    assert (effects.outstanding, effects.reports, effects.positions) == (0, 3, {"0": 9, "1": 7})


def test_a_report_that_overtakes_its_causes_waits_for_it() -> None:
    # A membership change: the group forwards to the thing (another instance), which tells the group and two
    # jobs. The group's answer to the thing reports in memory before the thing's report crosses the topic.
    effects = Effects()
    effects.report("", {}, 1)  # the group
    effects.report(".0.0", {"0": 3}, 0)  # the group again, told by the thing
    assert effects.outstanding == 1, "the thing has not reported: not settled"
    effects.report(".0", {"1": 4}, 3)  # the thing
    assert effects.outstanding == 2
    effects.report(".0.2", {}, 0)
    effects.report(".0.1", {}, 0)
    assert (effects.outstanding, effects.reports, effects.positions) == (0, 5, {"0": 3, "1": 4})


def test_a_report_waits_for_every_step_above_it() -> None:
    effects = Effects()
    effects.report(".0.0.1", {}, 0)
    effects.report(".0.0", {}, 2)
    effects.report(".0", {}, 1)
    assert (effects.outstanding, effects.reports) == (1, 0)
    effects.report("", {}, 1)
    assert (effects.outstanding, effects.reports) == (1, 4)  # ".0.0.0" is still to come
    effects.report(".0.0.0", {}, 0)
    assert effects.outstanding == 0


def test_a_step_reported_again_counts_once() -> None:
    effects = Effects()
    effects.report("", {}, 1)
    effects.report(".0", {}, 1)
    effects.report(".0", {}, 1)  # decided again after its command was sent again
    assert (effects.outstanding, effects.reports) == (1, 2)
    effects.report(".0.0", {}, 0)
    assert effects.outstanding == 0


def _walk(trace: dict[str, object] | None, fan_outs: list[int], effects: Effects) -> None:
    """A tree of decisions: each decision on `trace` causes `fan_outs[0]` commands, each of those
    `fan_outs[1]`, and so on; every traced decision reports as the runtime does."""
    width = fan_outs[0] if fan_outs else 0
    children = caused_traces(trace, width)
    if trace is not None:
        effects.report(str(trace.get("step", "")), {}, traced_count(trace, width))
    for child in children:
        _walk(child, fan_outs[1:], effects)


def test_a_budget_stops_reports_at_the_source_and_the_write_still_settles() -> None:
    # CreateJob on 100 groups of 1,000 things, each thing reporting to its job once more: 200,101 decisions.
    effects = Effects()
    _walk({"instance": "i", "id": "w", "budget": 1000}, [100, 1000, 1], effects)
    assert effects.reports <= 1000, "more reports sent than the writer counts"
    assert effects.outstanding == 0, "a traced command was counted but never reported"


def test_a_tree_within_the_budget_is_traced_whole() -> None:
    effects = Effects()
    _walk({"instance": "i", "id": "w", "budget": 1000}, [3, 5, 2], effects)
    assert (effects.reports, effects.outstanding) == (1 + 3 + 15 + 30, 0)


def test_a_budget_is_shared_in_order_and_spent_once_per_decision() -> None:
    shares = [t and t["budget"] for t in caused_traces({"id": "w", "step": ".2", "budget": 6}, 3)]
    assert shares == [2, 2, 1]
    steps = [t and t["step"] for t in caused_traces({"id": "w", "step": ".2", "budget": 3}, 4)]
    assert steps == [".2.0", ".2.1", None, None]
    assert traced_count({"id": "w", "budget": 3}, 4) == 2
    assert caused_traces({"id": "w", "budget": 1}, 2) == [None, None]


def test_a_trace_without_a_budget_traces_every_command() -> None:
    old = {"instance": "i", "id": "w", "step": ".1"}
    assert [t and t["step"] for t in caused_traces(old, 3)] == [".1.0", ".1.1", ".1.2"]
    assert traced_count(old, 3) == 3
