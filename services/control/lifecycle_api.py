"""Changing and ending jobs and executions: UpdateJob, CancelJob, DeleteJob, CancelJobExecution,
DeleteJobExecution."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from iotjobs.domain import config_blocks, job, thing
from iotjobs.domain import validation as v
from iotjobs.domain.errors import DomainError, ErrorKind, invalid
from iotjobs.wire.http_request import json_body, json_response, optional, query_bool
from services.control import jobs_api
from services.control.context import Control, control

REASON_CODE = re.compile(r"[A-Z0-9_]+")
MAX_DELETIONS_IN_PROGRESS = 10
UPDATE_BLOCKS = {
    "presignedUrlConfig": config_blocks.check_presigned_url_config,
    "jobExecutionsRolloutConfig": config_blocks.check_rollout_config,
    "abortConfig": config_blocks.check_abort_config,
    "jobExecutionsRetryConfig": config_blocks.check_retry_config,
}


async def _check_namespace(ctl: Control, request: web.Request, job_id: str) -> None:
    """A `namespaceId` query must name the job's own namespace."""
    namespace = request.query.get("namespaceId")
    if namespace is None:
        return
    v.check_name("namespaceId", namespace, v.NAMESPACE_ID, 64)
    spec = await ctl.pool.fetchval("SELECT spec FROM jobs WHERE job_id = $1", job_id)
    if spec is not None and spec.get("namespace_id") != namespace:
        raise invalid(f"Job {job_id} is not in namespace {namespace}")


async def update_job(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    body = await json_body(request)
    await _check_namespace(ctl, request, job_id)
    changes: dict[str, Any] = {}
    blocks = {member: check(body[member], member) for member, check in UPDATE_BLOCKS.items() if member in body}
    if blocks:
        changes["config"] = blocks
    description = optional(body, "description", str, "a string")
    if description is not None:
        changes["description"] = v.check_free_text("description", description, v.MAX_DESCRIPTION_CHARS)
    timeout = optional(body, "timeoutConfig", dict, "an object")
    if timeout is not None and timeout.get("inProgressTimeoutInMinutes") is not None:
        changes["in_progress_timeout_minutes"] = v.check_timeout_minutes(
            "timeoutConfig.inProgressTimeoutInMinutes", timeout["inProgressTimeoutInMinutes"]
        )
    await ctl.write(job.key_for(job_id), job.UpdateJob(job_id, changes))
    return json_response({})


async def cancel_job(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    body = await json_body(request)
    reason_code = optional(body, "reasonCode", str, "a string")
    if reason_code is not None:
        v.check_name("reasonCode", reason_code, REASON_CODE, 128)
    comment = optional(body, "comment", str, "a string")
    if comment is not None:
        v.check_free_text("comment", comment, v.MAX_DESCRIPTION_CHARS)
    command = job.CancelJob(job_id, bool(query_bool(request, "force")), reason_code, comment)
    reply = await ctl.write(job.key_for(job_id), command)
    result = {"jobArn": ctl.arns.job(job_id), "jobId": job_id}
    if reply.description is not None:
        result["description"] = reply.description
    return json_response(result)


async def delete_job(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    force = bool(query_bool(request, "force"))
    await _check_namespace(ctl, request, job_id)
    deleting = await ctl.pool.fetchval(
        "SELECT count(*) FROM jobs WHERE status = 'DELETION_IN_PROGRESS' AND job_id <> $1", job_id
    )
    # AWS's quota; read from the read model, so concurrent deletes may briefly overshoot it.
    if deleting >= MAX_DELETIONS_IN_PROGRESS:
        raise DomainError(
            ErrorKind.LIMIT_EXCEEDED,
            f"{deleting} jobs are already being deleted; at most {MAX_DELETIONS_IN_PROGRESS} may be at once",
        )
    await ctl.write(job.key_for(job_id), job.DeleteJob(job_id, force))
    return json_response({})


async def cancel_job_execution(request: web.Request) -> web.Response:
    ctl = control(request)
    thing_name = v.check_thing_name(request.match_info["thingName"])
    job_id = v.check_job_id(request.match_info["jobId"])
    body = await json_body(request)
    expected = optional(body, "expectedVersion", int, "an integer")
    details = optional(body, "statusDetails", dict, "a map of string to string")
    command = thing.CancelExecution(
        job_id,
        force=bool(query_bool(request, "force")),
        expected_version=expected,
        status_details=details,
    )
    await ctl.write(thing.key_for(thing_name), command)
    return json_response({})


async def delete_job_execution(request: web.Request) -> web.Response:
    ctl = control(request)
    thing_name = v.check_thing_name(request.match_info["thingName"])
    job_id = v.check_job_id(request.match_info["jobId"])
    try:
        number = int(request.match_info["executionNumber"])
    except ValueError:
        raise invalid(f"executionNumber must be an integer, got '{request.match_info['executionNumber']}'") from None
    await _check_namespace(ctl, request, job_id)
    command = thing.DeleteExecution(job_id, execution_number=number, force=bool(query_bool(request, "force")))
    await ctl.write(thing.key_for(thing_name), command)
    return json_response({})


async def associate_targets_with_job(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    body = await json_body(request)
    await _check_namespace(ctl, request, job_id)
    targets, things, groups = jobs_api.parse_targets(body, ctl.arns)
    comment = optional(body, "comment", str, "a string")
    if comment is not None:
        v.check_free_text("comment", comment, v.MAX_DESCRIPTION_CHARS)
    await jobs_api.check_targets_exist(ctl, things, groups)
    reply = await ctl.write(job.key_for(job_id), job.AssociateTargets(job_id, targets, things, comment))
    result = {"jobArn": ctl.arns.job(job_id), "jobId": job_id}
    if reply.description is not None:
        result["description"] = reply.description
    return json_response(result)
