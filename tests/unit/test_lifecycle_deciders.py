"""Cancelling and deleting jobs and executions: the thing and job deciders, given / when / then."""

from __future__ import annotations

from typing import Any

import pytest

from iotjobs.domain import group, targets
from iotjobs.domain import job as j
from iotjobs.domain import thing as t
from iotjobs.domain.decision import Context, Decision, Done, Send
from iotjobs.domain.errors import Rejection
from iotjobs.domain.execution import ForgetExecution, RecordExecutionStatus

T0 = 1_700_000_000.0
CTX = Context(now=T0 + 10)
THING = "t1"


def thing_given(*events: Any) -> t.ThingState:
    return t.fold(t.initial(f"thing/{THING}"), events)


def queued(job_id: str, seq: int = 0, n: int = 1) -> t.ExecutionQueued:
    return t.ExecutionQueued(THING, job_id, n, seq, T0, "{}")


def moved(job_id: str, status: str, version: int, n: int = 1) -> t.ExecutionUpdated:
    return t.ExecutionUpdated(THING, job_id, n, status, {}, version, T0, T0, None, None, "update")


REGISTERED = t.ThingCreated(THING, "id")


def kind(decision: Decision) -> str:
    assert isinstance(decision.reply, Rejection), decision.reply
    return decision.reply.kind


# --- CancelJobExecution -------------------------------------------------------------------------


def test_cancel_a_queued_execution() -> None:
    state = thing_given(REGISTERED, queued("j1"))
    decision = t.decide(state, t.CancelExecution("j1", status_details={"why": "ops"}), CTX)
    assert decision.reply == Done()
    (event,) = decision.events
    assert (event.status, event.version_number, event.status_details, event.force_canceled) == (
        "CANCELED",
        2,
        {"why": "ops"},
        False,
    )
    assert Send("job/j1", RecordExecutionStatus("j1", THING, 1, "CANCELED")) in decision.sends
    assert t.NotifyNext(THING, None) in decision.effects


def test_cancel_in_progress_needs_force() -> None:
    state = thing_given(REGISTERED, queued("j1"), moved("j1", "IN_PROGRESS", 2))
    assert kind(t.decide(state, t.CancelExecution("j1"), CTX)) == "InvalidStateTransition"
    forced = t.decide(state, t.CancelExecution("j1", force=True), CTX)
    assert forced.reply == Done() and forced.events[0].force_canceled is True
    assert t.fold(state, forced.events).executions["j1"].force_canceled is True


@pytest.mark.parametrize("status", ["SUCCEEDED", "FAILED", "REJECTED", "TIMED_OUT", "CANCELED", "REMOVED"])
def test_cancel_of_a_terminal_execution_is_an_invalid_transition_even_with_force(status: str) -> None:
    state = thing_given(REGISTERED, queued("j1"), moved("j1", status, 2))
    assert kind(t.decide(state, t.CancelExecution("j1", force=True), CTX)) == "InvalidStateTransition"


def test_cancel_checks_expected_version_and_existence() -> None:
    state = thing_given(REGISTERED, queued("j1"))
    assert kind(t.decide(state, t.CancelExecution("j1", expected_version=5), CTX)) == "VersionConflict"
    assert kind(t.decide(state, t.CancelExecution("nope"), CTX)) == "ResourceNotFound"
    assert kind(t.decide(state, t.CancelExecution("j1", status_details={"bad key": "v"}), CTX)) == "InvalidRequest"


def test_cancel_fanned_out_by_the_job_spares_in_progress_unless_forced_and_never_replies() -> None:
    state = thing_given(REGISTERED, queued("j1"), moved("j1", "IN_PROGRESS", 2))
    assert t.decide(state, t.CancelExecution("j1", from_job=True), CTX) == Decision()
    forced = t.decide(state, t.CancelExecution("j1", force=True, from_job=True), CTX)
    assert forced.reply is None and forced.events[0].status == "CANCELED"
    done = thing_given(REGISTERED, queued("j1"), moved("j1", "SUCCEEDED", 2))
    assert t.decide(done, t.CancelExecution("j1", force=True, from_job=True), CTX) == Decision()


# --- DeleteJobExecution -------------------------------------------------------------------------


