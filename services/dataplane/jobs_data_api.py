"""The `iot-jobs-data` HTTPS API: the device operations over HTTP, decided by the thing's owner."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from iotjobs.domain import thing as t
from iotjobs.domain.errors import DomainError, ErrorKind, Rejection
from iotjobs.domain.throttle import Throttle
from iotjobs.runtime import clock
from iotjobs.runtime.bus import CommandBus, ReplyTimeout
from iotjobs.runtime.projection import ProjectionWaiter
from iotjobs.wire.http_errors import DATA, from_rejection, unavailable, unknown_operation
from iotjobs.wire.http_model import checked, request_params, route_path
from iotjobs.wire.http_request import json_response
from iotjobs.wire.model import ServiceModel
from iotjobs.wire.mqtt import summary
from iotjobs.wire.writes import consistent_write
from services.dataplane.documents import DeviceDocuments


@dataclass(frozen=True)
class Projection:
    """The read models' progress, followed only in strict consistency."""

    waiter: ProjectionWaiter | None


BUS_KEY = web.AppKey("bus", CommandBus)
THROTTLE_KEY = web.AppKey("throttle", Throttle)
PROJECTION_KEY = web.AppKey("projection", Projection)
DOCUMENTS_KEY = web.AppKey("documents", DeviceDocuments)
MODEL = ServiceModel.load("iot-jobs-data")


async def _decide(request: web.Request, thing_name: str, command: Any, *, write: bool = False) -> Any:
    """A read is answered from the owner's memory; a write as the consistency setting says. The reply's job
    document is the one the device gets (presigned URLs signed now)."""
    return request.app[DOCUMENTS_KEY].for_device(await _decided(request, thing_name, command, write=write))


async def _decided(request: web.Request, thing_name: str, command: Any, *, write: bool) -> Any:
    if not request.app[THROTTLE_KEY].allow(thing_name, clock.now()):
        raise from_rejection(
            DomainError(ErrorKind.THROTTLED, f"too many requests for thing {thing_name}").rejection(), DATA
        )
    bus = request.app[BUS_KEY]
    if write:
        waiter = request.app[PROJECTION_KEY].waiter
        return await consistent_write(bus, waiter, bus.settings, t.key_for(thing_name), command, DATA)
    try:
        reply, _positions = await bus.request(t.key_for(thing_name), command)
    except ReplyTimeout as exc:
        raise unavailable(f"{exc}; try again") from None
    if isinstance(reply, Rejection):
        raise from_rejection(reply, DATA)
    return reply


def execution_view(execution: dict[str, Any], include_document: bool, now: float) -> dict[str, Any]:
    """JobExecution as the HTTP data plane shapes it: integer seconds, flat statusDetails, document as text."""
    view = {
        "jobId": execution["job_id"],
        "thingName": execution["thing_name"],
        "status": execution["status"],
        "statusDetails": execution["status_details"],
        "queuedAt": int(execution["queued_at"]),
        "lastUpdatedAt": int(execution["last_updated_at"]),
        "versionNumber": execution["version_number"],
        "executionNumber": execution["execution_number"],
    }
    if execution["started_at"] is not None:
        view["startedAt"] = int(execution["started_at"])
    deadlines = [d for d in (execution["in_progress_deadline"], execution["step_deadline"]) if d is not None]
    if execution["status"] == "IN_PROGRESS" and deadlines:
        view["approximateSecondsBeforeTimedOut"] = max(0, int(min(deadlines) - now))
    if include_document:
        view["jobDocument"] = execution["document"]
    return view


async def get_pending_job_executions(request: web.Request) -> web.Response:
    params = await request_params(MODEL, "GetPendingJobExecutions", request)
    reply = await _decide(request, params["thingName"], t.GetPending())
    return json_response(
        {"inProgressJobs": [summary(e) for e in reply.in_progress], "queuedJobs": [summary(e) for e in reply.queued]}
    )


async def start_next_pending_job_execution(request: web.Request) -> web.Response:
    params = await request_params(MODEL, "StartNextPendingJobExecution", request)
    command = t.StartNext(params.get("statusDetails"), params.get("stepTimeoutInMinutes"))
    reply = await _decide(request, params["thingName"], command, write=True)
    if reply.execution is None:
        return json_response({})
    return json_response({"execution": execution_view(reply.execution, True, clock.now())})


async def describe_job_execution(request: web.Request) -> web.Response:
    params = await request_params(MODEL, "DescribeJobExecution", request)
    include = params.get("includeJobDocument", True)
    command = t.DescribeExecution(params["jobId"], params.get("executionNumber"), include)
    reply = await _decide(request, params["thingName"], command)
    if reply.execution is None:
        return json_response({})
    return json_response({"execution": execution_view(reply.execution, include, clock.now())})


async def update_job_execution(request: web.Request) -> web.Response:
    params = await request_params(MODEL, "UpdateJobExecution", request)
    command = t.UpdateExecution(
        job_id=params["jobId"],
        status=params["status"],
        status_details=params.get("statusDetails"),
        expected_version=params.get("expectedVersion"),
        execution_number=params.get("executionNumber"),
        include_state=bool(params.get("includeJobExecutionState")),
        include_document=bool(params.get("includeJobDocument")),
        step_timeout_minutes=params.get("stepTimeoutInMinutes"),
    )
    reply = await _decide(request, params["thingName"], command, write=True)
    body: dict[str, Any] = {}
    if reply.include_state:
        execution = reply.execution
        body["executionState"] = {
            "status": execution["status"],
            "statusDetails": execution["status_details"],
            "versionNumber": execution["version_number"],
        }
    if reply.include_document:
        body["jobDocument"] = reply.execution["document"]
    return json_response(body)


async def start_next_by_label(request: web.Request) -> web.StreamResponse:
    """botocore sends `$next` literally here, others percent-encode it; both arrive decoded as a label."""
    if request.match_info["jobId"] != t.NEXT:
        raise unknown_operation(request.method, request.path)
    return await start_next_pending_job_execution(request)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
OPERATIONS: tuple[tuple[str, str, str, Handler], ...] = (
    ("GetPendingJobExecutions", "GET", "/things/{thingName}/jobs", get_pending_job_executions),
    ("StartNextPendingJobExecution", "PUT", "/things/{thingName}/jobs/{jobId}", start_next_by_label),
    ("DescribeJobExecution", "GET", "/things/{thingName}/jobs/{jobId}", describe_job_execution),
    ("UpdateJobExecution", "POST", "/things/{thingName}/jobs/{jobId}", update_job_execution),
)
"""The served operations; the model's URI of StartNext is `/things/{thingName}/jobs/$next`."""


def add_routes(app: web.Application) -> None:
    for name, method, path, handler in OPERATIONS:
        app.router.add_route(method, route_path(path), checked(MODEL, name, handler), name=name)
