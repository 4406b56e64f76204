"""Behaviour spec of the thing aggregate (`thing/{name}`): every job execution of one thing.

Each test reads: given these past events, when this command, then these new events, this reply,
these sends to other aggregates and these effects (notify / notify-next).
References: aws-iot-jobs.md §6.2 (state machine), §6.3 (versions), §6.4 (timeouts), §8 (notifications).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import orjson
import pytest

from iotjobs.domain import thing as t
from iotjobs.domain.decision import Context, Decision, Done, Send, Timer
from iotjobs.domain.errors import Rejection
from iotjobs.domain.execution import (
    ALL_STATUSES,
    CANCELED,
    DEVICE_SETTABLE,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    REJECTED,
    REMOVED,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    Execution,
    ForgetExecution,
    RecordExecutionStatus,
)
from iotjobs.domain.targets import CheckReach, MemberJoined, MemberLeft

THING = "t1"
THING_ID = "id-t1"
DOC = '{"operation":"install","version":"1.2"}'
T0 = 1_700_000_000.0
MIN = 60.0  # seconds per minute used by CTX

INVALID_REQUEST = "InvalidRequest"
SERVICE_SIDE = "service-side status"
NOT_FOUND = "ResourceNotFound"
VERSION_MISMATCH = "VersionMismatch"
INVALID_TRANSITION = "InvalidStateTransition"
TERMINAL_STATE = "TerminalState"

# --- given / when helpers ---------------------------------------------------------------------


def given(*events: Any) -> t.ThingState:
    return t.fold(t.initial(f"thing/{THING}"), events)


def when(state: t.ThingState, command: Any, now: float = T0, seconds_per_minute: float = MIN) -> Decision:
    return t.decide(state, command, Context(now=now, seconds_per_minute=seconds_per_minute))


def registered() -> t.ThingCreated:
    return t.ThingCreated(THING, THING_ID)


def queued(
    job_id: str, seq: int, *, at: float = T0, n: int = 1, timeout: int | None = None, doc: str = DOC
) -> t.ExecutionQueued:
    return t.ExecutionQueued(
        thing_name=THING,
        job_id=job_id,
        execution_number=n,
        seq=seq,
        queued_at=at,
        document=doc,
        in_progress_timeout_minutes=timeout,
    )


def updated(
    job_id: str,
    status: str,
    version: int,
    *,
    at: float = T0,
    n: int = 1,
    details: dict[str, str] | None = None,
    started_at: float | None = None,
    in_progress_deadline: float | None = None,
    step_deadline: float | None = None,
    cause: str = "update",
) -> t.ExecutionUpdated:
    return t.ExecutionUpdated(
        thing_name=THING,
        job_id=job_id,
        execution_number=n,
        status=status,
        status_details=dict(details or {}),
        version_number=version,
        last_updated_at=at,
        started_at=started_at,
        in_progress_deadline=in_progress_deadline,
        step_deadline=step_deadline,
        cause=cause,
    )


def execution(
    job_id: str,
    seq: int,
    *,
    status: str = QUEUED,
    version: int = 1,
    n: int = 1,
    queued_at: float = T0,
    updated_at: float | None = None,
    started_at: float | None = None,
    details: dict[str, str] | None = None,
    timeout: int | None = None,
    in_progress_deadline: float | None = None,
    step_deadline: float | None = None,
) -> dict[str, Any]:
    """The expected Execution, as the dict that replies and notifications carry."""
    return Execution(
        job_id=job_id,
        thing_name=THING,
        execution_number=n,
        status=status,
        queued_at=queued_at,
        last_updated_at=queued_at if updated_at is None else updated_at,
        version_number=version,
        seq=seq,
        document=DOC,
        in_progress_timeout_minutes=timeout,
        status_details=dict(details or {}),
        started_at=started_at,
        in_progress_deadline=in_progress_deadline,
        step_deadline=step_deadline,
    ).to_dict()


def report(job_id: str, status: str, n: int = 1) -> Send:
    return Send(f"job/{job_id}", RecordExecutionStatus(job_id, THING, n, status))


def rejected(decision: Decision, kind: str) -> Rejection:
    """Assert the decision is a pure rejection of `kind` (nothing happened) and return it."""
    assert isinstance(decision.reply, Rejection), decision.reply
    assert decision.reply.kind == kind, decision.reply
    assert decision.events == ()
    assert decision.sends == ()
    assert decision.effects == ()
    return decision.reply


def state_of(status: str, version: int, details: dict[str, str]) -> dict[str, Any]:
    return {"executionState": {"status": status, "statusDetails": details, "versionNumber": version}}


# --- the execution state machine: every current status x every requested status ----------------

DETAILS = {"step": "download"}
STARTED = T0 + 10
NOW = T0 + 100

# Past events that leave j1 in each status, with the versionNumber it then has.
HISTORIES: dict[str, tuple[tuple[Any, ...], int]] = {
    QUEUED: ((registered(), queued("j1", 0)), 1),
    IN_PROGRESS: (
        (
            registered(),
            queued("j1", 0),
            updated("j1", IN_PROGRESS, 2, at=STARTED, started_at=STARTED, details=DETAILS),
        ),
        2,
    ),
}
for _terminal in (SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED, REMOVED):
    HISTORIES[_terminal] = (
        (
            registered(),
            queued("j1", 0),
            updated("j1", IN_PROGRESS, 2, at=STARTED, started_at=STARTED, details=DETAILS),
            updated("j1", _terminal, 3, at=STARTED + 1, started_at=STARTED, details=DETAILS),
        ),
        3,
    )

OK = "accepted"
# fmt: off
TRANSITIONS = [
    # current       requested       outcome
    (QUEUED,        QUEUED,         SERVICE_SIDE),
    (QUEUED,        IN_PROGRESS,    OK),
    (QUEUED,        SUCCEEDED,      OK),
    (QUEUED,        FAILED,         OK),
    (QUEUED,        REJECTED,       OK),
    (QUEUED,        TIMED_OUT,      SERVICE_SIDE),
    (QUEUED,        CANCELED,       SERVICE_SIDE),
    (QUEUED,        REMOVED,        SERVICE_SIDE),
    (QUEUED,        "DONE",         INVALID_REQUEST),
    (IN_PROGRESS,   QUEUED,         SERVICE_SIDE),
    (IN_PROGRESS,   IN_PROGRESS,    OK),
    (IN_PROGRESS,   SUCCEEDED,      OK),
    (IN_PROGRESS,   FAILED,         OK),
    (IN_PROGRESS,   REJECTED,       OK),
    (IN_PROGRESS,   TIMED_OUT,      SERVICE_SIDE),
    (IN_PROGRESS,   CANCELED,       SERVICE_SIDE),
    (IN_PROGRESS,   REMOVED,        SERVICE_SIDE),
    (IN_PROGRESS,   "DONE",         INVALID_REQUEST),
    (SUCCEEDED,     QUEUED,         SERVICE_SIDE),
    (SUCCEEDED,     IN_PROGRESS,    INVALID_TRANSITION),
    (SUCCEEDED,     SUCCEEDED,      INVALID_TRANSITION),
    (SUCCEEDED,     FAILED,         INVALID_TRANSITION),
    (SUCCEEDED,     REJECTED,       INVALID_TRANSITION),
    (SUCCEEDED,     TIMED_OUT,      SERVICE_SIDE),
    (SUCCEEDED,     CANCELED,       SERVICE_SIDE),
    (SUCCEEDED,     REMOVED,        SERVICE_SIDE),
    (SUCCEEDED,     "DONE",         INVALID_REQUEST),
    (FAILED,        QUEUED,         SERVICE_SIDE),
    (FAILED,        IN_PROGRESS,    INVALID_TRANSITION),
    (FAILED,        SUCCEEDED,      INVALID_TRANSITION),
    (FAILED,        FAILED,         INVALID_TRANSITION),
    (FAILED,        REJECTED,       INVALID_TRANSITION),
    (FAILED,        TIMED_OUT,      SERVICE_SIDE),
    (FAILED,        CANCELED,       SERVICE_SIDE),
    (FAILED,        REMOVED,        SERVICE_SIDE),
    (FAILED,        "DONE",         INVALID_REQUEST),
    (REJECTED,      QUEUED,         SERVICE_SIDE),
    (REJECTED,      IN_PROGRESS,    INVALID_TRANSITION),
    (REJECTED,      SUCCEEDED,      INVALID_TRANSITION),
    (REJECTED,      FAILED,         INVALID_TRANSITION),
    (REJECTED,      REJECTED,       INVALID_TRANSITION),
    (REJECTED,      TIMED_OUT,      SERVICE_SIDE),
    (REJECTED,      CANCELED,       SERVICE_SIDE),
    (REJECTED,      REMOVED,        SERVICE_SIDE),
    (REJECTED,      "DONE",         INVALID_REQUEST),
    (TIMED_OUT,     QUEUED,         SERVICE_SIDE),
    (TIMED_OUT,     IN_PROGRESS,    INVALID_TRANSITION),
    (TIMED_OUT,     SUCCEEDED,      INVALID_TRANSITION),
    (TIMED_OUT,     FAILED,         INVALID_TRANSITION),
    (TIMED_OUT,     REJECTED,       INVALID_TRANSITION),
    (TIMED_OUT,     TIMED_OUT,      SERVICE_SIDE),
    (TIMED_OUT,     CANCELED,       SERVICE_SIDE),
    (TIMED_OUT,     REMOVED,        SERVICE_SIDE),
    (TIMED_OUT,     "DONE",         INVALID_REQUEST),
    (CANCELED,      QUEUED,         SERVICE_SIDE),
    (CANCELED,      IN_PROGRESS,    INVALID_TRANSITION),
    (CANCELED,      SUCCEEDED,      INVALID_TRANSITION),
    (CANCELED,      FAILED,         INVALID_TRANSITION),
    (CANCELED,      REJECTED,       INVALID_TRANSITION),
    (CANCELED,      TIMED_OUT,      SERVICE_SIDE),
    (CANCELED,      CANCELED,       SERVICE_SIDE),
    (CANCELED,      REMOVED,        SERVICE_SIDE),
    (CANCELED,      "DONE",         INVALID_REQUEST),
    (REMOVED,       QUEUED,         SERVICE_SIDE),
    (REMOVED,       IN_PROGRESS,    INVALID_TRANSITION),
    (REMOVED,       SUCCEEDED,      INVALID_TRANSITION),
    (REMOVED,       FAILED,         INVALID_TRANSITION),
    (REMOVED,       REJECTED,       INVALID_TRANSITION),
    (REMOVED,       TIMED_OUT,      SERVICE_SIDE),
    (REMOVED,       CANCELED,       SERVICE_SIDE),
    (REMOVED,       REMOVED,        SERVICE_SIDE),
    (REMOVED,       "DONE",         INVALID_REQUEST),
]
# fmt: on


def test_the_transition_table_covers_every_current_and_requested_status() -> None:
    pairs = {(current, requested) for current, requested, _ in TRANSITIONS}
    assert len(pairs) == len(TRANSITIONS) == 8 * 9
    assert pairs == {(c, r) for c in ALL_STATUSES for r in (*ALL_STATUSES, "DONE")}
    assert set(HISTORIES) == set(ALL_STATUSES)


@pytest.mark.parametrize("current", ALL_STATUSES)
def test_histories_build_the_intended_current_state(current: str) -> None:
    events, version = HISTORIES[current]
    execution_ = given(*events).executions["j1"]
    assert (execution_.status, execution_.version_number) == (current, version)


@pytest.mark.parametrize(("current", "requested", "outcome"), TRANSITIONS)
def test_update_execution_state_machine(current: str, requested: str, outcome: str) -> None:
    events, version = HISTORIES[current]
    state = given(*events)
    before = state.executions["j1"]

    decision = when(state, t.UpdateExecution("j1", requested), now=NOW)

    if outcome == SERVICE_SIDE:  # as AWS answers, before it looks the execution up
        rejection = rejected(decision, INVALID_TRANSITION)
        assert rejection.message == f"The status of job execution cannot be changed to be {requested}"
        assert rejection.detail == {}
        return
    if outcome == INVALID_REQUEST:
        rejection = rejected(decision, INVALID_REQUEST)
        assert rejection.message == (
            f"status '{requested}' cannot be set by a device; use one of IN_PROGRESS, SUCCEEDED, FAILED, REJECTED"
        )
        assert rejection.detail == {}
        return
    if outcome == INVALID_TRANSITION:
        rejection = rejected(decision, INVALID_TRANSITION)
        assert rejection.detail == state_of(current, version, before.status_details)
        assert rejection.message == (
            f"Job execution j1 on thing t1 is already {current} and cannot move to {requested}"
        )
        return

    assert outcome == OK
    started_at = NOW if (current, requested) == (QUEUED, IN_PROGRESS) else before.started_at
    expected_event = updated(
        "j1",
        requested,
        version + 1,
        at=NOW,
        details=before.status_details,
        started_at=started_at,
    )
    assert decision.events == (expected_event,)
    after = execution(
        "j1",
        0,
        status=requested,
        version=version + 1,
        updated_at=NOW,
        started_at=started_at,
        details=before.status_details,
    )
    assert decision.reply == t.UpdateReply(after, include_state=False, include_document=False)
    if requested == current:
        assert decision.sends == ()
    else:
        assert decision.sends == (report("j1", requested),)
    if requested in TERMINAL:
        # j1 was the whole pending list and its head: the list is now empty.
        assert decision.effects == (t.NotifyPending(THING, []), t.NotifyNext(THING, None))
    else:
        assert decision.effects == ()
    assert t.fold(state, decision.events).executions["j1"].to_dict() == after


def test_only_four_statuses_are_device_settable() -> None:
    assert DEVICE_SETTABLE == (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED)
    assert frozenset(ALL_STATUSES) - frozenset(DEVICE_SETTABLE) == {QUEUED, TIMED_OUT, CANCELED, REMOVED}


# --- UpdateExecution: versions, execution numbers, existence --------------------------------------


IN_PROGRESS_J1 = (
    registered(),
    queued("j1", 0),
    updated("j1", IN_PROGRESS, 2, at=STARTED, started_at=STARTED, details=DETAILS),
)


def test_update_with_matching_expected_version_is_accepted() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", SUCCEEDED, expected_version=2), now=NOW)
    assert decision.events == (updated("j1", SUCCEEDED, 3, at=NOW, details=DETAILS, started_at=STARTED),)


@pytest.mark.parametrize("expected_version", [0, 1, 3, 99])
def test_update_with_other_expected_version_is_a_version_mismatch(expected_version: int) -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", SUCCEEDED, expected_version=expected_version))
    rejection = rejected(decision, VERSION_MISMATCH)
    assert rejection.detail == state_of(IN_PROGRESS, 2, DETAILS)
    assert rejection.message == (
        f"expectedVersion {expected_version} does not match the current versionNumber 2 of job execution j1 on thing t1"
    )


def test_version_mismatch_is_checked_before_the_terminal_check() -> None:
    state = given(*HISTORIES[SUCCEEDED][0])
    rejection = rejected(when(state, t.UpdateExecution("j1", FAILED, expected_version=1)), VERSION_MISMATCH)
    assert rejection.detail == state_of(SUCCEEDED, 3, DETAILS)


def test_terminal_execution_with_matching_expected_version_is_an_invalid_transition() -> None:
    state = given(*HISTORIES[SUCCEEDED][0])
    rejection = rejected(when(state, t.UpdateExecution("j1", FAILED, expected_version=3)), INVALID_TRANSITION)
    assert rejection.detail == state_of(SUCCEEDED, 3, DETAILS)


def test_update_with_the_current_execution_number_is_accepted() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", SUCCEEDED, execution_number=1))
    assert [e.version_number for e in decision.events] == [3]


@pytest.mark.parametrize("execution_number", [0, 2, 1234567890])
def test_update_with_another_execution_number_is_not_found(execution_number: int) -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", SUCCEEDED, execution_number=execution_number))
    rejection = rejected(decision, NOT_FOUND)
    assert rejection.message == f"Job execution {execution_number} of job j1 on thing t1 does not exist"
    assert rejection.detail == {}


def test_execution_number_mismatch_wins_over_version_mismatch() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", SUCCEEDED, expected_version=7, execution_number=2))
    rejected(decision, NOT_FOUND)


def test_update_of_an_unknown_job_is_not_found() -> None:
    rejection = rejected(when(given(*IN_PROGRESS_J1), t.UpdateExecution("j9", SUCCEEDED)), NOT_FOUND)
    assert rejection.message == "Job execution for job j9 on thing t1 does not exist"


def test_update_on_an_unregistered_thing_is_not_found() -> None:
    rejection = rejected(when(given(), t.UpdateExecution("j1", SUCCEEDED)), NOT_FOUND)
    assert rejection.message == "Thing t1 does not exist"


@pytest.mark.parametrize("job_id", ["", "$next", "a b", "a:b", "j" * 65, "jöb"])
def test_update_with_a_malformed_job_id_is_an_invalid_request(job_id: str) -> None:
    rejected(when(given(*IN_PROGRESS_J1), t.UpdateExecution(job_id, SUCCEEDED)), INVALID_REQUEST)


def test_request_validation_comes_before_existence_checks() -> None:
    # An unregistered thing and an unknown job still answer InvalidRequest for a bad request (§6.2 order).
    rejected(when(given(), t.UpdateExecution("j1", QUEUED)), INVALID_TRANSITION)
    rejected(when(given(), t.UpdateExecution("j1", "DONE")), INVALID_REQUEST)
    rejected(when(given(), t.UpdateExecution("j1", SUCCEEDED, status_details={"k": ""})), INVALID_REQUEST)
    rejected(when(given(registered()), t.UpdateExecution("j1", SUCCEEDED, step_timeout_minutes=0)), INVALID_REQUEST)
    rejected(when(given(), t.StartNext(status_details={"bad key": "v"})), INVALID_REQUEST)


# --- statusDetails ----------------------------------------------------------------------------

BAD_DETAILS = {
    "not a map": ["a", "b"],
    "11 pairs": {f"k{i}": "v" for i in range(11)},
    "empty key": {"": "v"},
    "key with space": {"a b": "v"},
    "key with slash": {"a/b": "v"},
    "key with dot": {"a.b": "v"},
    "non-ascii key": {"clé": "v"},
    "129-char key": {"k" * 129: "v"},
    "empty value": {"k": ""},
    "1025-char value": {"k": "v" * 1025},
    "newline in value": {"k": "a\nb"},
    "NUL in value": {"k": "a\x00b"},
    "format char in value": {"k": "a\u200bb"},
    "private use char in value": {"k": "\ue000"},
    "integer value": {"k": 5},
    "null value": {"k": None},
    "map value": {"k": {"nested": "x"}},
}

GOOD_DETAILS = {
    "10 pairs": {f"k{i}": "v" for i in range(10)},
    "128-char key": {"k" * 128: "v"},
    "1024-char value": {"k": "v" * 1024},
    "key charset": {"aZ09:_-": "v"},
    "unicode and spaces in value": {"k": "téléchargé 50 % ✓"},
    "empty map": {},
}


@pytest.mark.parametrize("details", BAD_DETAILS.values(), ids=BAD_DETAILS.keys())
def test_update_with_bad_status_details_is_an_invalid_request(details: Any) -> None:
    rejected(
        when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", IN_PROGRESS, status_details=details)), INVALID_REQUEST
    )


@pytest.mark.parametrize("details", BAD_DETAILS.values(), ids=BAD_DETAILS.keys())
def test_start_next_with_bad_status_details_is_an_invalid_request(details: Any) -> None:
    rejected(when(given(registered(), queued("j1", 0)), t.StartNext(status_details=details)), INVALID_REQUEST)


@pytest.mark.parametrize("details", GOOD_DETAILS.values(), ids=GOOD_DETAILS.keys())
def test_update_with_good_status_details_replaces_the_map(details: dict[str, str]) -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", IN_PROGRESS, status_details=details), now=NOW)
    assert decision.events == (updated("j1", IN_PROGRESS, 3, at=NOW, details=details, started_at=STARTED),)


def test_update_without_status_details_keeps_the_map() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", SUCCEEDED), now=NOW)
    assert decision.events[0].status_details == DETAILS


def test_update_with_status_details_replaces_rather_than_merges() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", SUCCEEDED, status_details={"result": "ok"}))
    assert decision.events[0].status_details == {"result": "ok"}
    assert decision.reply.execution["status_details"] == {"result": "ok"}


# --- stepTimeoutInMinutes ---------------------------------------------------------------------


@pytest.mark.parametrize("minutes", [0, -2, -10080, 10081, True, False, "5", 1.5])
def test_bad_step_timeout_is_an_invalid_request(minutes: Any) -> None:
    rejected(
        when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", IN_PROGRESS, step_timeout_minutes=minutes)),
        INVALID_REQUEST,
    )
    rejected(when(given(registered(), queued("j1", 0)), t.StartNext(step_timeout_minutes=minutes)), INVALID_REQUEST)


@pytest.mark.parametrize(("minutes", "step_deadline"), [(1, NOW + 60), (10080, NOW + 10080 * 60), (-1, None)])
def test_good_step_timeout_sets_or_clears_the_step_timer(minutes: int, step_deadline: float | None) -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", IN_PROGRESS, step_timeout_minutes=minutes), now=NOW)
    assert decision.events == (
        updated("j1", IN_PROGRESS, 3, at=NOW, details=DETAILS, started_at=STARTED, step_deadline=step_deadline),
    )


# --- StartNext --------------------------------------------------------------------------------


def test_start_next_with_nothing_pending_replies_no_execution() -> None:
    state = given(registered(), queued("j1", 0), updated("j1", SUCCEEDED, 2))
    assert when(state, t.StartNext()) == Decision(reply=t.ExecutionReply(None))


def test_start_next_on_an_unregistered_thing_is_not_found() -> None:
    assert rejected(when(given(), t.StartNext()), NOT_FOUND).message == "Thing t1 does not exist"


def test_start_next_moves_the_queued_head_to_in_progress() -> None:
    state = given(registered(), queued("j1", 0), queued("j2", 1, at=T0 + 1))

    decision = when(state, t.StartNext(status_details={"step": "download"}), now=NOW)

    assert decision.events == (
        updated("j1", IN_PROGRESS, 2, at=NOW, details={"step": "download"}, started_at=NOW, cause="start-next"),
    )
    assert decision.reply == t.ExecutionReply(
        execution("j1", 0, status=IN_PROGRESS, version=2, updated_at=NOW, started_at=NOW, details={"step": "download"})
    )
    assert decision.reply.include_document is True
    assert decision.sends == (report("j1", IN_PROGRESS),)
    assert decision.effects == ()  # the head's identity did not change (§8)


def test_start_next_without_details_keeps_empty_details_and_sets_step_timer() -> None:
    state = given(registered(), queued("j1", 0, timeout=30))
    decision = when(state, t.StartNext(step_timeout_minutes=5), now=NOW)
    assert decision.events == (
        updated(
            "j1",
            IN_PROGRESS,
            2,
            at=NOW,
            started_at=NOW,
            in_progress_deadline=NOW + 30 * 60,
            step_deadline=NOW + 5 * 60,
            cause="start-next",
        ),
    )


def test_start_next_returns_an_in_progress_head_unchanged() -> None:
    state = given(*IN_PROGRESS_J1, queued("j2", 1))

    decision = when(state, t.StartNext(status_details={"other": "x"}, step_timeout_minutes=3), now=NOW)

    assert decision == Decision(
        reply=t.ExecutionReply(
            execution("j1", 0, status=IN_PROGRESS, version=2, updated_at=STARTED, started_at=STARTED, details=DETAILS)
        )
    )


def test_start_next_picks_the_oldest_queued_execution() -> None:
    state = given(registered(), queued("b", 0), queued("a", 1), queued("c", 2))
    assert [e.job_id for e in when(state, t.StartNext()).events] == ["b"]


# --- $next ordering and DescribeExecution -----------------------------------------------------


def test_pending_list_has_in_progress_first_then_queued_in_queue_order() -> None:
    state = given(
        registered(),
        queued("j1", 0),
        queued("j2", 1),
        queued("j3", 2),
        queued("j4", 3),
        updated("j4", IN_PROGRESS, 2, started_at=T0),
        updated("j2", IN_PROGRESS, 2, started_at=T0),
        updated("j3", SUCCEEDED, 2),
    )
    assert [e.job_id for e in state.pending()] == ["j2", "j4", "j1"]
    head = state.head()
    assert head is not None and head.job_id == "j2"


def test_describe_next_returns_the_head_and_changes_nothing() -> None:
    state = given(registered(), queued("j1", 0), queued("j2", 1), updated("j2", IN_PROGRESS, 2, started_at=T0))

    decision = when(state, t.DescribeExecution(t.NEXT))

    assert decision == Decision(
        reply=t.ExecutionReply(execution("j2", 1, status=IN_PROGRESS, version=2, started_at=T0), True)
    )


def test_describe_next_with_nothing_pending_replies_no_execution() -> None:
    assert when(given(registered()), t.DescribeExecution(t.NEXT)) == Decision(reply=t.ExecutionReply(None, True))


def test_describe_next_passes_include_document_through() -> None:
    decision = when(given(registered(), queued("j1", 0)), t.DescribeExecution(t.NEXT, include_document=False))
    assert decision.reply == t.ExecutionReply(execution("j1", 0), False)


def test_describe_a_pending_execution_by_job_id() -> None:
    state = given(registered(), queued("j1", 0), queued("j2", 1))
    assert when(state, t.DescribeExecution("j2", execution_number=1)) == Decision(
        reply=t.ExecutionReply(execution("j2", 1), True)
    )


@pytest.mark.parametrize("terminal", sorted(TERMINAL))
def test_describe_a_terminal_execution_is_terminal_state(terminal: str) -> None:
    state = given(*HISTORIES[terminal][0])
    rejection = rejected(when(state, t.DescribeExecution("j1")), TERMINAL_STATE)
    assert rejection.message == f"Job execution j1 on thing t1 is in terminal state {terminal}"


def test_describe_unknown_job_or_other_execution_number_is_not_found() -> None:
    state = given(registered(), queued("j1", 0))
    rejected(when(state, t.DescribeExecution("j2")), NOT_FOUND)
    rejected(when(state, t.DescribeExecution("j1", execution_number=2)), NOT_FOUND)
    rejected(when(given(), t.DescribeExecution("j1")), NOT_FOUND)
    rejected(when(given(), t.DescribeExecution(t.NEXT)), NOT_FOUND)


def test_describe_a_malformed_job_id_is_an_invalid_request() -> None:
    rejected(when(given(registered()), t.DescribeExecution("$nexT")), INVALID_REQUEST)


# --- GetPending -------------------------------------------------------------------------------


def test_get_pending_splits_in_progress_and_queued() -> None:
    state = given(
        registered(),
        queued("j1", 0),
        queued("j2", 1),
        queued("j3", 2),
        updated("j2", IN_PROGRESS, 2, started_at=T0),
        updated("j3", FAILED, 2),
    )
    assert when(state, t.GetPending()) == Decision(
        reply=t.PendingReply(
            in_progress=[execution("j2", 1, status=IN_PROGRESS, version=2, started_at=T0)],
            queued=[execution("j1", 0)],
        )
    )


def test_get_pending_caps_at_ten_executions() -> None:
    events: list[Any] = [registered()]
    events += [queued(f"j{i:02}", i) for i in range(12)]
    events.append(updated("j11", IN_PROGRESS, 2, started_at=T0))
    reply = when(given(*events), t.GetPending()).reply
    assert [e["job_id"] for e in reply.in_progress] == ["j11"]
    assert [e["job_id"] for e in reply.queued] == [f"j{i:02}" for i in range(9)]


def test_a_scheduled_job_among_the_pending_raises_the_cap_to_fifteen() -> None:
    events: list[Any] = [registered()]
    events += [queued(f"j{i:02}", i) for i in range(19)]
    events.append(t.ExecutionQueued(THING, "sched", 1, 19, T0, DOC, scheduled=True))
    state = given(*events)
    reply = when(state, t.GetPending()).reply
    assert [e["job_id"] for e in reply.queued] == [f"j{i:02}" for i in range(15)]
    notify = next(e for e in when(state, t.QueueExecution("late", DOC)).effects if isinstance(e, t.NotifyPending))
    assert len(notify.executions) == 15


def test_get_pending_with_nothing_pending_and_unregistered_thing() -> None:
    assert when(given(registered()), t.GetPending()) == Decision(reply=t.PendingReply([], []))
    rejected(when(given(), t.GetPending()), NOT_FOUND)


# --- timers -----------------------------------------------------------------------------------


def test_in_progress_deadline_is_start_plus_timeout_minutes() -> None:
    state = given(registered(), queued("j1", 0, timeout=5))
    decision = when(state, t.StartNext(), now=T0 + 10, seconds_per_minute=60.0)
    assert decision.events[0].in_progress_deadline == T0 + 10 + 300
    fast = when(state, t.StartNext(), now=T0 + 10, seconds_per_minute=1.0)
    assert fast.events[0].in_progress_deadline == T0 + 10 + 5


def test_in_progress_deadline_also_starts_on_update_to_in_progress() -> None:
    state = given(registered(), queued("j1", 0, timeout=5))
    decision = when(state, t.UpdateExecution("j1", IN_PROGRESS), now=NOW)
    assert decision.events[0].in_progress_deadline == NOW + 300
    assert decision.events[0].started_at == NOW


def test_no_in_progress_timeout_means_no_deadline() -> None:
    after = t.fold(
        given(registered(), queued("j1", 0)), when(given(registered(), queued("j1", 0)), t.StartNext()).events
    )
    assert after.executions["j1"].deadline is None
    assert t.timers(after) == []


def test_effective_deadline_is_the_earlier_of_in_progress_and_step_deadlines() -> None:
    # The doc example: a 20-minute in-progress timer started at 12:00 with 10-minute step timers set
    # at 12:05, 12:10 and 12:13 times out at 12:20.
    state = given(registered(), queued("j1", 0, timeout=20))
    state = t.fold(state, when(state, t.StartNext(), now=T0).events)
    for minute in (5, 10, 13):
        state = t.fold(
            state,
            when(state, t.UpdateExecution("j1", IN_PROGRESS, step_timeout_minutes=10), now=T0 + minute * 60).events,
        )
    j1 = state.executions["j1"]
    assert (j1.in_progress_deadline, j1.step_deadline, j1.deadline) == (T0 + 1200, T0 + 1380, T0 + 1200)
    assert t.timers(state) == [Timer(T0 + 1200, t.FireTimeout("j1", 1))]


def test_a_step_timer_alone_sets_the_deadline() -> None:
    state = given(*IN_PROGRESS_J1)
    state = t.fold(state, when(state, t.UpdateExecution("j1", IN_PROGRESS, step_timeout_minutes=2), now=NOW).events)
    assert state.executions["j1"].deadline == NOW + 120
    assert t.timers(state) == [Timer(NOW + 120, t.FireTimeout("j1", 1))]


def test_update_without_step_timeout_keeps_the_step_timer() -> None:
    state = given(registered(), queued("j1", 0), updated("j1", IN_PROGRESS, 2, started_at=T0, step_deadline=T0 + 600))
    decision = when(state, t.UpdateExecution("j1", IN_PROGRESS, status_details={"p": "50"}), now=NOW)
    assert decision.events[0].step_deadline == T0 + 600


def test_step_timeout_minus_one_clears_only_the_step_timer() -> None:
    state = given(
        registered(),
        queued("j1", 0, timeout=20),
        updated("j1", IN_PROGRESS, 2, started_at=T0, in_progress_deadline=T0 + 1200, step_deadline=T0 + 300),
    )
    decision = when(state, t.UpdateExecution("j1", IN_PROGRESS, step_timeout_minutes=-1), now=NOW)
    assert (decision.events[0].in_progress_deadline, decision.events[0].step_deadline) == (T0 + 1200, None)
    assert t.timers(t.fold(state, decision.events)) == [Timer(T0 + 1200, t.FireTimeout("j1", 1))]


def test_terminal_update_clears_the_deadlines() -> None:
    state = given(
        registered(),
        queued("j1", 0, timeout=20),
        updated("j1", IN_PROGRESS, 2, started_at=T0, in_progress_deadline=T0 + 1200, step_deadline=T0 + 300),
    )
    decision = when(state, t.UpdateExecution("j1", SUCCEEDED, step_timeout_minutes=5), now=NOW)
    assert (decision.events[0].in_progress_deadline, decision.events[0].step_deadline) == (None, None)
    assert t.timers(t.fold(state, decision.events)) == []


TIMING_J1 = (
    registered(),
    queued("j1", 0, timeout=20),
    updated(
        "j1",
        IN_PROGRESS,
        2,
        at=T0,
        started_at=T0,
        details=DETAILS,
        in_progress_deadline=T0 + 1200,
        step_deadline=T0 + 300,
    ),
    queued("j2", 1),
)


def test_an_update_after_the_deadline_times_the_execution_out_and_is_refused() -> None:
    decision = when(given(*TIMING_J1), t.UpdateExecution("j1", SUCCEEDED), now=T0 + 300)
    assert [(e.status, e.version_number, e.cause) for e in decision.events] == [(TIMED_OUT, 3, "timeout")]
    assert isinstance(decision.reply, Rejection)
    assert decision.reply.kind == INVALID_TRANSITION
    assert decision.reply.detail["executionState"] == {
        "status": TIMED_OUT,
        "statusDetails": DETAILS,
        "versionNumber": 3,
    }
    assert decision.sends == (Send("job/j1", RecordExecutionStatus("j1", THING, 1, TIMED_OUT)),)


def test_an_update_just_before_the_deadline_is_accepted() -> None:
    decision = when(given(*TIMING_J1), t.UpdateExecution("j1", SUCCEEDED), now=T0 + 299.9)
    assert [e.status for e in decision.events] == [SUCCEEDED]


def test_fire_timeout_before_the_deadline_does_nothing() -> None:
    assert when(given(*TIMING_J1), t.FireTimeout("j1", 1), now=T0 + 299.9) == Decision()


def test_fire_timeout_for_a_stale_execution_number_does_nothing() -> None:
    assert when(given(*TIMING_J1), t.FireTimeout("j1", 2), now=T0 + 5000) == Decision()
    assert when(given(*TIMING_J1), t.FireTimeout("j1", 0), now=T0 + 5000) == Decision()


def test_fire_timeout_for_queued_unknown_or_terminal_executions_does_nothing() -> None:
    assert when(given(*TIMING_J1), t.FireTimeout("j2", 1), now=T0 + 5000) == Decision()
    assert when(given(*TIMING_J1), t.FireTimeout("j9", 1), now=T0 + 5000) == Decision()
    assert when(given(*HISTORIES[SUCCEEDED][0]), t.FireTimeout("j1", 1), now=T0 + 5000) == Decision()
    assert when(given(*IN_PROGRESS_J1), t.FireTimeout("j1", 1), now=T0 + 5000) == Decision()  # no deadline


@pytest.mark.parametrize("now", [T0 + 300, T0 + 301, T0 + 5000])
def test_fire_timeout_at_or_after_the_deadline_times_the_execution_out(now: float) -> None:
    decision = when(given(*TIMING_J1), t.FireTimeout("j1", 1), now=now)

    assert decision.reply is None
    assert decision.events == (updated("j1", TIMED_OUT, 3, at=now, details=DETAILS, started_at=T0, cause="timeout"),)
    assert decision.sends == (report("j1", TIMED_OUT),)
    assert decision.effects == (
        t.NotifyPending(THING, [execution("j2", 1)]),
        t.NotifyNext(THING, execution("j2", 1)),
    )


def test_timers_list_only_in_progress_executions_with_deadlines() -> None:
    state = given(
        registered(),
        queued("a", 0, timeout=10),  # QUEUED: no timer yet
        queued("b", 1),
        updated("b", IN_PROGRESS, 2, started_at=T0),  # IN_PROGRESS without deadline
        queued("c", 2, timeout=10),
        updated("c", IN_PROGRESS, 2, started_at=T0, in_progress_deadline=T0 + 600),
        queued("d", 3, n=4),
        updated("d", IN_PROGRESS, 2, n=4, started_at=T0, step_deadline=T0 + 60),
        queued("e", 4, timeout=10),
        updated("e", TIMED_OUT, 2),
    )
    assert t.timers(state) == [Timer(T0 + 600, t.FireTimeout("c", 1)), Timer(T0 + 60, t.FireTimeout("d", 4))]


# --- status reports to the job aggregate ------------------------------------------------------


@pytest.mark.parametrize("status", [SUCCEEDED, FAILED, REJECTED])
def test_a_status_change_is_reported_to_the_job(status: str) -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", status))
    assert decision.sends == (Send("job/j1", RecordExecutionStatus("j1", "t1", 1, status), forward_reply=False),)


def test_in_progress_to_in_progress_reports_nothing() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", IN_PROGRESS, status_details={"p": "1"}))
    assert len(decision.events) == 1
    assert decision.sends == ()


def test_queueing_a_new_execution_reports_nothing() -> None:
    assert when(given(registered()), t.QueueExecution("j1", DOC)).sends == ()


def test_the_report_names_the_current_execution_number() -> None:
    state = given(registered(), queued("j1", 0, n=3))
    assert when(state, t.UpdateExecution("j1", REJECTED)).sends == (report("j1", REJECTED, n=3),)


# --- QueueExecution ---------------------------------------------------------------------------


def test_queue_a_first_execution() -> None:
    decision = when(given(registered()), t.QueueExecution("j1", DOC, in_progress_timeout_minutes=7), now=NOW)
    assert decision.reply is None
    assert decision.events == (queued("j1", 0, at=NOW, timeout=7),)
    first = execution("j1", 0, queued_at=NOW, timeout=7)
    assert decision.effects == (t.NotifyPending(THING, [first]), t.NotifyNext(THING, first))


def test_an_execution_keeps_the_lifetime_of_its_presigned_urls_for_every_delivery() -> None:
    decision = when(given(registered()), t.QueueExecution("j1", DOC, presigned_url_expires_in_sec=900), now=NOW)
    assert decision.events == (replace(queued("j1", 0, at=NOW), presigned_url_expires_in_sec=900),)
    state = given(registered(), *decision.events)
    assert state.executions["j1"].presigned_url_expires_in_sec == 900
    started = when(state, t.StartNext()).reply
    assert isinstance(started, t.ExecutionReply) and started.execution is not None
    assert started.execution["presigned_url_expires_in_sec"] == 900
    assert t.ThingState.from_dict(state.to_dict()) == state


def test_an_execution_stored_before_presigned_url_lifetimes_reads_as_the_default() -> None:
    old_image = given(registered(), queued("j1", 0)).to_dict()
    del old_image["executions"]["j1"]["presigned_url_expires_in_sec"]
    assert t.ThingState.from_dict(old_image).executions["j1"].presigned_url_expires_in_sec is None


def test_an_execution_for_a_thing_never_created_is_refused_and_the_job_forgets_it() -> None:
    decision = when(given(), t.QueueExecution("j1", DOC))
    assert decision == Decision(sends=(Send("job/j1", ForgetExecution("j1", THING, 0)),))


def test_queue_keeps_queue_order_in_seq() -> None:
    state = given(registered(), queued("j1", 0), queued("j2", 1), updated("j1", SUCCEEDED, 2))
    assert when(state, t.QueueExecution("j3", DOC)).events == (queued("j3", 2),)


@pytest.mark.parametrize(
    "history",
    [
        (registered(), queued("j1", 0)),
        IN_PROGRESS_J1,
    ],
    ids=["queued", "in-progress"],
)
def test_a_repeated_queue_for_a_live_execution_emits_nothing(history: tuple[Any, ...]) -> None:
    assert when(given(*history), t.QueueExecution("j1", DOC), now=NOW) == Decision()


def test_queue_after_a_terminal_execution_starts_the_next_execution_number() -> None:
    state = given(*HISTORIES[FAILED][0])
    decision = when(state, t.QueueExecution("j1", DOC), now=NOW)
    assert decision.events == (queued("j1", 1, at=NOW, n=2),)
    after = t.fold(state, decision.events).executions["j1"]
    assert (after.status, after.version_number, after.execution_number, after.status_details) == (QUEUED, 1, 2, {})
    assert decision.sends == ()


# --- notifications (§8) -----------------------------------------------------------------------


def test_new_queued_execution_behind_others_notifies_pending_only() -> None:
    state = given(registered(), queued("j1", 0))
    decision = when(state, t.QueueExecution("j2", DOC), now=NOW)
    assert decision.effects == (t.NotifyPending(THING, [execution("j1", 0), execution("j2", 1, queued_at=NOW)]),)


def test_new_queued_execution_behind_an_in_progress_one_notifies_pending_only() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.QueueExecution("j2", DOC), now=NOW)
    assert decision.effects == (
        t.NotifyPending(
            THING,
            [
                execution(
                    "j1", 0, status=IN_PROGRESS, version=2, updated_at=STARTED, started_at=STARTED, details=DETAILS
                ),
                execution("j2", 1, queued_at=NOW),
            ],
        ),
    )


def test_queued_to_in_progress_of_the_head_notifies_nothing() -> None:
    state = given(registered(), queued("j1", 0), queued("j2", 1))
    assert when(state, t.UpdateExecution("j1", IN_PROGRESS)).effects == ()
    assert when(state, t.StartNext()).effects == ()


def test_j1_j2_example_starting_a_non_head_notifies_next_only() -> None:
    # J1 and J2 are QUEUED; the device starts J2, which moves to the front of the pending list.
    state = given(registered(), queued("J1", 0), queued("J2", 1))

    decision = when(state, t.UpdateExecution("J2", IN_PROGRESS), now=NOW)

    j2 = {**execution("J2", 1, status=IN_PROGRESS, version=2, updated_at=NOW, started_at=NOW)}
    assert decision.effects == (t.NotifyNext(THING, j2),)


def test_in_progress_to_in_progress_notifies_nothing() -> None:
    decision = when(
        given(*IN_PROGRESS_J1, queued("j2", 1)), t.UpdateExecution("j1", IN_PROGRESS, step_timeout_minutes=3)
    )
    assert decision.effects == ()


def test_terminal_change_of_the_head_notifies_pending_and_the_new_head() -> None:
    state = given(*IN_PROGRESS_J1, queued("j2", 1), queued("j3", 2))
    decision = when(state, t.UpdateExecution("j1", SUCCEEDED), now=NOW)
    assert decision.effects == (
        t.NotifyPending(THING, [execution("j2", 1), execution("j3", 2)]),
        t.NotifyNext(THING, execution("j2", 1)),
    )


def test_terminal_change_of_a_non_head_notifies_pending_only() -> None:
    state = given(*IN_PROGRESS_J1, queued("j2", 1), queued("j3", 2))
    decision = when(state, t.UpdateExecution("j2", REJECTED), now=NOW)
    head = execution("j1", 0, status=IN_PROGRESS, version=2, updated_at=STARTED, started_at=STARTED, details=DETAILS)
    assert decision.effects == (t.NotifyPending(THING, [head, execution("j3", 2)]),)


def test_terminal_change_of_the_last_pending_execution_notifies_an_empty_list_and_no_head() -> None:
    decision = when(given(*IN_PROGRESS_J1), t.UpdateExecution("j1", FAILED))
    assert decision.effects == (t.NotifyPending(THING, []), t.NotifyNext(THING, None))


def test_notify_pending_lists_at_most_ten_executions() -> None:
    state = given(registered(), *[queued(f"j{i:02}", i) for i in range(10)])
    decision = when(state, t.QueueExecution("j10", DOC))
    (notify,) = decision.effects
    assert isinstance(notify, t.NotifyPending)
    assert [e["job_id"] for e in notify.executions] == [f"j{i:02}" for i in range(10)]


def test_rejections_and_reads_notify_nothing() -> None:
    state = given(*IN_PROGRESS_J1, queued("j2", 1))
    for command in (
        t.GetPending(),
        t.DescribeExecution(t.NEXT),
        t.DescribeExecution("j2"),
        t.UpdateExecution("j9", FAILED),
    ):
        decision = when(state, command)
        assert (decision.events, decision.sends, decision.effects) == ((), (), ())


def test_unknown_commands_and_events_are_programming_errors() -> None:
    with pytest.raises(TypeError):
        when(given(), object())
    with pytest.raises(TypeError):
        t.evolve(given(), object())


# --- REMOVED: the registry takes the thing away from a job (§6.9) -----------------------------


def removed(job_id: str, version: int, *, at: float = NOW, n: int = 1, **kwargs: Any) -> t.ExecutionUpdated:
    return updated(job_id, REMOVED, version, at=at, n=n, **kwargs)


def test_remove_executions_sets_queued_and_in_progress_executions_removed() -> None:
    state = given(*IN_PROGRESS_J1, queued("j2", 1), queued("j3", 2))
    decision = when(state, t.RemoveExecutions(["j1", "j2"]), now=NOW)
    assert decision.reply is None
    assert decision.events == (
        removed("j1", 3, started_at=STARTED, details=DETAILS, cause="removed"),
        removed("j2", 2, cause="removed"),
    )
    assert decision.sends == (report("j1", REMOVED), report("j2", REMOVED))
    assert decision.effects == (
        t.NotifyPending(THING, [execution("j3", 2)]),
        t.NotifyNext(THING, execution("j3", 2)),
    )


def test_remove_executions_clears_the_timers() -> None:
    started = updated("j1", IN_PROGRESS, 2, at=STARTED, started_at=STARTED, in_progress_deadline=T0 + 600)
    state = given(registered(), queued("j1", 0, timeout=10), started)
    assert t.timers(state) == [Timer(T0 + 600, t.FireTimeout("j1", 1))]
    decision = when(state, t.RemoveExecutions(["j1"]), now=NOW)
    (event,) = decision.events
    assert (event.status, event.in_progress_deadline, event.step_deadline) == (REMOVED, None, None)
    assert t.timers(t.fold(state, decision.events)) == []


@pytest.mark.parametrize("terminal", [SUCCEEDED, FAILED, REJECTED, TIMED_OUT, CANCELED, REMOVED])
def test_remove_executions_leaves_terminal_and_unknown_executions_alone(terminal: str) -> None:
    state = given(*HISTORIES[terminal][0])
    assert when(state, t.RemoveExecutions(["j1", "j9"])) == Decision()


def test_remove_executions_names_a_job_once_even_if_listed_twice() -> None:
    decision = when(given(registered(), queued("j1", 0)), t.RemoveExecutions(["j1", "j1"]), now=NOW)
    assert decision.events == (removed("j1", 2, cause="removed"),)


def test_a_removed_execution_refuses_device_updates() -> None:
    state = given(registered(), queued("j1", 0), removed("j1", 2, cause="removed"))
    rejection = rejected(when(state, t.UpdateExecution("j1", IN_PROGRESS)), INVALID_TRANSITION)
    assert rejection.detail == state_of(REMOVED, 2, {})
    assert rejected(when(state, t.DescribeExecution("j1")), TERMINAL_STATE)


# --- DeleteThing (§3.4, §6.9) ---------------------------------------------------------------


def test_delete_removes_every_pending_execution_and_then_the_thing() -> None:
    state = given(*IN_PROGRESS_J1, queued("j2", 1), queued("j3", 2), updated("j3", SUCCEEDED, 2))
    decision = when(state, t.DeleteThing(THING), now=NOW)
    assert decision.reply == Done()
    assert decision.events == (
        removed("j1", 3, started_at=STARTED, details=DETAILS, cause="thing-deleted"),
        removed("j2", 2, cause="thing-deleted"),
        t.ThingDeleted(THING),
    )
    assert decision.sends == (report("j1", REMOVED), report("j2", REMOVED))
    assert decision.effects == (t.NotifyPending(THING, []), t.NotifyNext(THING, None))
    after = t.fold(state, decision.events)
    assert (after.registered, after.deleted) == (False, True)
    assert after.executions["j3"].status == SUCCEEDED  # finished executions stay as they were


def test_a_deleted_things_device_requests_are_not_found() -> None:
    state = given(*IN_PROGRESS_J1, removed("j1", 3, cause="thing-deleted"), t.ThingDeleted(THING))
    for command in (
        t.GetPending(),
        t.StartNext(),
        t.DescribeExecution(t.NEXT),
        t.DescribeExecution("j1"),
        t.UpdateExecution("j1", SUCCEEDED),
    ):
        assert rejected(when(state, command), NOT_FOUND).message == f"Thing {THING} does not exist"


def test_delete_a_deleted_thing_changes_nothing() -> None:
    state = given(registered(), t.ThingDeleted(THING))
    assert when(state, t.DeleteThing(THING)) == Decision(reply=Done())


def test_an_execution_released_to_a_deleted_thing_is_removed_at_once_and_reported() -> None:
    # CreateJob resolved the thing just before DeleteThing; the release arrives after the thing is gone.
    state = given(registered(), t.ThingDeleted(THING))
    decision = when(state, t.QueueExecution("j1", DOC), now=NOW)
    assert decision.events == (queued("j1", 0, at=NOW), removed("j1", 2, cause="thing-deleted"))
    assert decision.sends == (report("j1", REMOVED),)
    assert decision.effects == ()
    assert not t.fold(state, decision.events).registered


def test_a_recreated_thing_inherits_no_pending_execution_and_never_reuses_a_number() -> None:
    deleted = (*IN_PROGRESS_J1, removed("j1", 3, cause="thing-deleted"), t.ThingDeleted(THING))
    decision = when(given(*deleted), t.CreateThing(THING, "id-new"), now=NOW)
    assert decision.events == (t.ExecutionDeleted(THING, "j1", 1, NOW), t.ThingCreated(THING, "id-new"))
    assert [s.command for s in decision.sends] == [ForgetExecution("j1", THING, 1)], "the job stops counting it"
    recreated = given(*deleted, *decision.events)
    assert recreated.executions == {} and recreated.past == {}
    rejected(when(recreated, t.DescribeExecution("j1", None, True)), NOT_FOUND)
    assert (recreated.registered, recreated.deleted) == (True, False)
    assert when(recreated, t.GetPending()).reply == t.PendingReply(in_progress=[], queued=[])
    assert when(recreated, t.StartNext()).reply == t.ExecutionReply(None)
    assert when(recreated, t.QueueExecution("j1", DOC), now=NOW).events == (queued("j1", 1, at=NOW, n=2),)


def test_thing_state_with_a_deletion_round_trips_through_a_dict() -> None:
    state = given(*IN_PROGRESS_J1, removed("j1", 3, cause="thing-deleted"), t.ThingDeleted(THING))
    assert t.ThingState.from_dict(state.to_dict()) == state


# --- the thing's registry record: CreateThing, groups, DeleteThing (§3.4, §6.9) ---------------


def joined(group: str, *ancestors: str) -> t.ThingAddedToThingGroup:
    return t.ThingAddedToThingGroup(THING, group, list(ancestors))


def test_create_a_new_thing() -> None:
    decision = when(given(), t.CreateThing(THING, THING_ID, "sensor", {"site": "a"}))
    assert decision == Decision(
        reply=t.ThingCreatedReply(THING, THING_ID),
        events=(t.ThingCreated(THING, THING_ID, "sensor", {"site": "a"}),),
    )
    assert given(*decision.events).version == 1


def test_create_an_identical_thing_again_answers_with_the_existing_id() -> None:
    state = given(t.ThingCreated(THING, THING_ID, "sensor", {"site": "a"}))
    assert when(state, t.CreateThing(THING, "other", "sensor", {"site": "a"})) == Decision(
        reply=t.ThingCreatedReply(THING, THING_ID)
    )


@pytest.mark.parametrize("command", [t.CreateThing(THING, "x", "other"), t.CreateThing(THING, "x", None, {"a": "b"})])
def test_create_a_thing_with_a_different_configuration_already_exists(command: t.CreateThing) -> None:
    rejection = rejected(when(given(registered()), command), "ResourceAlreadyExists")
    assert rejection.message == f"Thing {THING} already exists with a different configuration"
    assert rejection.detail == {"resourceId": THING_ID}


def test_join_a_group_records_it_with_its_ancestors_and_tells_the_group() -> None:
    decision = when(given(registered()), t.JoinGroup(THING, "child", ["root"]))
    assert decision == Decision(
        reply=Done(),
        events=(joined("child", "root"),),
        sends=(Send("group/child", MemberJoined("child", THING)),),
    )
    after = given(registered(), *decision.events)
    assert (after.version, after.groups, after.reach()) == (2, {"child": ["root"]}, ["child", "root"])


def test_join_a_group_again_changes_nothing() -> None:
    assert when(given(registered(), joined("g1")), t.JoinGroup(THING, "g1", [])) == Decision(reply=Done())


def test_a_missing_thing_cannot_join_a_group() -> None:
    assert rejected(when(given(), t.JoinGroup(THING, "g1", [])), NOT_FOUND).message == f"Thing {THING} does not exist"


def test_a_thing_belongs_to_at_most_ten_groups() -> None:
    state = given(registered(), *(joined(f"g{i}") for i in range(t.MAX_GROUPS)))
    rejection = rejected(when(state, t.JoinGroup(THING, "one-more", [])), INVALID_REQUEST)
    assert rejection.message == f"Thing {THING} already belongs to 10 thing groups, the most allowed"


def test_leave_a_group_tells_the_group_and_asks_each_pending_job_whether_it_still_reaches_the_thing() -> None:
    state = given(registered(), joined("g1", "root"), joined("g2"), queued("j1", 0), queued("j2", 1))
    decision = when(state, t.LeaveGroup(THING, "g1"))
    assert decision.reply == Done()
    assert decision.events == (t.ThingRemovedFromThingGroup(THING, "g1"),)
    assert decision.sends == (
        Send("group/g1", MemberLeft("g1", THING)),
        Send("job/j1", CheckReach("j1", THING, ["g2"])),
        Send("job/j2", CheckReach("j2", THING, ["g2"])),
    )


def test_leaving_a_deleted_group_does_not_tell_it() -> None:
    state = given(registered(), joined("g1"))
    decision = when(state, t.LeaveGroup(THING, "g1", group_deleted=True))
    assert (decision.events, decision.sends) == ((t.ThingRemovedFromThingGroup(THING, "g1"),), ())


def test_leave_a_group_the_thing_is_not_in_changes_nothing() -> None:
    assert when(given(registered()), t.LeaveGroup(THING, "g1")) == Decision(reply=Done())


def test_a_missing_thing_cannot_leave_a_group_but_a_deleted_groups_leave_is_ignored() -> None:
    assert rejected(when(given(), t.LeaveGroup(THING, "g1")), NOT_FOUND)
    assert when(given(), t.LeaveGroup(THING, "g1", group_deleted=True)) == Decision(reply=Done())


def test_remove_executions_for_a_thing_back_in_one_of_the_jobs_groups_changes_nothing() -> None:
    state = given(registered(), joined("g1", "root"), queued("j1", 0))
    assert when(state, t.RemoveExecutions(["j1"], unless_in=["root"])) == Decision()
    assert when(state, t.RemoveExecutions(["j1"], unless_in=["g9"])).events == (
        removed("j1", 2, at=T0, cause="removed"),
    )


def test_an_execution_through_a_group_the_thing_has_left_is_refused_and_the_job_forgets_it() -> None:
    state = given(registered(), joined("g1"))
    assert when(state, t.QueueExecution("j1", DOC, via="g1")).events == (queued("j1", 0),)
    assert when(state, t.QueueExecution("j1", DOC, via="g2")) == Decision(
        sends=(Send("job/j1", ForgetExecution("j1", THING, 0)),)
    )


def test_delete_a_thing_with_another_version_is_a_version_conflict() -> None:
    rejection = rejected(when(given(registered(), joined("g1")), t.DeleteThing(THING, 1)), "VersionConflict")
    assert rejection.message == f"expectedVersion 1 does not match the current version 2 of thing {THING}"
    assert when(given(registered(), joined("g1")), t.DeleteThing(THING, 2)).events == (t.ThingDeleted(THING),)


def test_delete_a_thing_tells_each_of_its_groups() -> None:
    decision = when(given(registered(), joined("g1"), joined("g2")), t.DeleteThing(THING))
    assert decision.sends == (Send("group/g1", MemberLeft("g1", THING)), Send("group/g2", MemberLeft("g2", THING)))
    after = given(registered(), joined("g1"), joined("g2"), *decision.events)
    assert (after.registered, after.groups) == (False, {})


def test_thing_state_with_its_registry_record_round_trips_through_a_dict() -> None:
    state = given(t.ThingCreated(THING, THING_ID, "sensor", {"a": "b"}), joined("g1", "root"))
    assert t.ThingState.from_dict(state.to_dict()) == state


# --- UpdateThing (§3.4) -----------------------------------------------------------------------


def typed(attributes: dict[str, str], type_name: str | None = "sensor") -> t.ThingCreated:
    return t.ThingCreated(THING, THING_ID, type_name, attributes)


def test_update_thing_merges_attributes_and_an_empty_value_removes_one() -> None:
    state = given(typed({"site": "a", "rack": "3", "old": "x"}))
    command = t.UpdateThing(THING, attributes={"site": "b", "new": "1", "old": ""}, merge=True)
    decision = when(state, command)
    attributes = {"site": "b", "rack": "3", "new": "1"}
    assert decision == Decision(reply=Done(), events=(t.ThingUpdated(THING, "sensor", attributes),))
    after = t.fold(state, decision.events)
    assert (after.attributes, after.thing_type_name, after.version) == (attributes, "sensor", 2)


def test_update_thing_without_merge_replaces_every_attribute() -> None:
    state = given(typed({"site": "a", "rack": "3"}))
    assert when(state, t.UpdateThing(THING, attributes={"site": "b", "gone": ""})).events == (
        t.ThingUpdated(THING, "sensor", {"site": "b"}),
    )
    assert when(state, t.UpdateThing(THING, attributes={})).events == (t.ThingUpdated(THING, "sensor", {}),)


def test_update_thing_without_attributes_keeps_them_and_still_moves_the_version_on() -> None:
    state = given(typed({"site": "a"}))
    decision = when(state, t.UpdateThing(THING, merge=True))
    assert decision.events == (t.ThingUpdated(THING, "sensor", {"site": "a"}),)
    assert t.fold(state, decision.events).version == 2


def test_update_thing_sets_or_removes_the_thing_type() -> None:
    state = given(typed({}, None))
    assert when(state, t.UpdateThing(THING, "gateway")).events == (t.ThingUpdated(THING, "gateway", {}),)
    state = given(typed({"a": "1"}))
    assert when(state, t.UpdateThing(THING, remove_thing_type=True)).events == (
        t.ThingUpdated(THING, None, {"a": "1"}),
    )


def test_update_thing_cannot_set_and_remove_the_thing_type_at_once() -> None:
    rejection = rejected(when(given(), t.UpdateThing(THING, "gateway", remove_thing_type=True)), INVALID_REQUEST)
    assert "thingTypeName" in rejection.message and "removeThingType" in rejection.message


def test_update_thing_with_the_current_version_is_accepted_and_another_is_a_version_conflict() -> None:
    state = given(registered(), joined("g1"))
    assert when(state, t.UpdateThing(THING, expected_version=2)).events == (t.ThingUpdated(THING, None, {}),)
    rejection = rejected(when(state, t.UpdateThing(THING, "x", expected_version=1)), "VersionConflict")
    assert rejection.message == f"expectedVersion 1 does not match the current version 2 of thing {THING}"


def test_update_a_missing_or_deleted_thing_is_not_found() -> None:
    for state in (given(), given(registered(), t.ThingDeleted(THING))):
        rejection = rejected(when(state, t.UpdateThing(THING, attributes={"a": "1"})), NOT_FOUND)
        assert rejection.message == f"Thing {THING} does not exist"


def test_update_thing_touches_no_execution_and_tells_no_one() -> None:
    state = given(registered(), joined("g1"), queued("j1", 0))
    decision = when(state, t.UpdateThing(THING, attributes={"a": "1"}))
    assert (decision.sends, decision.effects) == ((), ())
    after = t.fold(state, decision.events)
    assert (after.executions, after.groups) == (state.executions, state.groups)


def test_an_identical_create_after_an_update_compares_with_the_updated_record() -> None:
    state = given(typed({"site": "a"}), t.ThingUpdated(THING, "sensor", {"site": "b"}))
    assert when(state, t.CreateThing(THING, "x", "sensor", {"site": "b"})).reply == t.ThingCreatedReply(THING, THING_ID)
    assert rejected(when(state, t.CreateThing(THING, "x", "sensor", {"site": "a"})), "ResourceAlreadyExists")


def test_thing_state_after_an_update_round_trips_through_a_dict() -> None:
    state = given(typed({"a": "1"}), t.ThingUpdated(THING, None, {"b": "2"}))
    assert t.ThingState.from_dict(state.to_dict()) == state


def test_an_earlier_execution_is_described_as_terminal_and_deleted_by_its_number() -> None:
    retried = t.ExecutionQueued(THING, "j1", 2, 1, T0 + 5, DOC, retry_attempt=1)
    state = given(registered(), queued("j1", 0), updated("j1", FAILED, 2), retried)
    assert state.past == {"j1": {"1": FAILED}}
    described = when(state, t.DescribeExecution("j1", 1, True))
    assert isinstance(described.reply, Rejection) and described.reply.kind == "TerminalState"
    assert "terminal state FAILED" in described.reply.message
    deleted = when(state, t.DeleteExecution("j1", 1))
    assert deleted.events == (t.ExecutionDeleted(THING, "j1", 1, T0),)
    forget = [s.command for s in deleted.sends]
    assert forget == [ForgetExecution("j1", THING, 1, FAILED, past=True)], "the job's counts lose a FAILED"
    after = t.fold(state, deleted.events)
    assert after.past == {} and after.executions["j1"].execution_number == 2
    rejected(when(after, t.DeleteExecution("j1", 1)), NOT_FOUND)


# --- memory at fleet scale ----------------------------------------------------------------------------


def test_every_thing_holding_a_job_shares_one_copy_of_its_document() -> None:
    # Each thing's execution arrives in its own record (its own string); an owner of 100,000 things keeps
    # one document per job, whether the execution was queued live or restored from a snapshot.
    big = '{"files": "' + "x" * 30_000 + '"}'
    copies = ["".join(list(big)) for _ in range(3)]
    assert copies[0] is not copies[1]
    states = [given(registered(), queued("j1", 1, doc=doc)) for doc in copies]
    live = [state.executions["j1"].document for state in states]
    restored = [t.ThingState.from_dict(orjson.loads(orjson.dumps(s.to_dict()))) for s in states]
    again = [state.executions["j1"].document for state in restored]
    assert all(doc == big for doc in live + again)
    assert all(doc is live[0] for doc in live + again)