def test_delete_a_terminal_execution_and_numbers_are_never_reused() -> None:
    state = thing_given(REGISTERED, queued("j1"), moved("j1", "FAILED", 2))
    decision = t.decide(state, t.DeleteExecution("j1", execution_number=1), CTX)
    assert decision.reply == Done()
    assert decision.events == (t.ExecutionDeleted(THING, "j1", 1, CTX.now),)
    assert decision.sends == (Send("job/j1", ForgetExecution("j1", THING, 1)),)
    after = t.fold(state, decision.events)
    assert "j1" not in after.executions
    again = t.decide(after, t.QueueExecution("j1", "{}"), CTX)
    assert again.events[0].execution_number == 2


def test_delete_needs_the_exact_number_and_force_for_a_pending_execution() -> None:
    state = thing_given(REGISTERED, queued("j1"))
    assert kind(t.decide(state, t.DeleteExecution("j1", execution_number=2), CTX)) == "ResourceNotFound"
    assert kind(t.decide(state, t.DeleteExecution("j1", execution_number=1), CTX)) == "InvalidStateTransition"
    forced = t.decide(state, t.DeleteExecution("j1", execution_number=1, force=True), CTX)
    assert forced.events == (t.ExecutionDeleted(THING, "j1", 1, CTX.now),)
    assert t.NotifyPending(THING, []) in forced.effects and t.NotifyNext(THING, None) in forced.effects


def test_delete_fanned_out_by_the_job_removes_whatever_execution_there_is() -> None:
    state = thing_given(REGISTERED, queued("j1"), moved("j1", "IN_PROGRESS", 2))
    decision = t.decide(state, t.DeleteExecution("j1", force=True, from_job=True), CTX)
    assert decision.reply is None and decision.events == (t.ExecutionDeleted(THING, "j1", 1, CTX.now),)
    assert t.decide(thing_given(REGISTERED), t.DeleteExecution("j1", force=True, from_job=True), CTX) == Decision()


# --- the job: UpdateJob, CancelJob, DeleteJob ----------------------------------------------------

SPEC = j.JobSpec(targets=["arn"], document="{}", description="d").__dict__


def job_given(*events: Any) -> j.JobState:
    """The job after `events`, each JobCreated's things released at once (no rollout rate)."""
    state = j.initial("job/j1")
    for event in events:
        state = j.evolve(state, event)
        if isinstance(event, j.JobCreated):
            state = j.evolve(state, j.JobRolledOut("j1", len(event.things), event.created_at, event.created_at + 60))
            state = j.fold(state, j.decide(state, j.RolloutTick("j1"), CTX).events)  # what it still rolls out
    return state


CREATED = j.JobCreated("j1", SPEC, ["a", "b"], T0)


def test_update_job_changes_the_spec() -> None:
    decision = j.decide(job_given(CREATED), j.UpdateJob("j1", {"description": "new"}), CTX)
    assert decision.reply == Done()
    assert j.evolve(job_given(CREATED), decision.events[0]).spec["description"] == "new"
    assert kind(j.decide(job_given(), j.UpdateJob("j1", {}), CTX)) == "ResourceNotFound"


def test_cancel_job_cancels_pending_executions_through_their_things() -> None:
    state = job_given(CREATED, j.JobExecutionRecorded("j1", "b", 1, "SUCCEEDED", T0))
    decision = j.decide(state, j.CancelJob("j1", force=False, reason_code="OPS", comment="c"), CTX)
    assert decision.events == (j.JobCanceled("j1", False, "OPS", "c", CTX.now),)
    assert decision.sends == (Send("thing/a", t.CancelExecution("j1", force=False, from_job=True)),)
    after = j.evolve(state, decision.events[0])
    assert (after.status, after.reason_code, after.force_canceled) == ("CANCELED", "OPS", False)
    # a second, forced cancel reaches IN_PROGRESS executions too; a third changes nothing
    forced = j.decide(after, j.CancelJob("j1", force=True), CTX)
    assert forced.sends == (Send("thing/a", t.CancelExecution("j1", force=True, from_job=True)),)
    final = j.evolve(after, forced.events[0])
    assert final.force_canceled and final.reason_code == "OPS"
    assert j.decide(final, j.CancelJob("j1", force=True), CTX).events == ()


def test_cancel_of_a_completed_job_is_refused() -> None:
    state = job_given(CREATED, j.JobCompleted("j1", T0))
    assert kind(j.decide(state, j.CancelJob("j1"), CTX)) == "InvalidRequest"


