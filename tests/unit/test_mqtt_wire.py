"""The device MQTT API shapes (aws-iot-jobs.md §7): topic + payload -> command, reply -> payload."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from iotjobs.domain import thing as t
from iotjobs.domain.decision import Context
from iotjobs.domain.errors import Rejection
from iotjobs.domain.execution import Execution
from iotjobs.wire import mqtt

BASE = "$aws/things/t1/jobs"
NOW = 1_700_000_123.9
DOC = '{"operation":"install","files":[{"url":"https://x"}]}'


def parse(topic: str, payload: Any = b"") -> mqtt.Request:
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    return mqtt.parse_request(topic, raw)


def refused(topic: str, payload: Any = b"") -> mqtt.MqttRejected:
    with pytest.raises(mqtt.MqttRejected) as caught:
        parse(topic, payload)
    assert caught.value.topic == topic
    return caught.value


def execution(
    job_id: str = "j1",
    status: str = "IN_PROGRESS",
    *,
    started_at: float | None = 1_700_000_010.7,
    details: dict[str, str] | None = None,
) -> dict[str, Any]:
    return Execution(
        job_id=job_id,
        thing_name="t1",
        execution_number=1,
        status=status,
        queued_at=1_700_000_000.5,
        last_updated_at=1_700_000_020.9,
        version_number=3,
        seq=0,
        document=DOC,
        status_details={"step": "2"} if details is None else details,
        started_at=started_at,
    ).to_dict()


# --- parse_request: topics --------------------------------------------------------------------


def test_get_pending() -> None:
    assert parse(f"{BASE}/get", {"clientToken": "tok"}) == mqtt.Request("t1", f"{BASE}/get", t.GetPending(), "tok")


def test_start_next_with_all_members() -> None:
    request = parse(f"{BASE}/start-next", {"statusDetails": {"step": "download"}, "stepTimeoutInMinutes": 5})
    assert request == mqtt.Request(
        "t1", f"{BASE}/start-next", t.StartNext(status_details={"step": "download"}, step_timeout_minutes=5), None
    )


def test_describe_with_defaults_includes_the_document() -> None:
    assert parse(f"{BASE}/j1/get").command == t.DescribeExecution("j1", execution_number=None, include_document=True)


def test_describe_with_members() -> None:
    command = parse(f"{BASE}/j1/get", {"executionNumber": 2, "includeJobDocument": False}).command
    assert command == t.DescribeExecution("j1", execution_number=2, include_document=False)


def test_describe_next() -> None:
    assert parse(f"{BASE}/$next/get").command == t.DescribeExecution(t.NEXT)


@pytest.mark.parametrize("job_id", ["get", "start-next"])
def test_job_ids_that_look_like_operations_are_job_ids(job_id: str) -> None:
    assert parse(f"{BASE}/{job_id}/get").command == t.DescribeExecution(job_id)


def test_update_with_all_members() -> None:
    payload = {
        "status": "SUCCEEDED",
        "statusDetails": {"result": "ok"},
        "expectedVersion": 2,
        "executionNumber": 1,
        "includeJobExecutionState": True,
        "includeJobDocument": True,
        "stepTimeoutInMinutes": -1,
        "clientToken": "c-1",
    }
    assert parse(f"{BASE}/j1/update", payload) == mqtt.Request(
        "t1",
        f"{BASE}/j1/update",
        t.UpdateExecution(
            job_id="j1",
            status="SUCCEEDED",
            status_details={"result": "ok"},
            expected_version=2,
            execution_number=1,
            include_state=True,
            include_document=True,
            step_timeout_minutes=-1,
            client_token="c-1",
        ),
        "c-1",
    )


def test_update_with_only_status_uses_the_defaults() -> None:
    assert parse(f"{BASE}/j1/update", {"status": "IN_PROGRESS"}).command == t.UpdateExecution("j1", "IN_PROGRESS")


def test_update_passes_any_status_string_to_the_decider() -> None:
    # The status enum is the decider's rule (§6.2 check 2), not the parser's.
    assert parse(f"{BASE}/j1/update", {"status": "QUEUED"}).command.status == "QUEUED"


@pytest.mark.parametrize("payload", [b"", b"   ", b"\n", b"{}"])
def test_an_empty_payload_is_an_empty_object(payload: bytes) -> None:
    assert parse(f"{BASE}/get", payload) == mqtt.Request("t1", f"{BASE}/get", t.GetPending(), None)


def test_null_members_count_as_absent() -> None:
    command = parse(f"{BASE}/j1/update", {"status": "FAILED", "statusDetails": None, "expectedVersion": None}).command
    assert command == t.UpdateExecution("j1", "FAILED")


def test_thing_names_with_colons_are_allowed() -> None:
    assert parse("$aws/things/factory:line-1_a/jobs/get").thing_name == "factory:line-1_a"


# --- parse_request: rejections ----------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"{", b"not json", b"{'a':1}", b"\xff\xfe", b'{"status": "SUCCEEDED",}'])
def test_malformed_payload_is_invalid_json(payload: bytes) -> None:
    rejected = refused(f"{BASE}/j1/update", payload)
    assert rejected.rejection.kind == "InvalidJson"
    assert rejected.rejection.message.startswith("payload is not valid UTF-8 JSON: ")
    assert rejected.client_token is None


@pytest.mark.parametrize("payload", [b"[]", b'"s"', b"1", b"null"])
def test_a_payload_that_is_not_an_object_is_invalid_json(payload: bytes) -> None:
    rejected = refused(f"{BASE}/get", payload)
    assert (rejected.rejection.kind, rejected.rejection.message) == ("InvalidJson", "payload must be a JSON object")


@pytest.mark.parametrize(
    "topic", [f"{BASE}/bad id/update", f"{BASE}/a:b/update", f"{BASE}/{'j' * 65}/get", f"{BASE}/$next/update"]
)
def test_bad_job_id_is_invalid_request_with_the_token_echoed(topic: str) -> None:
    rejected = refused(topic, {"status": "SUCCEEDED", "clientToken": "tok-9"})
    assert rejected.rejection.kind == "InvalidRequest"
    assert rejected.client_token == "tok-9"


@pytest.mark.parametrize("thing", ["bad thing", "a+b", "t" * 129, ""])
def test_bad_thing_name_is_invalid_request_with_the_token_echoed(thing: str) -> None:
    rejected = refused(f"$aws/things/{thing}/jobs/get", {"clientToken": "tok"})
    assert rejected.rejection.kind == "InvalidRequest"
    assert rejected.rejection.message.startswith("thingName ")
    assert rejected.client_token == "tok"


def test_update_without_status_is_invalid_request() -> None:
    rejected = refused(f"{BASE}/j1/update", {"clientToken": "tok", "statusDetails": {"a": "b"}})
    assert (rejected.rejection.kind, rejected.rejection.message, rejected.client_token) == (
        "InvalidRequest",
        "status is required",
        "tok",
    )


@pytest.mark.parametrize(
    ("topic", "payload", "message"),
    [
        (f"{BASE}/j1/update", {"status": 1}, "status must be a string"),
        (
            f"{BASE}/j1/update",
            {"status": "FAILED", "statusDetails": ["a"]},
            "statusDetails must be a map of string to string",
        ),
        (f"{BASE}/j1/update", {"status": "FAILED", "expectedVersion": "2"}, "expectedVersion must be an integer"),
        (f"{BASE}/j1/update", {"status": "FAILED", "expectedVersion": True}, "expectedVersion must be an integer"),
        (f"{BASE}/j1/update", {"status": "FAILED", "expectedVersion": 2.5}, "expectedVersion must be an integer"),
        (f"{BASE}/j1/update", {"status": "FAILED", "executionNumber": False}, "executionNumber must be an integer"),
        (
            f"{BASE}/j1/update",
            {"status": "FAILED", "includeJobExecutionState": "yes"},
            "includeJobExecutionState must be a boolean",
        ),
        (f"{BASE}/j1/update", {"status": "FAILED", "includeJobDocument": 1}, "includeJobDocument must be a boolean"),
        (
            f"{BASE}/j1/update",
            {"status": "FAILED", "stepTimeoutInMinutes": "5"},
            "stepTimeoutInMinutes must be an integer",
        ),
        (f"{BASE}/start-next", {"statusDetails": "x"}, "statusDetails must be a map of string to string"),
        (f"{BASE}/start-next", {"stepTimeoutInMinutes": 1.5}, "stepTimeoutInMinutes must be an integer"),
        (f"{BASE}/j1/get", {"executionNumber": "1"}, "executionNumber must be an integer"),
        (f"{BASE}/j1/get", {"includeJobDocument": "false"}, "includeJobDocument must be a boolean"),
    ],
)
def test_wrong_member_types_are_invalid_request_with_the_token_echoed(
    topic: str, payload: dict[str, Any], message: str
) -> None:
    rejected = refused(topic, {**payload, "clientToken": "ct"})
    assert (rejected.rejection.kind, rejected.rejection.message, rejected.client_token) == (
        "InvalidRequest",
        message,
        "ct",
    )


def test_a_client_token_that_is_not_a_string_is_refused_and_not_echoed() -> None:
    rejected = refused(f"{BASE}/get", {"clientToken": 42})
    assert rejected.rejection.kind == "InvalidRequest"
    assert rejected.client_token is None


def test_a_client_token_over_64_characters_is_refused() -> None:
    rejected = refused(f"{BASE}/get", {"clientToken": "x" * 65})
    assert rejected.rejection.message == "clientToken must be a string of at most 64 characters"
    assert parse(f"{BASE}/get", {"clientToken": "x" * 64}).client_token == "x" * 64


@pytest.mark.parametrize("topic", [f"{BASE}/j1/bar", f"{BASE}/foo", f"{BASE}/j1/ns-x/get"])
def test_jobs_topics_without_an_operation_are_invalid_topic(topic: str) -> None:
    assert refused(topic, {"clientToken": "c"}).rejection.kind == "InvalidTopic"


@pytest.mark.parametrize("topic", ["$aws/things/t1/shadow/get", "$aws/things/t1/jobs"])
def test_topics_outside_the_jobs_api_are_invalid_request(topic: str) -> None:
    assert refused(topic, {"clientToken": "c"}).rejection.kind == "InvalidRequest"


def test_namespaced_topics_carry_the_namespace() -> None:
    update = parse(f"{BASE}/j1/namespace-ns1/update", {"status": "IN_PROGRESS"}).command
    assert (update.job_id, update.namespace_id) == ("j1", "ns1")
    describe = parse(f"{BASE}/$next/namespace-ns1/get", {}).command
    assert (describe.job_id, describe.namespace_id) == ("$next", "ns1")
    assert refused(f"{BASE}/j1/namespace-b@d/get", {}).rejection.kind == "InvalidRequest"


def test_namespaced_notifications_go_to_namespaced_topics() -> None:
    pending = t.NotifyPending("t1", [], "ns1")
    assert mqtt.notification(pending, 1.0)[0] == "$aws/things/t1/jobs/notify-namespace-ns1"
    assert mqtt.notification(t.NotifyNext("t1", None, "ns1"), 1.0)[0] == "$aws/things/t1/jobs/notify-next-namespace-ns1"


# --- reply_payload ----------------------------------------------------------------------------


def test_pending_reply_lists_summaries_with_integer_timestamps() -> None:
    queued = execution("j2", "QUEUED", started_at=None, details={})
    outcome, body = mqtt.reply_payload(t.PendingReply([execution()], [queued]), "tok", NOW)
    assert outcome == "accepted"
    assert body == {
        "inProgressJobs": [
            {
                "jobId": "j1",
                "queuedAt": 1_700_000_000,
                "startedAt": 1_700_000_010,
                "lastUpdatedAt": 1_700_000_020,
                "versionNumber": 3,
                "executionNumber": 1,
            }
        ],
        "queuedJobs": [
            {
                "jobId": "j2",
                "queuedAt": 1_700_000_000,
                "lastUpdatedAt": 1_700_000_020,
                "versionNumber": 3,
                "executionNumber": 1,
            }
        ],
        "timestamp": 1_700_000_123,
        "clientToken": "tok",
    }
    assert all(type(value) is int for value in body["inProgressJobs"][0].values() if value != "j1")


def test_execution_reply_carries_the_document_as_an_object() -> None:
    outcome, body = mqtt.reply_payload(t.ExecutionReply(execution()), None, NOW)
    assert outcome == "accepted"
    assert body == {
        "execution": {
            "jobId": "j1",
            "thingName": "t1",
            "jobDocument": {"operation": "install", "files": [{"url": "https://x"}]},
            "status": "IN_PROGRESS",
            "statusDetails": {"step": "2"},
            "queuedAt": 1_700_000_000,
            "startedAt": 1_700_000_010,
            "lastUpdatedAt": 1_700_000_020,
            "versionNumber": 3,
            "executionNumber": 1,
        },
        "timestamp": 1_700_000_123,
    }


def test_execution_reply_without_document_and_without_start() -> None:
    _, body = mqtt.reply_payload(
        t.ExecutionReply(execution(status="QUEUED", started_at=None, details={}), include_document=False), "c", NOW
    )
    assert set(body["execution"]) == {
        "jobId",
        "thingName",
        "status",
        "statusDetails",
        "queuedAt",
        "lastUpdatedAt",
        "versionNumber",
        "executionNumber",
    }
    assert body["execution"]["statusDetails"] == {}
    assert body["clientToken"] == "c"


def test_execution_reply_with_nothing_pending_omits_execution() -> None:
    assert mqtt.reply_payload(t.ExecutionReply(None), "c", NOW) == (
        "accepted",
        {"timestamp": 1_700_000_123, "clientToken": "c"},
    )


@pytest.mark.parametrize(
    ("include_state", "include_document", "extra"),
    [
        (False, False, {}),
        (
            True,
            False,
            {"executionState": {"status": "IN_PROGRESS", "statusDetails": {"step": "2"}, "versionNumber": 3}},
        ),
        (False, True, {"jobDocument": {"operation": "install", "files": [{"url": "https://x"}]}}),
    ],
)
def test_update_reply_includes_state_and_document_only_when_asked(
    include_state: bool, include_document: bool, extra: dict[str, Any]
) -> None:
    reply = t.UpdateReply(execution(), include_state=include_state, include_document=include_document)
    assert mqtt.reply_payload(reply, "tok", NOW) == (
        "accepted",
        {**extra, "timestamp": 1_700_000_123, "clientToken": "tok"},
    )


STATE = {"status": "SUCCEEDED", "statusDetails": {}, "versionNumber": 4}


@pytest.mark.parametrize(
    ("kind", "code", "carries_state"),
    [
        ("VersionMismatch", "VersionMismatch", True),
        ("InvalidStateTransition", "InvalidStateTransition", True),
        ("InvalidRequest", "InvalidRequest", False),
        ("InvalidJson", "InvalidJson", False),
        ("ResourceNotFound", "ResourceNotFound", False),
        ("TerminalState", "TerminalStateReached", False),
        ("Throttled", "RequestThrottled", False),
        ("Internal", "InternalError", False),
    ],
)
def test_rejections_map_to_mqtt_codes(kind: str, code: str, carries_state: bool) -> None:
    detail = {"executionState": STATE} if carries_state else {}
    outcome, body = mqtt.reply_payload(Rejection(kind, "why", detail), "tok", NOW)
    expected: dict[str, Any] = {"code": code, "message": "why"}
    if carries_state:
        expected["executionState"] = STATE
    assert (outcome, body) == ("rejected", {**expected, "timestamp": 1_700_000_123, "clientToken": "tok"})


def test_rejection_without_token_omits_client_token() -> None:
    assert mqtt.reply_payload(Rejection("ResourceNotFound", "gone"), None, NOW) == (
        "rejected",
        {"code": "ResourceNotFound", "message": "gone", "timestamp": 1_700_000_123},
    )


def test_unknown_reply_types_are_programming_errors() -> None:
    with pytest.raises(TypeError):
        mqtt.reply_payload(object(), None, NOW)
    with pytest.raises(TypeError):
        mqtt.notification(object(), NOW)


# --- notifications ----------------------------------------------------------------------------


def test_notify_groups_jobs_by_status() -> None:
    queued = execution("j2", "QUEUED", started_at=None)
    topic, payload = mqtt.notification(t.NotifyPending("t1", [execution(), queued]), NOW)
    assert topic == "$aws/things/t1/jobs/notify"
    assert payload == {
        "timestamp": 1_700_000_123,
        "jobs": {
            "IN_PROGRESS": [mqtt.summary(execution())],
            "QUEUED": [mqtt.summary(queued)],
        },
    }
    assert payload["jobs"]["QUEUED"][0] == {
        "jobId": "j2",
        "queuedAt": 1_700_000_000,
        "lastUpdatedAt": 1_700_000_020,
        "versionNumber": 3,
        "executionNumber": 1,
    }


def test_notify_with_an_empty_list_has_empty_jobs() -> None:
    assert mqtt.notification(t.NotifyPending("t1", []), NOW) == (
        "$aws/things/t1/jobs/notify",
        {"timestamp": 1_700_000_123, "jobs": {}},
    )


def test_notify_with_only_queued_jobs_has_only_that_key() -> None:
    _, payload = mqtt.notification(t.NotifyPending("t1", [execution("j2", "QUEUED", started_at=None)]), NOW)
    assert list(payload["jobs"]) == ["QUEUED"]


def test_notify_next_carries_the_execution_with_its_document_object() -> None:
    topic, payload = mqtt.notification(t.NotifyNext("t1", execution()), NOW)
    assert topic == "$aws/things/t1/jobs/notify-next"
    assert payload == {"timestamp": 1_700_000_123, "execution": mqtt.execution_view(execution())}
    assert payload["execution"]["jobDocument"] == {"operation": "install", "files": [{"url": "https://x"}]}


def test_notify_next_without_execution_when_the_list_is_empty() -> None:
    assert mqtt.notification(t.NotifyNext("t1", None), NOW) == (
        "$aws/things/t1/jobs/notify-next",
        {"timestamp": 1_700_000_123},
    )


# --- through the decider ----------------------------------------------------------------------


def test_an_update_request_through_the_decider_and_back() -> None:
    state = t.fold(
        t.initial("thing/t1"),
        [
            t.ThingCreated("t1", "id"),
            t.ExecutionQueued("t1", "j1", 1, 0, 1_700_000_000.0, DOC),
        ],
    )
    request = parse(f"{BASE}/j1/update", {"status": "IN_PROGRESS", "expectedVersion": 5, "clientToken": "v"})
    decision = t.decide(state, request.command, Context(now=NOW))
    outcome, body = mqtt.reply_payload(decision.reply, request.client_token, NOW)
    assert (outcome, body["code"], body["executionState"], body["clientToken"]) == (
        "rejected",
        "VersionMismatch",
        {"status": "QUEUED", "statusDetails": {}, "versionNumber": 1},
        "v",
    )

    request = parse(f"{BASE}/j1/update", {"status": "IN_PROGRESS", "includeJobExecutionState": True})
    decision = t.decide(state, request.command, Context(now=NOW))
    assert mqtt.reply_payload(decision.reply, request.client_token, NOW) == (
        "accepted",
        {
            "executionState": {"status": "IN_PROGRESS", "statusDetails": {}, "versionNumber": 2},
            "timestamp": 1_700_000_123,
        },
    )


def test_request_filters_are_the_request_topics_and_their_namespaced_forms() -> None:
    assert mqtt.REQUEST_FILTERS == (
        "$aws/things/+/jobs/get",
        "$aws/things/+/jobs/start-next",
        "$aws/things/+/jobs/+/get",
        "$aws/things/+/jobs/+/update",
        "$aws/things/+/jobs/+/+/get",
        "$aws/things/+/jobs/+/+/update",
    )
