"""Behaviour spec of the job aggregate (`job/{id}`): creation, release to things and completion.

Given these past events, when this command, then these events / sends / reply (aws-iot-jobs.md §6.1).
"""

from __future__ import annotations

from typing import Any

import hypothesis
import pytest
from hypothesis import strategies as st

from iotjobs.domain import job as j
from iotjobs.domain.decision import Context, Decision, Send
from iotjobs.domain.errors import Rejection
from iotjobs.domain.execution import (
    CANCELED,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    REJECTED,
    REMOVED,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    RecordExecutionStatus,
)
from iotjobs.domain.targets import CheckReach, ForgetJob, ReleaseTargets, TargetGroup
from iotjobs.domain.thing import QueueExecution, RemoveExecutions

JOB = "j1"
DOC = '{"operation":"install"}'
T0 = 1_700_000_000.0
NOW = T0 + 50
RELEASE = f"{JOB}@{T0!r}"


def spec(
    target_selection: str = j.SNAPSHOT,
    description: str | None = "roll out 1.2",
    timeout: int | None = None,
    namespace_id: str | None = None,
) -> dict[str, Any]:
    return {
        "targets": ["arn:aws:iot:us-east-1:123456789012:thing/t1"],
        "document": DOC,
        "target_selection": target_selection,
        "description": description,
        "in_progress_timeout_minutes": timeout,
        "namespace_id": namespace_id,
    }


def given(*events: Any) -> j.JobState:
    state = j.initial(f"job/{JOB}")
    for event in events:
        state = j.evolve(state, event)
    return state


def when(state: j.JobState, command: Any, now: float = NOW) -> Decision:
    return j.decide(state, command, Context(now=now))


def created(things: list[str], selection: str = j.SNAPSHOT) -> tuple[Any, ...]:
    """A job created on `things`, each released at once (no rollout rate)."""
    return j.JobCreated(JOB, spec(selection), things, T0), rolled_out(len(things))


def rolled_out(count: int, at: float = T0) -> j.JobRolledOut:
    return j.JobRolledOut(JOB, count, at, at + 61)  # a minute and the delivery second


def recorded(thing: str, status: str, n: int = 1, at: float = NOW) -> j.JobExecutionRecorded:
    return j.JobExecutionRecorded(JOB, thing, n, status, at)


def record(thing: str, status: str, n: int = 1) -> RecordExecutionStatus:
    return RecordExecutionStatus(JOB, thing, n, status)


# --- CreateJob --------------------------------------------------------------------------------


def test_create_job_records_it_and_queues_an_execution_on_each_thing() -> None:
    the_spec = spec(timeout=30, namespace_id="ns1")

    decision = when(given(), j.CreateJob(JOB, the_spec, ["t1", "t2"]), now=T0)

    assert decision == Decision(
        reply=j.JobCreatedReply(JOB, "roll out 1.2"),
        events=(j.JobCreated(JOB, the_spec, ["t1", "t2"], T0, RELEASE), rolled_out(2)),
        sends=tuple(Send(f"thing/{t}", QueueExecution(JOB, DOC, 30, "ns1", queued_at=T0)) for t in ("t1", "t2")),
    )
    assert all(send.forward_reply is False for send in decision.sends)


def test_each_execution_carries_the_lifetime_of_its_presigned_urls() -> None:
    with_config = {
        **spec(),
        "config": {"presignedUrlConfig": {"roleArn": "arn:aws:iam::1:role/r", "expiresInSec": 600}},
    }
    without_expiry = {**spec(), "config": {"presignedUrlConfig": {"roleArn": "arn:aws:iam::1:role/r"}}}

    sends = when(given(), j.CreateJob(JOB, with_config, ["t1"]), now=T0).sends
    default = when(given(), j.CreateJob(JOB, without_expiry, ["t1"]), now=T0).sends

    assert sends == (Send("thing/t1", QueueExecution(JOB, DOC, queued_at=T0, presigned_url_expires_in_sec=600)),)
    assert default == (Send("thing/t1", QueueExecution(JOB, DOC, queued_at=T0)),)


