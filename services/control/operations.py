"""The one table of control-plane operations: it drives routing and the coverage document."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from iotjobs.wire.http_model import checked, route_path
from iotjobs.wire.model import ServiceModel
from services.control import events_api, jobs_api, lifecycle_api, tags_api, templates_api, things_api

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
    Operation("DeleteThing", "DELETE", "/things/{thingName}", things_api.delete_thing),
    Operation("ListThings", "GET", "/things", things_api.list_things),
    Operation("DescribeThingGroup", "GET", "/thing-groups/{thingGroupName}", things_api.describe_thing_group),
    Operation("DeleteThingGroup", "DELETE", "/thing-groups/{thingGroupName}", things_api.delete_thing_group),
    Operation("ListThingGroups", "GET", "/thing-groups", things_api.list_thing_groups),
    Operation(
        "RemoveThingFromThingGroup",
        "PUT",
        "/thing-groups/removeThingFromThingGroup",
        things_api.remove_thing_from_thing_group,
    ),
    Operation(
        "ListThingsInThingGroup", "GET", "/thing-groups/{thingGroupName}/things", things_api.list_things_in_thing_group
    ),
    Operation(
        "ListThingGroupsForThing", "GET", "/things/{thingName}/thing-groups", things_api.list_thing_groups_for_thing
    ),
    Operation("UpdateThing", "PATCH", "/things/{thingName}", things_api.update_thing),
    Operation("UpdateThingGroup", "PATCH", "/thing-groups/{thingGroupName}", things_api.update_thing_group),
    Operation(
        "UpdateThingGroupsForThing",
        "PUT",
        "/thing-groups/updateThingGroupsForThing",
        things_api.update_thing_groups_for_thing,
    ),
    Operation("DescribeEndpoint", "GET", "/endpoint", things_api.describe_endpoint),
    Operation("UpdateEventConfigurations", "PATCH", "/event-configurations", events_api.update_event_configurations),
    Operation("DescribeEventConfigurations", "GET", "/event-configurations", events_api.describe_event_configurations),
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
    Operation("AssociateTargetsWithJob", "POST", "/jobs/{jobId}/targets", lifecycle_api.associate_targets_with_job),
    Operation(
        "CancelJobExecution", "PUT", "/things/{thingName}/jobs/{jobId}/cancel", lifecycle_api.cancel_job_execution
    ),
    Operation(
        "DeleteJobExecution",
        "DELETE",
        "/things/{thingName}/jobs/{jobId}/executionNumber/{executionNumber}",
        lifecycle_api.delete_job_execution,
    ),
    Operation("CreateJobTemplate", "PUT", "/job-templates/{jobTemplateId}", templates_api.create_job_template),
    Operation("DescribeJobTemplate", "GET", "/job-templates/{jobTemplateId}", templates_api.describe_job_template),
    Operation("ListJobTemplates", "GET", "/job-templates", templates_api.list_job_templates),
    Operation("DeleteJobTemplate", "DELETE", "/job-templates/{jobTemplateId}", templates_api.delete_job_template),
    Operation(
        "DescribeManagedJobTemplate",
        "GET",
        "/managed-job-templates/{templateName}",
        templates_api.describe_managed_job_template,
    ),
    Operation("ListManagedJobTemplates", "GET", "/managed-job-templates", templates_api.list_managed_job_templates),
    Operation("TagResource", "POST", "/tags", tags_api.tag_resource),
    Operation("UntagResource", "POST", "/untag", tags_api.untag_resource),
    Operation("ListTagsForResource", "GET", "/tags", tags_api.list_tags_for_resource),
)


def add_routes(app: web.Application) -> None:
    model = ServiceModel.load("iot")
    for op in OPERATIONS:
        app.router.add_route(op.method, route_path(op.path), checked(model, op.name, op.handler), name=op.name)