def test_delete_job_needs_force_unless_the_job_has_ended_and_waits_for_its_executions() -> None:
    state = job_given(CREATED)
    assert kind(j.decide(state, j.DeleteJob("j1"), CTX)) == "InvalidStateTransition"
    decision = j.decide(state, j.DeleteJob("j1", force=True), CTX)
    assert decision.events == (j.JobDeletionStarted("j1", CTX.now),)
    assert {s.key for s in decision.sends} == {"thing/a", "thing/b"}
    deleting = j.evolve(state, decision.events[0])
    assert kind(j.decide(deleting, j.DeleteJob("j1", force=True), CTX)) == "InvalidStateTransition"
    assert kind(j.decide(deleting, j.CancelJob("j1"), CTX)) == "InvalidRequest"
    one = j.decide(deleting, ForgetExecution("j1", "a", 1), CTX)
    assert one.events == (j.JobExecutionForgotten("j1", "a", CTX.now),)
    last = j.decide(j.evolve(deleting, one.events[0]), ForgetExecution("j1", "b", 1), CTX)
    assert last.events[-1] == j.JobDeleted("j1", CTX.now)
    gone = job_given(CREATED, decision.events[0], *one.events, *last.events)
    assert not gone.exists
    assert j.decide(gone, j.CreateJob("j1", SPEC, []), CTX).events[0].job_id == "j1"  # the id is free again


def test_forgetting_the_last_pending_execution_completes_a_snapshot_job() -> None:
    state = job_given(CREATED, j.JobExecutionRecorded("j1", "b", 1, "SUCCEEDED", T0))
    decision = j.decide(state, ForgetExecution("j1", "a", 1), CTX)
    assert decision.events[-1] == j.JobCompleted("j1", CTX.now)


def test_a_deleted_job_makes_its_target_groups_forget_it() -> None:
    forget = Send("group/g", targets.ForgetJob("g", "j1"))
    on_group = {**SPEC, "targets": ["arn:aws:iot:r:123456789012:thinggroup/g"]}
    ended = job_given(j.JobCreated("j1", on_group, [], T0), j.JobCompleted("j1", T0))
    assert forget in j.decide(ended, j.DeleteJob("j1"), CTX).sends
    created = j.JobCreated("j1", on_group, ["a", "b"], T0)
    deleting = job_given(created, j.JobDeletionStarted("j1", T0), j.JobExecutionForgotten("j1", "a", T0))
    assert forget in j.decide(deleting, ForgetExecution("j1", "b", 1), CTX).sends

    known = group.evolve(group.initial("group/g"), group.ThingGroupCreated("g", "gid", None, None, {}, T0, [], ["j1"]))
    dropped = group.decide(known, forget.command, CTX)
    assert dropped.events == (group.GroupJobRemoved("g", "j1"),) and dropped.sends == ()


RETRY = {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 3}]}


def _with_retry() -> j.JobState:
    spec = {**SPEC, "config": {"jobExecutionsRetryConfig": RETRY, "abortConfig": {"criteriaList": []}}}
    return job_given(j.JobCreated("j1", spec, ["a"], T0))


@pytest.mark.parametrize(
    ("retries", "failure_type", "accepted"),
    [(0, "FAILED", True), (3, "FAILED", True), (2, "FAILED", False), (5, "FAILED", False), (0, "ALL", False)],
)
def test_update_job_may_only_lower_retries_to_zero(retries: int, failure_type: str, accepted: bool) -> None:
    wanted = {"criteriaList": [{"failureType": failure_type, "numberOfRetries": retries}]}
    decision = j.decide(_with_retry(), j.UpdateJob("j1", {"config": {"jobExecutionsRetryConfig": wanted}}), CTX)
    assert (decision.reply == Done()) is accepted
    if not accepted:
        assert kind(decision) == "InvalidRequest"


def test_update_job_replaces_only_the_blocks_it_names() -> None:
    rollout = {"maximumPerMinute": 9}
    decision = j.decide(_with_retry(), j.UpdateJob("j1", {"config": {"jobExecutionsRolloutConfig": rollout}}), CTX)
    config = j.evolve(_with_retry(), decision.events[0]).spec["config"]
    assert config == {
        "jobExecutionsRetryConfig": RETRY,
        "abortConfig": {"criteriaList": []},
        "jobExecutionsRolloutConfig": rollout,
    }


# --- CONTINUOUS jobs and AssociateTargetsWithJob ----------------------------------------------------

CONT_SPEC = j.JobSpec(targets=["arn:aws:iot:r:123456789012:thinggroup/g"], document="{}", target_selection="CONTINUOUS")
CONT = j.JobCreated("j1", CONT_SPEC.__dict__, ["a"], T0)


