"""Job and job-execution operations of the `iot` API."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import asyncpg
from aiohttp import web

from iotjobs.domain import config_blocks, documents, job, managed_templates, schedule, tagging
from iotjobs.domain import validation as v
from iotjobs.domain.arns import Arns
from iotjobs.domain.errors import DomainError, ErrorKind, invalid, not_found
from iotjobs.domain.execution import ALL_STATUSES
from iotjobs.runtime import clock
from iotjobs.wire.http_request import json_body, json_response, optional, query_bool, query_enum, query_int
from iotjobs.wire.pagination import decode_token, encode_token, page_size
from iotjobs.wire.process_details import process_details
from services.control import document_source, templates_api
from services.control.context import Control, control

JOB_STATUSES = ("IN_PROGRESS", "CANCELED", "COMPLETED", "DELETION_IN_PROGRESS", "SCHEDULED")
TARGET_SELECTIONS = (job.CONTINUOUS, job.SNAPSHOT)
NOT_YET_SERVED: tuple[str, ...] = ()
# Stored and echoed as given (after the model's checks); what they do at run time is not served yet.
JOB_CONFIG_BLOCKS: dict[str, Callable[[Any, str], Any]] = {
    "presignedUrlConfig": config_blocks.check_presigned_url_config,
    "jobExecutionsRolloutConfig": config_blocks.check_rollout_config,
    "abortConfig": config_blocks.check_abort_config,
    "jobExecutionsRetryConfig": config_blocks.check_retry_config,
    "schedulingConfig": config_blocks.check_scheduling_config,
    "destinationPackageVersions": config_blocks.check_destination_package_versions,
}


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    """AWS omits absent members; botocore reads a missing member and a null the same way."""
    return {k: val for k, val in data.items() if val is not None}


# --- CreateJob --------------------------------------------------------------------------------


def parse_targets(body: dict[str, Any], arns: Arns) -> tuple[list[str], list[str], list[str]]:
    targets = body.get("targets")
    if not isinstance(targets, list) or not targets:
        raise invalid("targets is required and must list at least one thing or thing group ARN")
    if len(targets) > v.MAX_TARGETS:
        raise invalid(f"targets may list at most {v.MAX_TARGETS} ARNs, got {len(targets)}")
    things: list[str] = []
    groups: list[str] = []
    for arn in targets:
        if not isinstance(arn, str) or len(arn) > 2048:
            raise invalid("each target must be an ARN string of at most 2048 characters")
        kind, name = arns.parse_target(arn)
        v.check_name("target name", name, v.THING_NAME, 128)
        (things if kind == "thing" else groups).append(name)
    return list(targets), things, groups


def parse_create_job(job_id: str, body: dict[str, Any], arns: Arns) -> tuple[job.CreateJob, list[str]]:
    """The CreateJob command (with the things named as targets) and the thing groups named as targets."""
    parameters = templates_api.document_parameters(body)
    targets, things, groups = parse_targets(body, arns)
    document = body.get("document")
    if document is None:
        raise invalid("one of document, documentSource or jobTemplateArn is required")
    v.check_document(document)
    config = {
        member: check(body[member], member)
        for member, check in JOB_CONFIG_BLOCKS.items()
        if body.get(member) is not None
    }
    if parameters is not None:
        config[templates_api.DOCUMENT_PARAMETERS] = dict(parameters)  # echoed by DescribeJob
    if documents.has_presigned_urls(document) and not (config.get("presignedUrlConfig") or {}).get("roleArn"):
        # AWS signs as that role: a job whose document has presigned-URL placeholders must name one.
        raise invalid(
            "the job document has presigned-URL placeholders (${aws:iot:s3-presigned-url...}); "
            "presignedUrlConfig.roleArn is required"
        )
    description = optional(body, "description", str, "a string")
    if description is not None:
        v.check_free_text("description", description, v.MAX_DESCRIPTION_CHARS)
    selection = optional(body, "targetSelection", str, "a string") or job.SNAPSHOT
    if selection not in TARGET_SELECTIONS:
        raise invalid(f"targetSelection must be one of {', '.join(TARGET_SELECTIONS)}, got '{selection}'")
    timeout = optional(body, "timeoutConfig", dict, "an object")
    minutes = None
    if timeout is not None and timeout.get("inProgressTimeoutInMinutes") is not None:
        minutes = v.check_timeout_minutes(
            "timeoutConfig.inProgressTimeoutInMinutes", timeout["inProgressTimeoutInMinutes"]
        )
    namespace = optional(body, "namespaceId", str, "a string")
    if namespace is not None:
        v.check_name("namespaceId", namespace, v.NAMESPACE_ID, 64)
    spec = job.JobSpec(
        targets=targets,
        document=document,
        target_selection=selection,
        description=description,
        in_progress_timeout_minutes=minutes,
        namespace_id=namespace,
        job_template_arn=body.get("jobTemplateArn"),  # checked, and its template applied, by create_job
        tags=tagging.check_tags(body["tags"]) if body.get("tags") is not None else None,
        document_source=body.get("documentSource"),
        config=config or None,
    )
    return job.CreateJob(job_id, asdict(spec), things), groups


async def check_targets_exist(ctl: Control, things: list[str], groups: list[str]) -> None:
    """Every target named must exist: the read models show what the registry has answered for."""
    rows = await ctl.pool.fetch(
        """SELECT 'thing' AS kind, thing_name AS name FROM things WHERE thing_name = ANY($1::text[])
           UNION ALL
           SELECT 'group', group_name FROM thing_groups WHERE group_name = ANY($2::text[])""",
        things,
        groups,
    )
    found = {(row["kind"], row["name"]) for row in rows}
    for kind, names, what in (("thing", things, "Thing"), ("group", groups, "Thing group")):
        missing = [name for name in names if (kind, name) not in found]
        if missing:
            raise not_found(f"{what} {missing[0]} does not exist")


async def check_job_quotas(ctl: Control) -> None:
    """The active-jobs and job-concurrency quotas (aws-iot-jobs.md §6.1), when configured: a job that would
    start past one is LimitExceeded. A scheduled job meets the concurrency quota at its start instead."""
    active, concurrent = ctl.settings.max_active_jobs, ctl.settings.max_concurrent_jobs
    if not active and not concurrent:
        return
    row = await ctl.pool.fetchrow(
        """SELECT count(*) AS active, count(*) FILTER (WHERE processing_targets <> '[]'::jsonb) AS concurrent
           FROM jobs WHERE status = 'IN_PROGRESS'"""
    )
    if active and row["active"] >= active:
        raise DomainError(ErrorKind.LIMIT_EXCEEDED, f"{row['active']} jobs are IN_PROGRESS; the limit is {active}")
    if concurrent and row["concurrent"] >= concurrent:
        raise DomainError(
            ErrorKind.LIMIT_EXCEEDED,
            f"{row['concurrent']} jobs are rolling out; the job concurrency limit is {concurrent}",
        )


async def create_job(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    body = await json_body(request)
    templates_api.document_parameters(body)  # refused before any template or documentSource is read
    if templates_api.is_managed_template_arn(body.get("jobTemplateArn")):
        body = templates_api.job_body_from_managed_template(ctl, body)
    elif body.get("jobTemplateArn") is not None:
        body = await templates_api.job_body_from_template(ctl, body, NOT_YET_SERVED)
    if body.get("documentSource") is not None:
        if body.get("document") is not None:
            raise invalid("give either document or documentSource, not both")
        body = {
            **body,
            "document": await document_source.fetch(
                body["documentSource"], ctl.settings.s3_endpoint, ctl.settings.document_fetch_timeout_seconds
            ),
        }
    command, groups = parse_create_job(job_id, body, ctl.arns)
    try:
        schedule.check(command.spec.get("config"), clock.now(), ctl.settings.seconds_per_minute)
    except schedule.ScheduleError as problem:
        raise invalid(str(problem)) from None
    await check_targets_exist(ctl, command.things, groups)
    if not schedule.is_scheduled(command.spec.get("config")):
        await check_job_quotas(ctl)
    reply = await ctl.write(job.key_for(job_id), command)
    return json_response(_compact({"jobArn": ctl.arns.job(job_id), "jobId": job_id, "description": reply.description}))


# --- reads ------------------------------------------------------------------------------------


async def _job_row(ctl: Control, job_id: str) -> asyncpg.Record:
    row = await ctl.pool.fetchrow("SELECT * FROM jobs WHERE job_id = $1", job_id)
    if row is None:
        raise not_found(f"Job {job_id} does not exist")
    return row


def _scheduled_rollouts(ctl: Control, config: dict[str, Any] | None) -> list[dict[str, str]] | None:
    """The next seven maintenance-window starts of a job that has windows (aws-iot-jobs.md §6.8)."""
    plan = schedule.plan(config, ctl.settings.seconds_per_minute)
    if not plan.windows:
        return None
    return [{"startTime": schedule.format_time(at)} for at in plan.rollouts(clock.now())]


def _is_concurrent(row: asyncpg.Record) -> bool:
    """True while the job is still rolling out (aws-iot-jobs.md §6.1)."""
    return row["status"] in ("IN_PROGRESS", "SCHEDULED") and bool(row["processing_targets"])


async def describe_job(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    # One round trip: the job and its executions per status (kept by migration 006's trigger).
    row = await ctl.pool.fetchrow(
        """SELECT jobs.*, (SELECT jsonb_object_agg(status, n) FROM job_execution_counts WHERE job_id = $1)
               AS by_status
           FROM jobs WHERE job_id = $1""",
        job_id,
    )
    if row is None:
        raise not_found(f"Job {job_id} does not exist")
    spec = row["spec"]
    timeout = spec.get("in_progress_timeout_minutes")
    described = _compact(
        {
            "jobArn": ctl.arns.job(job_id),
            "jobId": job_id,
            "targetSelection": row["target_selection"],
            "status": row["status"],
            "forceCanceled": row["force_canceled"],
            "reasonCode": row["reason_code"],
            "comment": row["comment"],
            "targets": row["targets"],
            "description": row["description"],
            "createdAt": row["created_at"],
            "lastUpdatedAt": row["last_updated_at"],
            "completedAt": row["completed_at"],
            "jobProcessDetails": process_details(row["by_status"], row["processing_targets"]),
            "timeoutConfig": {"inProgressTimeoutInMinutes": timeout} if timeout else None,
            "namespaceId": spec.get("namespace_id"),
            "jobTemplateArn": spec.get("job_template_arn"),
            "isConcurrent": _is_concurrent(row),
            **(spec.get("config") or {}),
            "scheduledJobRollouts": _scheduled_rollouts(ctl, spec.get("config")),
        }
    )
    return json_response(_compact({"job": described, "documentSource": spec.get("document_source")}))


async def get_job_document(request: web.Request) -> web.Response:
    """The document as stored: presigned-URL placeholders are never replaced here (aws-iot-jobs.md §6.11).
    With `beforeSubstitution=true`, a job made from an AWS managed template shows the template's document,
    its `${aws:iot:parameter:<key>}` placeholders unfilled."""
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    row = await _job_row(ctl, job_id)
    document = row["document"]
    arn = row["spec"].get("job_template_arn")
    if query_bool(request, "beforeSubstitution") and (parsed := managed_templates.parse_arn(arn or "")):
        _region, name, version = parsed
        with contextlib.suppress(DomainError):  # a template no longer in the catalog: the stored document
            document = managed_templates.find(name, version).document
    return json_response({"document": document})


async def list_jobs(request: web.Request) -> web.Response:
    ctl = control(request)
    filters = {
        "status": query_enum(request, "status", JOB_STATUSES),
        "targetSelection": query_enum(request, "targetSelection", TARGET_SELECTIONS),
        "thingGroupName": request.query.get("thingGroupName"),
        "thingGroupId": request.query.get("thingGroupId"),
        "namespaceId": request.query.get("namespaceId"),
    }
    if filters["thingGroupName"] is not None:
        v.check_group_name(filters["thingGroupName"])
    if filters["thingGroupId"] is not None:
        v.check_name("thingGroupId", filters["thingGroupId"], re.compile(r"[a-zA-Z0-9\-]+"), 128)
    if filters["namespaceId"] is not None:
        v.check_name("namespaceId", filters["namespaceId"], v.NAMESPACE_ID, 64)
    limit = page_size(request.query.get("maxResults"))
    after = decode_token(request.query.get("nextToken"), filters, (float, str))
    group_name = filters["thingGroupName"]
    if filters["thingGroupId"] is not None:
        group_name = await ctl.pool.fetchval(
            "SELECT group_name FROM thing_groups WHERE group_id = $1", filters["thingGroupId"]
        )
        if group_name is None:
            return json_response({"jobs": []})
    rows = await ctl.pool.fetch(
        """SELECT j.*, (SELECT g.group_id FROM jsonb_array_elements_text(j.targets) WITH ORDINALITY AS t(arn, i)
                         JOIN thing_groups g ON t.arn = $9 || g.group_name
                         ORDER BY t.i LIMIT 1) AS first_group_id
           FROM jobs j
           WHERE ($1::text IS NULL OR j.status = $1)
             AND ($2::text IS NULL OR j.target_selection = $2)
             AND ($3::text IS NULL OR j.targets @> to_jsonb(ARRAY[$4::text]))
             AND ($5::text IS NULL OR j.spec->>'namespace_id' = $5)
             AND ($6::float8 IS NULL OR (j.created_at, j.job_id) > ($6::float8, $7::text))
           ORDER BY j.created_at, j.job_id
           LIMIT $8""",
        filters["status"],
        filters["targetSelection"],
        group_name,
        ctl.arns.thing_group(group_name) if group_name else None,
        filters["namespaceId"],
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
        ctl.arns.thing_group(""),
    )
    page = rows[:limit]
    jobs = [
        _compact(
            {
                "jobArn": ctl.arns.job(r["job_id"]),
                "jobId": r["job_id"],
                "thingGroupId": r["first_group_id"],
                "targetSelection": r["target_selection"],
                "status": r["status"],
                "createdAt": r["created_at"],
                "lastUpdatedAt": r["last_updated_at"],
                "completedAt": r["completed_at"],
                "isConcurrent": _is_concurrent(r),
            }
        )
        for r in page
    ]
    result: dict[str, Any] = {"jobs": jobs}
    if len(rows) > limit:
        result["nextToken"] = encode_token([page[-1]["created_at"], page[-1]["job_id"]], filters)
    return json_response(result)


SUMMARY_COLUMNS = "status, queued_at, started_at, last_updated_at, execution_number, retry_attempt"
"""What a JobExecutionSummary shows: list queries select these (and their keys), not the whole row."""


def _summary(row: asyncpg.Record) -> dict[str, Any]:
    # Built directly rather than through _compact: a list page builds up to 250 of these.
    summary = {
        "status": row["status"],
        "queuedAt": row["queued_at"],
        "lastUpdatedAt": row["last_updated_at"],
        "executionNumber": row["execution_number"],
        "retryAttempt": row["retry_attempt"],
    }
    if row["started_at"] is not None:
        summary["startedAt"] = row["started_at"]
    return summary


async def describe_job_execution(request: web.Request) -> web.Response:
    ctl = control(request)
    thing = v.check_thing_name(request.match_info["thingName"])
    job_id = v.check_job_id(request.match_info["jobId"])
    number = query_int(request, "executionNumber")
    row = await ctl.pool.fetchrow(
        """SELECT * FROM job_executions WHERE job_id = $1 AND thing_name = $2
             AND ($3::bigint IS NULL OR execution_number = $3)
           ORDER BY execution_number DESC LIMIT 1""",
        job_id,
        thing,
        number,
    )
    if row is None:
        raise not_found(f"Job execution for job {job_id} on thing {thing} does not exist")
    seconds_left = None
    if row["status"] == "IN_PROGRESS" and row["deadline"] is not None:
        seconds_left = max(0, int(row["deadline"] - clock.now()))
    execution = _compact(
        {
            "jobId": job_id,
            "status": row["status"],
            "forceCanceled": row["force_canceled"],
            "statusDetails": {"detailsMap": row["status_details"]},
            "thingArn": ctl.arns.thing(thing),
            "queuedAt": row["queued_at"],
            "startedAt": row["started_at"],
            "lastUpdatedAt": row["last_updated_at"],
            "executionNumber": row["execution_number"],
            "versionNumber": row["version_number"],
            "approximateSecondsBeforeTimedOut": seconds_left,
        }
    )
    return json_response({"execution": execution})


async def list_job_executions_for_job(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    filters = {"job": job_id, "status": query_enum(request, "status", ALL_STATUSES)}
    limit = page_size(request.query.get("maxResults"))
    after = decode_token(request.query.get("nextToken"), filters, (float, str))
    # Every execution (retries and re-runs too), in queue order: an index range walk that stops after the page
    # (migration 007). The page's start is in the index condition only when it is written as one, hence two
    # statements. Two executions of one thing are never queued at the same instant.
    after_page = "AND (queued_at, thing_name) > ($3::float8, $4::text)"
    if after is None:
        after_page = "AND $3::float8 IS NULL AND $4::text IS NULL"  # every parameter must appear
    rows = await ctl.pool.fetch(
        f"""SELECT thing_name, {SUMMARY_COLUMNS} FROM job_executions e
           WHERE job_id = $1 {after_page}
             AND ($2::text IS NULL OR status = $2)
           ORDER BY queued_at, thing_name LIMIT $5""",
        job_id,
        filters["status"],
        after[0] if after else None,
        after[1] if after else None,
        limit + 1,
    )
    if not rows:
        await _job_row(ctl, job_id)  # no executions, or no such job
    page = rows[:limit]
    thing_arn = ctl.arns.thing("")  # the ARN of a thing is this prefix and its name
    result: dict[str, Any] = {
        "executionSummaries": [
            {"thingArn": thing_arn + r["thing_name"], "jobExecutionSummary": _summary(r)} for r in page
        ]
    }
    if len(rows) > limit:
        result["nextToken"] = encode_token([page[-1]["queued_at"], page[-1]["thing_name"]], filters)
    return json_response(result)


async def list_job_executions_for_thing(request: web.Request) -> web.Response:
    ctl = control(request)
    thing = v.check_thing_name(request.match_info["thingName"])
    filters = {
        "thing": thing,
        "status": query_enum(request, "status", ALL_STATUSES),
        "namespaceId": request.query.get("namespaceId"),
        "jobId": request.query.get("jobId"),
    }
    if filters["jobId"] is not None:
        v.check_job_id(filters["jobId"])
    if filters["namespaceId"] is not None:
        v.check_name("namespaceId", filters["namespaceId"], v.NAMESPACE_ID, 64)
    limit = page_size(request.query.get("maxResults"))
    after = decode_token(request.query.get("nextToken"), filters, (float, str, int))
    rows = await ctl.pool.fetch(
        f"""SELECT job_id, {SUMMARY_COLUMNS} FROM job_executions e
           WHERE thing_name = $1
             AND ($2::text IS NULL OR job_id = $2)
             AND ($3::text IS NULL OR status = $3)
             AND ($4::text IS NULL OR namespace_id = $4)
             AND ($5::float8 IS NULL OR (queued_at, job_id, execution_number) > ($5::float8, $6::text, $7::bigint))
           ORDER BY queued_at, job_id, execution_number LIMIT $8""",
        thing,
        filters["jobId"],
        filters["status"],
        filters["namespaceId"],
        after[0] if after else None,
        after[1] if after else None,
        after[2] if after else None,
        limit + 1,
    )
    page = rows[:limit]
    result: dict[str, Any] = {
        "executionSummaries": [{"jobId": r["job_id"], "jobExecutionSummary": _summary(r)} for r in page]
    }
    if len(rows) > limit:
        last = page[-1]
        result["nextToken"] = encode_token([last["queued_at"], last["job_id"], last["execution_number"]], filters)
    return json_response(result)
