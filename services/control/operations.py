"""The one table of control-plane operations: it drives routing and the coverage document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from services.control import jobs_api, lifecycle_api, things_api

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Operation:
    name: str
    method: str
    path: str
    handler: Handler


OPERATIONS: tuple[Operation, ...] = (
    Operation("CreateThing", "POST", "/things/{thingName}", things_api.create_thing),
    Operation("DescribeThing", "GET", "/things/{thingName}", things_api.describe_thing),
    Operation("AddThingToThingGroup", "PUT", "/thing-groups/addThingToThingGroup", things_api.add_thing_to_thing_group),
    Operation("CreateThingGroup", "POST", "/thing-groups/{thingGroupName}", things_api.create_thing_group),
    Operation("CreateJob", "PUT", "/jobs/{jobId}", jobs_api.create_job),
    Operation("DescribeJob", "GET", "/jobs/{jobId}", jobs_api.describe_job),
    Operation("ListJobs", "GET", "/jobs", jobs_api.list_jobs),
    Operation("GetJobDocument", "GET", "/jobs/{jobId}/job-document", jobs_api.get_job_document),
    Operation("ListJobExecutionsForJob", "GET", "/jobs/{jobId}/things", jobs_api.list_job_executions_for_job),
    Operation("DescribeJobExecution", "GET", "/things/{thingName}/jobs/{jobId}", jobs_api.describe_job_execution),
    Operation("ListJobExecutionsForThing", "GET", "/things/{thingName}/jobs", jobs_api.list_job_executions_for_thing),
    Operation("UpdateJob", "PATCH", "/jobs/{jobId}", lifecycle_api.update_job),
    Operation("CancelJob", "PUT", "/jobs/{jobId}/cancel", lifecycle_api.cancel_job),
    Operation("DeleteJob", "DELETE", "/jobs/{jobId}", lifecycle_api.delete_job),
    Operation(
        "CancelJobExecution", "PUT", "/things/{thingName}/jobs/{jobId}/cancel", lifecycle_api.cancel_job_execution
    ),
    Operation(
        "DeleteJobExecution",
        "DELETE",
        "/things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}",
        lifecycle_api.delete_job_execution,
    ),
)


def add_routes(app: web.Application) -> None:
    for op in OPERATIONS:
        app.router.add_route(op.method, op.path, op.handler, name=op.name)
