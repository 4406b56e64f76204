"""The device MQTT API on `$aws/things/{thing}/jobs/...`: topics, request payloads and response shapes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from iotjobs.domain import thing as t
from iotjobs.domain import validation as v
from iotjobs.domain.errors import DomainError, ErrorKind, Rejection, invalid

REQUEST_FILTERS = (
    "$aws/things/+/jobs/get",
    "$aws/things/+/jobs/start-next",
    "$aws/things/+/jobs/+/get",
    "$aws/things/+/jobs/+/update",
    # namespaced jobs, in the form AWS IoT Greengrass uses: .../jobs/{jobId}/namespace-{ns}/get|update
    "$aws/things/+/jobs/+/+/get",
    "$aws/things/+/jobs/+/+/update",
)
NAMESPACE_SEGMENT = "namespace-"

BRIDGED_PREFIX = "iotjobs/things/"
DEVICE_PREFIX = "$aws/things/"


def ingress_filters(mode: str, group: str) -> list[str]:
    """The subscriptions a dataplane instance takes for `mode` (see Settings.mqtt_ingress)."""
    if mode == "direct":
        return list(REQUEST_FILTERS)
    if mode == "bridge":
        return [f"$share/{group}/{f.replace(DEVICE_PREFIX, BRIDGED_PREFIX, 1)}" for f in REQUEST_FILTERS]
    if mode == "shared":
        return [f"$share/{group}/{f}" for f in REQUEST_FILTERS]
    raise ValueError(f"unknown MQTT ingress mode {mode!r}")  # Settings accepts only the modes above


def device_topic(topic: str) -> str:
    """The topic a device published to, also when it arrives through the loopback bridge."""
    return DEVICE_PREFIX + topic[len(BRIDGED_PREFIX) :] if topic.startswith(BRIDGED_PREFIX) else topic


THING_OPERATIONS = {"get": "GetPendingJobExecutions", "start-next": "StartNextPendingJobExecution"}


def operation_of(topic: str) -> str:
    """The device API operation a request topic names (its metrics label); `unknown` for no operation."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[3] != "jobs":
        return "unknown"
    if len(parts) == 5:
        return THING_OPERATIONS.get(parts[4], "unknown")
    last = parts[-1]
    if last == "get":
        return "DescribeJobExecution"
    return "UpdateJobExecution" if last == "update" else "unknown"


# Domain rejection kind -> MQTT ErrorResponse code.
CODES: dict[str, str] = {
    ErrorKind.INVALID_REQUEST: "InvalidRequest",
    ErrorKind.INVALID_JSON: "InvalidJson",
    ErrorKind.RESOURCE_NOT_FOUND: "ResourceNotFound",
    ErrorKind.INVALID_STATE_TRANSITION: "InvalidStateTransition",
    ErrorKind.VERSION_MISMATCH: "VersionMismatch",
    ErrorKind.TERMINAL_STATE: "TerminalStateReached",
    ErrorKind.THROTTLED: "RequestThrottled",
    ErrorKind.INTERNAL: "InternalError",
    ErrorKind.INVALID_TOPIC: "InvalidTopic",
}


@dataclass(frozen=True)
class Request:
    thing_name: str
    topic: str
    command: Any
    client_token: str | None


class MqttRejected(Exception):
    """A request refused before it reaches the thing's decider."""

    def __init__(self, topic: str, rejection: Rejection, client_token: str | None) -> None:
        super().__init__(rejection.message)
        self.topic = topic
        self.rejection = rejection
        self.client_token = client_token