def test_created_job_is_in_progress_with_every_thing_queued() -> None:
    state = given(*created(["t1", "t2"]))
    assert state.exists
    assert (state.status, state.created_at, state.last_updated_at, state.completed_at) == (
        j.IN_PROGRESS,
        T0,
        T0,
        None,
    )
    assert dict(state.executions) == {"t1": QUEUED, "t2": QUEUED}
    assert state.spec == spec()


def test_create_an_existing_job_is_rejected_as_already_existing() -> None:
    decision = when(given(*created(["t1"])), j.CreateJob(JOB, spec(), ["t1"]))
    assert decision == Decision(reply=Rejection("ResourceAlreadyExists", "Job j1 already exists", {"resourceId": "j1"}))


def test_create_even_an_identical_job_twice_is_rejected() -> None:
    # There are no idempotency tokens (§0.9): a second create is a 409.
    decision = when(given(*created(["t1"])), j.CreateJob(JOB, spec(), ["t1"]))
    assert isinstance(decision.reply, Rejection)
    assert decision.reply.kind == "ResourceAlreadyExists"


def test_snapshot_job_with_no_things_completes_at_once() -> None:
    decision = when(given(), j.CreateJob(JOB, spec(), []), now=T0)
    assert decision == Decision(
        reply=j.JobCreatedReply(JOB, "roll out 1.2"),
        events=(j.JobCreated(JOB, spec(), [], T0, RELEASE), j.JobCompleted(JOB, T0)),
    )
    state = given(*decision.events)
    assert (state.status, state.completed_at) == (j.COMPLETED, T0)


def test_continuous_job_with_no_things_stays_in_progress() -> None:
    decision = when(given(), j.CreateJob(JOB, spec(j.CONTINUOUS), []), now=T0)
    assert decision.events == (j.JobCreated(JOB, spec(j.CONTINUOUS), [], T0, RELEASE),)
    assert given(*decision.events).status == j.IN_PROGRESS


def test_create_job_without_description_replies_none() -> None:
    assert when(given(), j.CreateJob(JOB, spec(description=None), ["t1"])).reply == j.JobCreatedReply(JOB, None)


# --- RecordExecutionStatus --------------------------------------------------------------------


def test_record_a_status_change() -> None:
    decision = when(given(*created(["t1", "t2"])), record("t1", IN_PROGRESS))
    assert decision == Decision(events=(recorded("t1", IN_PROGRESS),))
    state = given(*created(["t1", "t2"]), *decision.events)
    assert dict(state.executions) == {"t1": IN_PROGRESS, "t2": QUEUED}
    assert state.last_updated_at == NOW


def test_snapshot_job_does_not_complete_while_a_thing_is_pending() -> None:
    state = given(*created(["t1", "t2", "t3"]), recorded("t1", SUCCEEDED), recorded("t2", IN_PROGRESS))
    assert when(state, record("t3", FAILED)) == Decision(events=(recorded("t3", FAILED),))


@pytest.mark.parametrize("last", sorted(TERMINAL))
def test_snapshot_job_completes_when_every_thing_is_terminal(last: str) -> None:
    state = given(*created(["t1", "t2"]), recorded("t1", SUCCEEDED))

    decision = when(state, record("t2", last))

    assert decision == Decision(events=(recorded("t2", last), j.JobCompleted(JOB, NOW)))
    after = given(*created(["t1", "t2"]), recorded("t1", SUCCEEDED), *decision.events)
    assert (after.status, after.completed_at, after.last_updated_at) == (j.COMPLETED, NOW, NOW)


def test_continuous_job_never_completes() -> None:
    state = given(*created(["t1"], j.CONTINUOUS))
    assert when(state, record("t1", SUCCEEDED)) == Decision(events=(recorded("t1", SUCCEEDED),))


