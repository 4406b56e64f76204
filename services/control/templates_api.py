"""Job templates of the `iot` API (aws-iot-jobs.md §3.3): CreateJobTemplate, DescribeJobTemplate,
ListJobTemplates, DeleteJobTemplate, the AWS managed templates (DescribeManagedJobTemplate,
ListManagedJobTemplates), and what CreateJob takes from a template (`jobTemplateArn`, §3.2).

A template is a snapshot. CreateJobTemplate with `jobArn` reads the job from the read model here and sends
the copied document and configuration in the command; CreateJob with `jobTemplateArn` reads the template
the same way and continues as if the request had carried the template's document and blocks itself.
"""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from iotjobs.domain import config_blocks, managed_templates, tagging, template
from iotjobs.domain import validation as v
from iotjobs.domain.errors import invalid, not_found
from iotjobs.wire.http_request import json_body, json_response, optional
from iotjobs.wire.pagination import decode_token, encode_token, page_size
from services.control.context import Control, control

MAX_DOCUMENT_SOURCE_CHARS = 1350
MAX_TEMPLATE_ARN_CHARS = 1600
TEMPLATE_ARN = re.compile(r"arn:[!-~]+")
DOCUMENT_MEMBERS = ("jobArn", "document", "documentSource")
LIST_FILTERS = {"list": "jobTemplates"}
DOCUMENT_PARAMETERS = "documentParameters"


def check_template_id(value: Any, member: str = "jobTemplateId") -> str:
    return v.check_name(member, value, v.JOB_ID, 64)


def _compact(data: dict[str, Any]) -> dict[str, Any]:
    return {k: val for k, val in data.items() if val is not None}


# --- CreateJobTemplate ------------------------------------------------------------------------


