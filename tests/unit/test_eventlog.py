"""The counting rule and the replay every reader of the events topic applies."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from iotjobs.domain import thing
from iotjobs.runtime.eventlog import Counting, KeyImage, Replay, counted, marker


def _event(owner: str, seq: int, scope: str = "dataplane", key: str = "thing/t1") -> dict[str, Any]:
    registered = thing.ThingCreated("t1", "id-1") if seq == 1 else thing.ThingDeleted("t1")
    return {
        "type": type(registered).__name__,
        "data": asdict(registered),
        "key": key,
        "seq": seq,
        "scope": scope,
        "owner": owner,
    }


def test_only_records_under_the_latest_marker_of_their_scope_count() -> None:
    records = [
        marker("a", "dataplane", 1),
        _event("a", 1),
        marker("c", "control", 1),  # another scope's owner does not fence this one
        _event("a", 2),
        marker("b", "dataplane", 2),
        _event("a", 3),  # a former owner's late append
        _event("b", 3),
    ]
    kept = counted(enumerate(records))
    assert [(r["owner"], r["seq"]) for r in kept] == [("a", 1), ("a", 2), ("b", 3)]


def test_nothing_counts_before_a_marker() -> None:
    assert not Counting().counts(_event("a", 1))


def test_a_replay_applies_counted_events_once_and_names_what_it_changed() -> None:
    start = KeyImage(1, thing.evolve(thing.initial("thing/t1"), thing.ThingCreated("t1", "id-1")))
    replay = Replay("dataplane", {"thing/t1": start}, Counting({"dataplane": "a"}))
    replay.feed(10, _event("a", 1))  # already in the snapshot
    replay.feed(11, _event("a", 2))
    assert replay.keys["thing/t1"].seq == 2 and replay.changed == {"thing/t1"} and not replay.gap


def test_a_replay_that_skips_a_sequence_number_reports_a_gap() -> None:
    replay = Replay("dataplane", {}, Counting({"dataplane": "a"}))
    replay.feed(5, _event("a", 2))
    assert replay.gap


def test_a_replay_folds_and_resends_only_its_own_scope() -> None:
    control_event = {**_event("c", 1, scope="control", key="job/j1"), "outbox": [{"key": "thing/t1"}]}
    replay = Replay("dataplane", {}, Counting({"dataplane": "a", "control": "c"}))
    replay.feed(1, control_event)  # the control plane's owner restores and re-sends this one
    replay.feed(2, {**_event("a", 1), "outbox": [{"key": "job/j1"}]})
    assert list(replay.keys) == ["thing/t1"] and [offset for offset, _r in replay.resend] == [2]
