"""Tagging operations of the `iot` API for jobs and job templates: TagResource, UntagResource and
ListTagsForResource. The tags live in the aggregate that owns the resource; reads use `resource_tags`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from iotjobs.domain import job, tagging, template
from iotjobs.domain import validation as v
from iotjobs.domain.errors import invalid, not_found
from iotjobs.wire.http_request import json_body, json_response
from iotjobs.wire.pagination import DEFAULT_PAGE, decode_token, encode_token
from services.control.context import Control, control

TAGGABLE = (tagging.JOB, tagging.TEMPLATE)
# Where each taggable resource lives: its aggregate key and its read-model row.
_KEYS = {tagging.JOB: job.key_for, tagging.TEMPLATE: template.key_for}
_EXISTS = {
    tagging.JOB: "SELECT 1 FROM jobs WHERE job_id = $1",
    tagging.TEMPLATE: "SELECT 1 FROM job_templates WHERE template_id = $1",
}
_NAMES = {tagging.JOB: "Job", tagging.TEMPLATE: "Job template"}


def _resource(ctl: Control, arn: Any) -> tuple[str, str]:
    if arn is None:
        raise invalid("resourceArn is required")
    if not isinstance(arn, str):
        raise invalid("resourceArn must be a string")
    kind, resource_id = ctl.arns.parse_resource(arn, "resourceArn", TAGGABLE)
    v.check_name(f"the {kind} id in resourceArn", resource_id, v.JOB_ID, 64)
    return kind, resource_id


async def tag_resource(request: web.Request) -> web.Response:
    ctl = control(request)
    body = await json_body(request)
    kind, resource_id = _resource(ctl, body.get("resourceArn"))
    if body.get("tags") is None:
        raise invalid("tags is required")
    tags = tagging.check_tags(body["tags"])
    await ctl.write(_KEYS[kind](resource_id), tagging.TagResource(kind, resource_id, tags))
    return json_response({})


async def untag_resource(request: web.Request) -> web.Response:
    ctl = control(request)
    body = await json_body(request)
    kind, resource_id = _resource(ctl, body.get("resourceArn"))
    if body.get("tagKeys") is None:
        raise invalid("tagKeys is required")
    keys = tagging.check_tag_keys(body["tagKeys"])
    await ctl.write(_KEYS[kind](resource_id), tagging.UntagResource(kind, resource_id, keys))
    return json_response({})


async def list_tags_for_resource(request: web.Request) -> web.Response:
    ctl = control(request)
    arn = request.query.get("resourceArn")
    kind, resource_id = _resource(ctl, arn)
    filters = {"resourceArn": arn}
    after = decode_token(request.query.get("nextToken"), filters, (str,))
    if await ctl.pool.fetchval(_EXISTS[kind], resource_id) is None:
        raise not_found(f"{_NAMES[kind]} {resource_id} does not exist")
    tags: dict[str, str] = (
        await ctl.pool.fetchval(
            "SELECT tags FROM resource_tags WHERE resource_type = $1 AND resource_id = $2", kind, resource_id
        )
        or {}
    )
    keys = sorted(key for key in tags if after is None or key > after[0])
    page = keys[:DEFAULT_PAGE]
    result: dict[str, Any] = {"tags": [{"Key": key, "Value": tags[key]} for key in page]}
    if len(keys) > DEFAULT_PAGE:
        result["nextToken"] = encode_token([page[-1]], filters)
    return json_response(result)