def parse_create_job_template(body: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The template's spec (every member but `jobArn` and `tags`, validated, in wire form) and its tags."""
    given = [member for member in DOCUMENT_MEMBERS if body.get(member) is not None]
    if len(given) != 1:
        raise invalid(
            "exactly one of jobArn, document and documentSource is required"
            + (f"; got {', '.join(given)}" if given else "")
        )
    if body.get("description") is None:
        raise invalid("description is required")
    spec: dict[str, Any] = {
        "description": v.check_free_text("description", body["description"], v.MAX_DESCRIPTION_CHARS)
    }
    if body.get("document") is not None:
        spec["document"] = v.check_document(body["document"])
    source = optional(body, "documentSource", str, "a string")
    if source is not None:
        if not 1 <= len(source) <= MAX_DOCUMENT_SOURCE_CHARS:
            raise invalid(f"documentSource must be 1 to {MAX_DOCUMENT_SOURCE_CHARS} characters long, got {len(source)}")
        spec["documentSource"] = source
    for member, check in config_blocks.TEMPLATE_BLOCKS.items():
        if body.get(member) is not None:
            spec[member] = check(body[member], member)
    tags = tagging.check_tags(body["tags"]) if body.get("tags") is not None else {}
    return spec, tags


def job_config(spec: dict[str, Any]) -> dict[str, Any]:
    """The configuration blocks of a job (its read-model `spec`), as a template stores them.

    A job keeps its in-progress timeout as `in_progress_timeout_minutes`; any block a job keeps under its
    wire name (e.g. `abortConfig`) is copied as it is.
    """
    blocks: dict[str, Any] = {}
    if spec.get("in_progress_timeout_minutes") is not None:
        blocks["timeoutConfig"] = {"inProgressTimeoutInMinutes": spec["in_progress_timeout_minutes"]}
    stored = spec.get("config") or {}
    for member in config_blocks.TEMPLATE_BLOCKS:
        if stored.get(member) is not None:
            blocks[member] = stored[member]
    return blocks


async def _copy_job(ctl: Control, job_arn: Any) -> dict[str, Any]:
    if not isinstance(job_arn, str):
        raise invalid("jobArn must be a string")
    _kind, job_id = ctl.arns.parse_resource(job_arn, "jobArn", (tagging.JOB,))
    v.check_job_id(job_id, "the job id in jobArn")
    row = await ctl.pool.fetchrow("SELECT document, spec FROM jobs WHERE job_id = $1", job_id)
    if row is None:
        raise not_found(f"Job {job_id} does not exist")
    return {"document": row["document"], **job_config(row["spec"])}


async def create_job_template(request: web.Request) -> web.Response:
    ctl = control(request)
    template_id = check_template_id(request.match_info["jobTemplateId"])
    body = await json_body(request)
    spec, tags = parse_create_job_template(body)
    if body.get("jobArn") is not None:
        spec = {**await _copy_job(ctl, body["jobArn"]), **spec}  # blocks given in the request win
    await ctl.write(template.key_for(template_id), template.CreateJobTemplate(template_id, spec, tags))
    return json_response({"jobTemplateArn": ctl.arns.job_template(template_id), "jobTemplateId": template_id})


# --- reads and delete -------------------------------------------------------------------------


async def describe_job_template(request: web.Request) -> web.Response:
    ctl = control(request)
    template_id = check_template_id(request.match_info["jobTemplateId"])
    row = await ctl.pool.fetchrow("SELECT spec, created_at FROM job_templates WHERE template_id = $1", template_id)
    if row is None:
        raise not_found(f"Job template {template_id} does not exist")
    return json_response(
        {
            "jobTemplateArn": ctl.arns.job_template(template_id),
            "jobTemplateId": template_id,
            **_compact(row["spec"]),
            "createdAt": row["created_at"],
        }
    )


async def list_job_templates(request: web.Request) -> web.Response:
    ctl = control(request)
    limit = page_size(request.query.get("maxResults"))
    after = decode_token(request.query.get("nextToken"), LIST_FILTERS, (str,))
    rows = await ctl.pool.fetch(
        """SELECT template_id, description, created_at FROM job_templates
           WHERE ($1::text IS NULL OR template_id > $1)
           ORDER BY template_id LIMIT $2""",
        after[0] if after else None,
        limit + 1,
    )
    page = rows[:limit]
    result: dict[str, Any] = {
        "jobTemplates": [
            {
                "jobTemplateArn": ctl.arns.job_template(r["template_id"]),
                "jobTemplateId": r["template_id"],
                "description": r["description"],
                "createdAt": r["created_at"],
            }
            for r in page
        ]
    }
    if len(rows) > limit:
        result["nextToken"] = encode_token([page[-1]["template_id"]], LIST_FILTERS)
    return json_response(result)


async def delete_job_template(request: web.Request) -> web.Response:
    ctl = control(request)
    template_id = check_template_id(request.match_info["jobTemplateId"])
    await ctl.write(template.key_for(template_id), template.DeleteJobTemplate(template_id))
    return json_response({})


# --- AWS managed templates --------------------------------------------------------------------


def _managed_summary(found: managed_templates.ManagedTemplate, region: str) -> dict[str, Any]:
    return {
        "templateArn": found.arn(region),
        "templateName": found.name,
        "description": found.description,
        "environments": list(found.environments),
        "templateVersion": found.version,
    }


async def describe_managed_job_template(request: web.Request) -> web.Response:
    ctl = control(request)
    found = managed_templates.find(request.match_info["templateName"], request.query.get("templateVersion"))
    return json_response(
        {
            **_managed_summary(found, ctl.arns.region),
            "documentParameters": [
                {
                    "key": p.key,
                    "description": p.description,
                    "regex": p.regex,
                    "example": p.example,
                    "optional": p.optional,
                }
                for p in found.parameters
            ],
            "document": found.document,
        }
    )


async def list_managed_job_templates(request: web.Request) -> web.Response:
    ctl = control(request)
    name = request.query.get("templateName")
    filters = {"list": "managedJobTemplates", "templateName": name}
    limit = page_size(request.query.get("maxResults"))
    after = decode_token(request.query.get("nextToken"), filters, (str, str))
    remaining = [t for t in managed_templates.listed(name) if after is None or (t.name, t.version) > tuple(after)]
    page = remaining[:limit]
    result: dict[str, Any] = {"managedJobTemplates": [_managed_summary(t, ctl.arns.region) for t in page]}
    if len(remaining) > limit:
        result["nextToken"] = encode_token([page[-1].name, page[-1].version], filters)
    return json_response(result)


def is_managed_template_arn(arn: Any) -> bool:
    return isinstance(arn, str) and managed_templates.parse_arn(arn) is not None


def document_parameters(body: dict[str, Any]) -> dict[str, str] | None:
    """CreateJob's documentParameters: allowed only with an AWS managed template (aws-iot-jobs.md §3.2)."""
    parameters = body.get(DOCUMENT_PARAMETERS)
    if parameters is None:
        return None
    if not is_managed_template_arn(body.get("jobTemplateArn")):
        raise invalid(
            "documentParameters can only be used with an AWS managed job template: give its ARN "
            "(arn:aws:iot:<region>::jobtemplate/<name>:<version>) as jobTemplateArn"
        )
    if not isinstance(parameters, dict):
        raise invalid("documentParameters must be a map of parameter names to strings")
    return parameters


def job_body_from_managed_template(ctl: Control, body: dict[str, Any]) -> dict[str, Any]:
    """The CreateJob body with the managed template's document, its `${aws:iot:parameter:<key>}` placeholders
    filled from `documentParameters` (aws-iot-jobs.md §6.11); the template's description unless the request
    gives one."""
    parsed = managed_templates.parse_arn(body["jobTemplateArn"])
    if parsed is None:
        raise invalid(f"jobTemplateArn '{body['jobTemplateArn']}' is not an AWS managed job template ARN")
    region, name, version = parsed
    if region != ctl.arns.region:
        raise not_found(f"jobTemplateArn '{body['jobTemplateArn']}' is not in region {ctl.arns.region}")
    for member in ("document", "documentSource"):
        if body.get(member) is not None:
            raise invalid(
                f"{member} cannot be given together with jobTemplateArn: the job takes the template's document"
            )
    found = managed_templates.find(name, version)
    merged = {**body, "document": managed_templates.fill(found, document_parameters(body) or {})}
    if body.get("description") is None:
        merged["description"] = found.description
    return merged


# --- CreateJob with jobTemplateArn ------------------------------------------------------------


async def job_body_from_template(ctl: Control, body: dict[str, Any], not_served: tuple[str, ...]) -> dict[str, Any]:
    """The CreateJob body with the template's document and configuration filled in; a block the request
    gives itself wins over the template's. `not_served` names the CreateJob members this version refuses."""
    arn = body["jobTemplateArn"]
    if not isinstance(arn, str) or not 1 <= len(arn) <= MAX_TEMPLATE_ARN_CHARS or not TEMPLATE_ARN.fullmatch(arn):
        raise invalid(
            f"jobTemplateArn must be an ARN of 1 to {MAX_TEMPLATE_ARN_CHARS} characters matching ^arn:[!-~]+$"
        )
    for member in ("document", "documentSource"):
        if body.get(member) is not None:
            raise invalid(
                f"{member} cannot be given together with jobTemplateArn: the job takes the template's document"
            )
    _kind, template_id = ctl.arns.parse_resource(arn, "jobTemplateArn", (tagging.TEMPLATE,))
    check_template_id(template_id, "the template id in jobTemplateArn")
    spec = await ctl.pool.fetchval("SELECT spec FROM job_templates WHERE template_id = $1", template_id)
    if spec is None:
        raise not_found(f"Job template {template_id} does not exist")
    merged = dict(body)
    for member in ("document", "documentSource"):
        if spec.get(member) is not None:
            if member in not_served:
                raise invalid(f"job template {template_id} has a {member}, which CreateJob does not support yet")
            merged[member] = spec[member]
    for member in config_blocks.TEMPLATE_BLOCKS:
        if not spec.get(member):  # absent, or an empty block or list that asks for nothing
            continue
        target, value = member, spec[member]
        if member == "maintenanceWindows":  # a job keeps its windows in schedulingConfig
            target = "schedulingConfig"
            scheduling = body.get(target)
            if isinstance(scheduling, dict) and scheduling.get(member) is not None:
                continue
            value = {member: value, **(scheduling if isinstance(scheduling, dict) else {})}
        elif body.get(member) is not None:
            continue
        if target in not_served:
            raise invalid(f"job template {template_id} sets {member}, which CreateJob does not support yet")
        merged[target] = value
    return merged