def test_a_continuous_job_releases_to_joiners_without_a_pending_execution() -> None:
    state = job_given(CONT, j.JobExecutionRecorded("j1", "a", 1, "SUCCEEDED", T0))
    decision = j.decide(state, targets.AddThingsToJob("j1", ["a", "b"]), CTX)
    assert decision.events == (j.JobExecutionAdded("j1", "a", CTX.now), j.JobExecutionAdded("j1", "b", CTX.now))
    assert {s.key for s in decision.sends} == {"thing/a", "thing/b"}
    busy = job_given(CONT)
    asked = j.decide(busy, targets.AddThingsToJob("j1", ["a"]), CTX)
    assert asked.events == (), "the job counts a's pending execution already"
    assert [(s.key, s.command.counted) for s in asked.sends] == [("thing/a", False)], "a is asked, uncounted"
    snapshot = job_given(CREATED)
    assert j.decide(snapshot, targets.AddThingsToJob("j1", ["c"]), CTX) == Decision()


def test_a_continuous_job_never_completes_on_its_own() -> None:
    decision = j.decide(job_given(CONT), RecordExecutionStatus("j1", "a", 1, "SUCCEEDED"), CTX)
    assert [type(e) for e in decision.events] == [j.JobExecutionRecorded]


def test_associate_targets_adds_new_targets_and_releases_to_their_things() -> None:
    new = "arn:aws:iot:r:123456789012:thing/b"
    decision = j.decide(job_given(CONT), j.AssociateTargets("j1", [new, CONT_SPEC.targets[0]], ["b"]), CTX)
    assert decision.events[0] == j.JobTargetsAssociated("j1", [new], None, CTX.now, ["b"])
    assert decision.events[1] == j.JobRolledOut("j1", 1, CTX.now, CTX.now + 61)
    assert [s.key for s in decision.sends if isinstance(s.command, t.QueueExecution)] == ["thing/b"]
    assert not any(isinstance(send.command, targets.TargetGroup) for send in decision.sends), "g is known"
    assert kind(j.decide(job_given(CREATED), j.AssociateTargets("j1", [new], ["b"]), CTX)) == "InvalidRequest"
    too_many = [f"arn:aws:iot:r:123456789012:thing/t{i}" for i in range(100)]
    assert kind(j.decide(job_given(CONT), j.AssociateTargets("j1", too_many, []), CTX)) == "InvalidRequest"


def test_a_group_tells_the_continuous_jobs_it_follows_about_joiners() -> None:
    state = group.evolve(
        group.initial("group/g"), group.ThingGroupCreated("g", "gid", None, None, {}, T0, [], ["cont"])
    )
    decision = group.decide(state, targets.MemberJoined("g", "t"), CTX)
    assert decision.sends == (Send("job/cont", targets.AddThingsToJob("cont", ["t"], "g")),)


# --- QoS 1 redelivery ---------------------------------------------------------------------------


def test_a_redelivered_update_is_answered_again_not_applied_twice() -> None:
    state = thing_given(REGISTERED, queued("j1"))
    request = t.UpdateExecution("j1", "IN_PROGRESS", include_state=True, client_token="tok")
    after = t.fold(state, t.decide(state, request, CTX).events)
    again = t.decide(after, request, CTX)
    assert again.events == () and again.sends == () and again.effects == ()
    assert again.reply.execution["version_number"] == 2 and again.reply.include_state


def test_a_reused_token_with_other_contents_is_a_new_request() -> None:
    state = thing_given(REGISTERED, queued("j1"))
    after = t.fold(state, t.decide(state, t.UpdateExecution("j1", "IN_PROGRESS", client_token="tok"), CTX).events)
    other = t.decide(after, t.UpdateExecution("j1", "SUCCEEDED", client_token="tok"), CTX)
    assert [(e.status, e.version_number) for e in other.events] == [("SUCCEEDED", 3)]


def test_a_redelivered_start_next_returns_the_execution_it_started_until_that_changes() -> None:
    state = thing_given(REGISTERED, queued("j1"), queued("j2", seq=1))
    after = t.fold(state, t.decide(state, t.StartNext(client_token="s1"), CTX).events)
    again = t.decide(after, t.StartNext(client_token="s1"), CTX)
    assert again.events == () and again.reply.execution["job_id"] == "j1"
    finished = t.fold(after, t.decide(after, t.UpdateExecution("j1", "SUCCEEDED"), CTX).events)
    later = t.decide(finished, t.StartNext(client_token="s1"), CTX)
    assert [e.job_id for e in later.events] == ["j2"]  # a token reused later starts the next job


