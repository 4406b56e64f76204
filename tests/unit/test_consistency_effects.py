"""How a strict-consistency write counts the decisions it caused (ADR 0008): each decision reports its step
of the trace and how many commands it caused; the write is settled when none is outstanding. Reports come by
different ways (memory for this instance's keys, the replies topic for others'), so one may overtake its
cause's: it must not let the count reach zero early."""

from __future__ import annotations

from iotjobs.runtime.bus import Effects


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