def _payload(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DomainError(ErrorKind.INVALID_JSON, f"payload is not valid UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DomainError(ErrorKind.INVALID_JSON, "payload must be a JSON object")
    return body


def _get(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise invalid(f"{name} must be {what}")
    return value


def parse_request(topic: str, raw: bytes) -> Request:
    """Turn a publish on a request topic into the thing command it asks for."""
    parts = topic.split("/")
    client_token = None
    try:
        body = _payload(raw)
        token = body.get("clientToken")
        client_token = token if isinstance(token, str) else None
        if token is not None and (not isinstance(token, str) or len(token) > 64):
            raise invalid("clientToken must be a string of at most 64 characters")
        if len(parts) < 5 or parts[:2] != ["$aws", "things"] or parts[3] != "jobs":
            raise invalid(f"topic {topic} is not a jobs request topic")
        thing_name = v.check_thing_name(parts[2])
        return Request(thing_name, topic, _command(parts[4:], body, client_token), client_token)
    except DomainError as err:
        raise MqttRejected(topic, err.rejection(), client_token) from None


def _command(rest: list[str], body: dict[str, Any], client_token: str | None) -> Any:
    if rest == ["get"]:
        return t.GetPending()
    if rest == ["start-next"]:
        return t.StartNext(
            status_details=_get(body, "statusDetails", dict, "a map of string to string"),
            step_timeout_minutes=_get(body, "stepTimeoutInMinutes", int, "an integer"),
            client_token=client_token,
        )
    namespace = None
    if len(rest) == 3:
        if not rest[1].startswith(NAMESPACE_SEGMENT):
            raise DomainError(
                ErrorKind.INVALID_TOPIC, f"no jobs operation at topic segment {'/'.join(rest)}; expected namespace-<id>"
            )
        namespace = v.check_name("namespaceId", rest[1].removeprefix(NAMESPACE_SEGMENT), v.NAMESPACE_ID, 64)
        rest = [rest[0], rest[2]]
    if len(rest) == 2 and rest[1] == "get":
        job_id = rest[0] if rest[0] == t.NEXT else v.check_job_id(rest[0])
        include = _get(body, "includeJobDocument", bool, "a boolean")
        return t.DescribeExecution(
            job_id=job_id,
            execution_number=_get(body, "executionNumber", int, "an integer"),
            include_document=True if include is None else include,
            namespace_id=namespace,
        )
    if len(rest) == 2 and rest[1] == "update":
        job_id = v.check_job_id(rest[0])
        status = _get(body, "status", str, "a string")
        if status is None:
            raise invalid("status is required")
        return t.UpdateExecution(
            job_id=job_id,
            status=status,
            status_details=_get(body, "statusDetails", dict, "a map of string to string"),
            expected_version=_get(body, "expectedVersion", int, "an integer"),
            execution_number=_get(body, "executionNumber", int, "an integer"),
            include_state=bool(_get(body, "includeJobExecutionState", bool, "a boolean")),
            include_document=bool(_get(body, "includeJobDocument", bool, "a boolean")),
            step_timeout_minutes=_get(body, "stepTimeoutInMinutes", int, "an integer"),
            client_token=client_token,
            namespace_id=namespace,
        )
    raise DomainError(ErrorKind.INVALID_TOPIC, f"no jobs operation at topic segment {'/'.join(rest)}")


# --- responses --------------------------------------------------------------------------------


def _seconds(value: float | None) -> int | None:
    return None if value is None else int(value)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: val for k, val in data.items() if val is not None}


def summary(execution: dict[str, Any]) -> dict[str, Any]:
    return _compact(
        {
            "jobId": execution["job_id"],
            "queuedAt": _seconds(execution["queued_at"]),
            "startedAt": _seconds(execution["started_at"]),
            "lastUpdatedAt": _seconds(execution["last_updated_at"]),
            "versionNumber": execution["version_number"],
            "executionNumber": execution["execution_number"],
        }
    )


def execution_view(execution: dict[str, Any], include_document: bool = True) -> dict[str, Any]:
    return _compact(
        {
            "jobId": execution["job_id"],
            "thingName": execution["thing_name"],
            "jobDocument": orjson.loads(execution["document"]) if include_document else None,
            "status": execution["status"],
            "statusDetails": execution["status_details"],
            "queuedAt": _seconds(execution["queued_at"]),
            "startedAt": _seconds(execution["started_at"]),
            "lastUpdatedAt": _seconds(execution["last_updated_at"]),
            "versionNumber": execution["version_number"],
            "executionNumber": execution["execution_number"],
        }
    )


def _state(execution: dict[str, Any]) -> dict[str, Any]:
    return {
        "status": execution["status"],
        "statusDetails": execution["status_details"],
        "versionNumber": execution["version_number"],
    }


def reply_payload(reply: Any, client_token: str | None, now: float) -> tuple[str, dict[str, Any]]:
    """('accepted' | 'rejected', payload) for a decider's reply to a device request."""
    body: dict[str, Any]
    outcome = "accepted"
    match reply:
        case Rejection():
            outcome = "rejected"
            body = {"code": CODES.get(reply.kind, "InternalError"), "message": reply.message}
            if "executionState" in reply.detail:
                body["executionState"] = reply.detail["executionState"]
        case t.PendingReply():
            body = {
                "inProgressJobs": [summary(e) for e in reply.in_progress],
                "queuedJobs": [summary(e) for e in reply.queued],
            }
        case t.ExecutionReply():
            body = {}
            if reply.execution is not None:
                body["execution"] = execution_view(reply.execution, reply.include_document)
        case t.UpdateReply():
            body = {}
            if reply.include_state:
                body["executionState"] = _state(reply.execution)
            if reply.include_document:
                body["jobDocument"] = orjson.loads(reply.execution["document"])
        case _:
            raise TypeError(f"no MQTT shape for {type(reply).__name__}")
    body["timestamp"] = int(now)
    if client_token is not None:
        body["clientToken"] = client_token
    return outcome, body


def notification(effect: Any, now: float) -> tuple[str, dict[str, Any]]:
    """(topic, payload) for notify and notify-next."""
    match effect:
        case t.NotifyPending():
            jobs: dict[str, list[dict[str, Any]]] = {}
            for execution in effect.executions:
                jobs.setdefault(execution["status"], []).append(summary(execution))
            topic = f"$aws/things/{effect.thing_name}/jobs/notify{_namespaced(effect.namespace_id)}"
            return topic, {"timestamp": int(now), "jobs": jobs}
        case t.NotifyNext():
            payload: dict[str, Any] = {"timestamp": int(now)}
            if effect.execution is not None:
                payload["execution"] = execution_view(effect.execution)
            return f"$aws/things/{effect.thing_name}/jobs/notify-next{_namespaced(effect.namespace_id)}", payload
    raise TypeError(f"no MQTT notification for {type(effect).__name__}")


def _namespaced(namespace_id: str | None) -> str:
    return "" if namespace_id is None else f"-{NAMESPACE_SEGMENT}{namespace_id}"