def test_only_the_latest_tokens_are_remembered() -> None:
    state = thing_given(REGISTERED, queued("j1"))
    for i in range(t.APPLIED_TOKENS + 5):
        state = t.fold(state, t.decide(state, t.UpdateExecution("j1", "IN_PROGRESS", client_token=f"k{i}"), CTX).events)
    assert len(state.applied_tokens) == t.APPLIED_TOKENS and "k0" not in state.applied_tokens
    assert t.ThingState.from_dict(state.to_dict()) == state


# --- namespaces ---------------------------------------------------------------------------------


def ns_queued(job_id: str, seq: int, namespace: str | None) -> t.ExecutionQueued:
    return t.ExecutionQueued(THING, job_id, 1, seq, T0, "{}", namespace_id=namespace)


def test_namespaced_jobs_get_their_own_notifications_besides_the_shared_ones() -> None:
    state = thing_given(REGISTERED, ns_queued("plain", 0, None))
    decision = t.decide(state, t.QueueExecution("gg", "{}", namespace_id="ns1"), CTX)
    topics = {(type(e).__name__, e.namespace_id) for e in decision.effects}
    # the shared queue's head is still `plain`, so only the shared notify fires there; ns1 has a new head
    assert topics == {("NotifyPending", None), ("NotifyPending", "ns1"), ("NotifyNext", "ns1")}
    nxt = next(e for e in decision.effects if isinstance(e, t.NotifyNext))
    assert nxt.execution["job_id"] == "gg"


def test_namespaced_requests_see_only_their_namespace() -> None:
    state = thing_given(REGISTERED, ns_queued("plain", 0, None), ns_queued("gg", 1, "ns1"))
    described = t.decide(state, t.DescribeExecution("$next", namespace_id="ns1"), CTX)
    assert described.reply.execution["job_id"] == "gg"
    assert t.decide(state, t.DescribeExecution("$next"), CTX).reply.execution["job_id"] == "plain"
    assert (
        kind(t.decide(state, t.UpdateExecution("plain", "IN_PROGRESS", namespace_id="ns1"), CTX)) == "ResourceNotFound"
    )
    assert t.decide(state, t.UpdateExecution("gg", "IN_PROGRESS", namespace_id="ns1"), CTX).events


def test_per_namespace_queues_keep_namespaced_jobs_off_the_plain_topics() -> None:
    state = thing_given(REGISTERED, ns_queued("gg", 0, "ns1"), ns_queued("plain", 1, None))
    separate = Context(now=T0 + 10, per_namespace_queues=True)
    assert t.decide(state, t.DescribeExecution("$next"), separate).reply.execution["job_id"] == "plain"
    assert t.decide(state, t.DescribeExecution("$next"), CTX).reply.execution["job_id"] == "gg"
    pending = t.decide(state, t.GetPending(), separate).reply
    assert [e["job_id"] for e in pending.queued] == ["plain"]
    started = t.decide(state, t.StartNext(), separate)
    assert started.events[0].job_id == "plain"
    queued = t.decide(thing_given(REGISTERED), t.QueueExecution("gg2", "{}", namespace_id="ns1"), separate)
    assert {(type(e).__name__, e.namespace_id) for e in queued.effects} == {
        ("NotifyPending", "ns1"),
        ("NotifyNext", "ns1"),
    }


def test_settings_refuse_unknown_choices() -> None:
    from iotjobs.runtime.settings import Settings

    with pytest.raises(ValueError, match="IOTJOBS_NAMESPACE_QUEUES must be one of shared, per-namespace"):
        Settings.from_env({"IOTJOBS_NAMESPACE_QUEUES": "separate"})
    with pytest.raises(ValueError, match="IOTJOBS_MQTT_INGRESS"):
        Settings.from_env({"IOTJOBS_MQTT_INGRESS": "bridged"})


def test_a_continuous_job_is_followed_by_its_group_and_a_snapshot_job_is_not() -> None:
    state = group.evolve(group.initial("group/g"), group.ThingGroupCreated("g", "gid", None, None, {}, T0))
    kept = group.decide(state, targets.TargetGroup("g", "cont", "r", True, "g"), CTX)
    assert kept.events == (group.GroupJobAdded("g", "cont"),)
    assert group.decide(state, targets.TargetGroup("g", "snap", "r", False, "g"), CTX).events == ()
