"""Every execution's history (iotjobs/domain/history.py): each cause, from the command that brings it about,
through the deciders that pass it on, to the transition the projector records.

A small world of deciders routes what one aggregate sends to the next, as the runtime does; the history is
what `history.transition` makes of the thing aggregate's events.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from iotjobs.domain import group, history, job, thing
from iotjobs.domain.catalog import aggregate_for
from iotjobs.domain.decision import Context, Decision
from iotjobs.domain.execution import CANCELED, FAILED, IN_PROGRESS, QUEUED, REMOVED, SUCCEEDED, TIMED_OUT

T0 = 1_700_000_000.0
ARN = "arn:aws:iot:us-east-1:123456789012"
THING_DECIDER = Path(thing.__file__)


@dataclass
class World:
    """Aggregates by key, every command delivered once and in order, minutes lasting a second."""

    now: float = T0
    states: dict[str, Any] = field(default_factory=dict)
    log: list[Any] = field(default_factory=list)

    def decide(self, key: str, command: Any) -> Decision:
        pending = [(key, command)]
        first: Decision | None = None
        while pending:
            at, message = pending.pop(0)
            aggregate = aggregate_for(at)
            state = self.states.get(at) or aggregate.initial(at)
            decision = aggregate.decide(state, message, Context(now=self.now, seconds_per_minute=1.0))
            for event in decision.events:
                state = aggregate.evolve(state, event)
            self.states[at] = state
            self.log.extend(decision.events)
            pending.extend((send.key, send.command) for send in decision.sends)
            first = first or decision
        assert first is not None
        return first

    def fire_timers(self) -> None:
        for key, state in list(self.states.items()):
            for timer in aggregate_for(key).timers(state):
                if timer.due <= self.now:
                    self.decide(key, timer.command)

    def history(self, thing_name: str, job_id: str) -> list[tuple[int, str, str, dict[str, str] | None, int | None]]:
        moves = [history.transition(event) for event in self.log]
        return [
            (m.execution_number, m.status, m.cause, m.status_details, m.version_number)
            for m in moves
            if m is not None and (m.thing_name, m.job_id) == (thing_name, job_id)
        ]


def world_with(*things: str) -> World:
    world = World()
    for name in things:
        world.decide(thing.key_for(name), thing.CreateThing(name, f"id-{name}"))
    return world


def create_job(world: World, job_id: str, things: list[str], groups: tuple[str, ...] = (), **spec: Any) -> None:
    targets = [f"{ARN}:thing/{t}" for t in things] + [f"{ARN}:thinggroup/{g}" for g in groups]
    world.decide(job.key_for(job_id), job.CreateJob(job_id, {"targets": targets, "document": "{}", **spec}, things))


def device(world: World, name: str, job_id: str, status: str, details: dict[str, str] | None = None) -> None:
    decision = world.decide(thing.key_for(name), thing.UpdateExecution(job_id, status, details))
    assert decision.events, decision.reply


def test_the_rollout_queues_and_the_device_moves_the_execution() -> None:
    world = world_with("t1")
    create_job(world, "j1", ["t1"])
    started = world.decide(thing.key_for("t1"), thing.StartNext({"step": "download"}))
    assert started.events
    device(world, "t1", "j1", SUCCEEDED, {"step": "done"})
    assert world.history("t1", "j1") == [
        (1, QUEUED, history.ROLLOUT, {}, 1),
        (1, IN_PROGRESS, history.DEVICE, {"step": "download"}, 2),
        (1, SUCCEEDED, history.DEVICE, {"step": "done"}, 3),
    ]


def test_a_timeout_is_the_timer_and_its_retry_a_new_execution_number() -> None:
    world = world_with("t1")
    retry = {"criteriaList": [{"failureType": TIMED_OUT, "numberOfRetries": 1}]}
    create_job(world, "j1", ["t1"], in_progress_timeout_minutes=1, config={job.RETRY_CONFIG: retry})
    device(world, "t1", "j1", IN_PROGRESS, {"p": "1"})
    world.now += 61
    world.fire_timers()
    assert world.history("t1", "j1") == [
        (1, QUEUED, history.ROLLOUT, {}, 1),
        (1, IN_PROGRESS, history.DEVICE, {"p": "1"}, 2),
        (1, TIMED_OUT, history.TIMER, {"p": "1"}, 3),
        (2, QUEUED, history.RETRY, {}, 1),
    ]


def test_an_update_arriving_after_the_deadline_times_the_execution_out_by_the_timer() -> None:
    world = world_with("t1")
    create_job(world, "j1", ["t1"], in_progress_timeout_minutes=1)
    device(world, "t1", "j1", IN_PROGRESS)
    world.now += 61
    late = world.decide(thing.key_for("t1"), thing.UpdateExecution("j1", SUCCEEDED))
    assert [e.status for e in late.events] == [TIMED_OUT]
    assert world.history("t1", "j1")[-1][1:3] == (TIMED_OUT, history.TIMER)


def test_a_failure_is_retried_and_the_operator_cancels_and_deletes() -> None:
    world = world_with("t1")
    retry = {"criteriaList": [{"failureType": FAILED, "numberOfRetries": 1}]}
    create_job(world, "j1", ["t1"], config={job.RETRY_CONFIG: retry})
    device(world, "t1", "j1", FAILED, {"why": "disk"})
    world.decide(thing.key_for("t1"), thing.CancelExecution("j1", status_details={"by": "ops"}))
    world.decide(thing.key_for("t1"), thing.DeleteExecution("j1", execution_number=1))
    assert world.history("t1", "j1") == [
        (1, QUEUED, history.ROLLOUT, {}, 1),
        (1, FAILED, history.DEVICE, {"why": "disk"}, 2),
        (2, QUEUED, history.RETRY, {}, 1),
        (2, CANCELED, history.OPERATOR, {"by": "ops"}, 2),
        (1, history.DELETED, history.OPERATOR, None, None),  # the fold keeps what the execution had
    ]


def test_cancel_job_and_delete_job_are_the_operator() -> None:
    world = world_with("t1")
    create_job(world, "j1", ["t1"])
    world.decide(job.key_for("j1"), job.CancelJob("j1", force=False, reason_code=None, comment=None))
    world.decide(job.key_for("j1"), job.DeleteJob("j1", force=False))
    assert world.history("t1", "j1") == [
        (1, QUEUED, history.ROLLOUT, {}, 1),
        (1, CANCELED, history.OPERATOR, {}, 2),
        (1, history.DELETED, history.OPERATOR, None, None),
    ]


def test_an_abort_criterion_cancels_the_queued_executions_as_abort() -> None:
    world = world_with("t1", "t2", "t3")
    criterion = {"failureType": FAILED, "action": "CANCEL", "thresholdPercentage": 50, "minNumberOfExecutedThings": 1}
    create_job(world, "j1", ["t1", "t2", "t3"], config={job.ABORT_CONFIG: {"criteriaList": [criterion]}})
    device(world, "t2", "j1", IN_PROGRESS)
    device(world, "t1", "j1", FAILED)
    assert world.states[job.key_for("j1")].status == job.CANCELED
    assert world.history("t3", "j1")[-1][1:3] == (CANCELED, history.ABORT)
    assert world.history("t2", "j1")[-1][1:3] == (IN_PROGRESS, history.DEVICE), "IN_PROGRESS runs on"


def test_joining_and_leaving_a_continuous_jobs_group_are_membership() -> None:
    world = world_with("t1")
    world.decide(group.key_for("g"), group.CreateThingGroup("g", "id-g"))
    create_job(world, "j1", [], ("g",), target_selection=job.CONTINUOUS)
    world.decide(group.key_for("g"), group.AddThingToThingGroup("t1", "g"))
    world.decide(group.key_for("g"), group.RemoveThingFromThingGroup("t1", "g"))
    assert world.history("t1", "j1") == [
        (1, QUEUED, history.MEMBERSHIP, {}, 1),
        (1, REMOVED, history.MEMBERSHIP, {}, 2),
    ]


def test_a_member_at_creation_is_the_rollout_and_delete_thing_the_operator() -> None:
    world = world_with("t1")
    world.decide(group.key_for("g"), group.CreateThingGroup("g", "id-g"))
    world.decide(group.key_for("g"), group.AddThingToThingGroup("t1", "g"))
    create_job(world, "j1", [], ("g",), target_selection=job.CONTINUOUS)
    world.decide(thing.key_for("t1"), thing.DeleteThing("t1"))
    world.decide(thing.key_for("t1"), thing.CreateThing("t1", "id-again"))
    assert world.history("t1", "j1") == [
        (1, QUEUED, history.ROLLOUT, {}, 1),
        (1, REMOVED, history.OPERATOR, {}, 2),
        (1, history.DELETED, history.OPERATOR, None, None),  # a new thing of its name inherits nothing
    ]


def test_deletions_carry_their_time_and_older_logs_without_it_still_read() -> None:
    world = world_with("t1")
    create_job(world, "j1", ["t1"])
    world.now += 5
    world.decide(thing.key_for("t1"), thing.DeleteExecution("j1", execution_number=1, force=True))
    deleted = [e for e in world.log if isinstance(e, thing.ExecutionDeleted)]
    assert [history.transition(e).at for e in deleted] == [T0 + 5]  # type: ignore[union-attr]
    old = history.transition(thing.ExecutionDeleted("t1", "j1", 1))
    assert old is not None and (old.status, old.cause, old.at) == (history.DELETED, history.OPERATOR, None)


def test_events_that_move_no_execution_have_no_transition() -> None:
    assert history.transition(thing.ThingCreated("t1", "id")) is None
    assert history.transition(thing.ExecutionTimeoutChanged("t1", "j1", 1, 5)) is None
    assert history.transition(job.JobExecutionRetried("j1", "t1", FAILED, 1, T0)) is None


def _causes_the_thing_decider_names() -> set[str]:
    """What every `_changed(...)` call in the thing decider passes as its cause: a literal, or a local variable
    `cause` given literals (`cause = "a" if ... else "b"`)."""
    tree = ast.parse(THING_DECIDER.read_text())
    assigned: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["cause"]:
            assigned |= _literals(node.value)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_changed":
            cause = node.args[2]
            names |= assigned if isinstance(cause, ast.Name) and cause.id == "cause" else _literals(cause)
    return names


def _literals(node: ast.expr) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _literals(node.body) | _literals(node.orelse)
    raise AssertionError(f"a cause the test cannot read: {ast.unparse(node)}")


def test_every_cause_the_thing_decider_names_has_a_history_cause() -> None:
    named = _causes_the_thing_decider_names()
    assert named == set(history.UPDATE_CAUSES), "history.UPDATE_CAUSES is out of step with the thing decider"
    assert set(history.UPDATE_CAUSES.values()) <= set(history.CAUSES)


def test_an_unknown_cause_is_refused_loudly() -> None:
    updated = thing.ExecutionUpdated("t1", "j1", 1, SUCCEEDED, {}, 2, T0, T0, None, None, "mystery")
    with pytest.raises(ValueError, match="mystery"):
        history.transition(updated)