def test_a_completed_job_records_but_does_not_complete_again() -> None:
    state = given(*created(["t1"]), recorded("t1", FAILED), j.JobCompleted(JOB, NOW))
    assert when(state, record("t1", TIMED_OUT, n=2)) == Decision(events=(recorded("t1", TIMED_OUT, n=2),))


def test_record_for_a_thing_the_job_never_released_to_is_ignored() -> None:
    assert when(given(*created(["t1"])), record("t9", SUCCEEDED)) == Decision()


def test_record_of_an_unchanged_status_is_ignored() -> None:
    state = given(*created(["t1", "t2"]), recorded("t1", IN_PROGRESS))
    assert when(state, record("t1", IN_PROGRESS)) == Decision()
    assert when(state, record("t2", QUEUED)) == Decision()


def test_record_for_a_job_that_does_not_exist_is_ignored() -> None:
    assert when(given(), record("t1", SUCCEEDED)) == Decision()


@pytest.mark.parametrize("status", [REJECTED, REMOVED, CANCELED])
def test_every_terminal_status_counts_toward_completion(status: str) -> None:
    state = given(*created(["t1"]))
    assert j.JobCompleted(JOB, NOW) in when(state, record("t1", status)).events


def test_job_state_round_trips_through_a_dict() -> None:
    state = given(*created(["t1", "t2"]), recorded("t1", SUCCEEDED), recorded("t2", FAILED), j.JobCompleted(JOB, NOW))
    assert j.JobState.from_dict(state.to_dict()) == state


def test_unknown_commands_and_events_are_programming_errors() -> None:
    with pytest.raises(TypeError):
        when(given(), object())
    with pytest.raises(TypeError):
        j.evolve(given(), object())


# --- target groups stream their things to the job (§6.9) --------------------------------------

G1 = "arn:aws:iot:us-east-1:123456789012:thinggroup/g1"
G2 = "arn:aws:iot:us-east-1:123456789012:thinggroup/g2"


def test_a_new_job_queues_its_named_things_and_asks_each_target_group_for_its_members() -> None:
    the_spec = {**spec(), "targets": [G1, "arn:aws:iot:us-east-1:123456789012:thing/a:b", G2]}
    decision = when(given(), j.CreateJob(JOB, the_spec, ["a:b"]), now=T0)
    assert decision.sends == (
        Send("thing/a:b", QueueExecution(JOB, DOC, queued_at=T0)),
        Send("group/g1", TargetGroup("g1", JOB, RELEASE, False, "g1")),
        Send("group/g2", TargetGroup("g2", JOB, RELEASE, False, "g2")),
    )
    assert given(*decision.events).streams == {"g1": False, "g2": False}


def test_a_duplicate_job_asks_no_group() -> None:
    the_spec = {**spec(), "targets": [G1]}
    decision = when(given(j.JobCreated(JOB, the_spec, [], T0, "r0")), j.CreateJob(JOB, the_spec, []))
    assert isinstance(decision.reply, Rejection)
    assert decision.sends == ()


def test_a_snapshot_job_completes_only_once_every_stream_has_ended() -> None:
    first = when(given(), j.CreateJob(JOB, {**spec(), "targets": [G1]}, []), now=T0)
    history = [*first.events]
    assert not any(isinstance(e, j.JobCompleted) for e in first.events)

    chunk = when(given(*history), ReleaseTargets(JOB, ["t1", "t2"], RELEASE, last=False, path="g1"))
    assert chunk.events == (j.JobTargetsReleased(JOB, ["t1", "t2"], False, NOW, "g1", []), rolled_out(2, NOW))
    assert chunk.sends == tuple(
        Send(f"thing/{t}", QueueExecution(JOB, DOC, via="g1", queued_at=NOW)) for t in ("t1", "t2")
    )
    history += chunk.events
    for thing in ("t1", "t2"):
        reported = when(given(*history), record(thing, SUCCEEDED))
        assert not any(isinstance(e, j.JobCompleted) for e in reported.events), "the stream has not ended"
        history += reported.events

    # g1's stream ends and names its child's; the job waits for that one too.
    ended = when(given(*history), ReleaseTargets(JOB, [], RELEASE, last=True, path="g1", streams=["g1/c"]))
    assert not any(isinstance(e, j.JobCompleted) for e in ended.events)
    history += ended.events
    child = when(given(*history), ReleaseTargets(JOB, ["t1"], RELEASE, last=True, path="g1/c"))
    assert child.sends == (), "t1 already has its execution"
    assert any(isinstance(e, j.JobCompleted) for e in child.events)


def test_a_stream_of_another_job_of_the_same_id_or_of_a_canceled_job_changes_nothing() -> None:
    state = given(*when(given(), j.CreateJob(JOB, {**spec(), "targets": [G1]}, []), now=T0).events)
    assert when(state, ReleaseTargets(JOB, ["t9"], "r2", last=True, path="g1")) == Decision()
    canceled = given(*state_events(state), j.JobCanceled(JOB, False, None, None, NOW))
    assert when(canceled, ReleaseTargets(JOB, ["t9"], RELEASE, last=True, path="g1")) == Decision()


def state_events(state: j.JobState) -> list[Any]:
    return [j.JobCreated(JOB, state.spec, list(state.executions), T0, state.release)]


def test_a_thing_that_left_every_target_loses_its_execution_unless_it_is_back_in_one() -> None:
    named = "arn:aws:iot:us-east-1:123456789012:thing/t7"
    state = given(j.JobCreated(JOB, {**spec(), "targets": [G1, named]}, ["t1", "t7"], T0, RELEASE), rolled_out(2))
    assert when(state, CheckReach(JOB, "t1", ["g2"])) == Decision(
        sends=(Send("thing/t1", RemoveExecutions([JOB], ["g1"])),)
    )
    assert when(state, CheckReach(JOB, "t1", ["g1", "g2"])) == Decision(), "still in g1 (or below it)"
    assert when(state, CheckReach(JOB, "t7", [])) == Decision(), "named as a target"
    assert when(state, CheckReach(JOB, "t9", [])) == Decision(), "never released to"


def test_a_deleted_job_tells_its_target_groups_to_forget_it() -> None:
    state = given(j.JobCreated(JOB, {**spec(), "targets": [G1, G2]}, [], T0, RELEASE))
    decision = when(state, j.DeleteJob(JOB, force=True))
    assert decision.sends == (Send("group/g1", ForgetJob("g1", JOB)), Send("group/g2", ForgetJob("g2", JOB)))


@hypothesis.given(
    st.lists(
        st.tuples(
            st.sampled_from(["record", "forget", "add"]),
            st.sampled_from(["t1", "t2", "t3", "t4"]),
            st.sampled_from(sorted(TERMINAL | {QUEUED, IN_PROGRESS})),
        ),
        max_size=30,
    )
)
def test_the_pending_count_follows_every_change_and_survives_a_snapshot(
    changes: list[tuple[str, str, str]],
) -> None:
    state = j.evolve(j.initial(j.key_for(JOB)), j.JobCreated(JOB, spec(), ["t1", "t2"], T0, None))
    for kind, thing, status in changes:
        if kind == "record":
            state = j.evolve(state, j.JobExecutionRecorded(JOB, thing, 1, status, NOW))
        elif kind == "forget":
            state = j.evolve(state, j.JobExecutionForgotten(JOB, thing, NOW))
        else:
            state = j.evolve(state, j.JobExecutionAdded(JOB, thing, NOW))
        scanned = sum(s not in TERMINAL for s in state.executions.values())
        assert state.pending == scanned
        assert state.all_terminal() == (scanned == 0)
    restored = j.JobState.from_dict(state.to_dict())
    assert restored == state
