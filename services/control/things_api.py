"""Thing-registry operations the job targets need."""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from iotjobs.domain import registry
from iotjobs.domain import validation as v
from iotjobs.domain.errors import invalid, not_found
from iotjobs.wire.http_request import json_body, json_response, optional
from services.control.context import control

ATTRIBUTE_NAME = re.compile(r"[a-zA-Z0-9_.,@/:#-]+")
ATTRIBUTE_VALUE = re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]*")


def _attributes(payload: Any, member: str) -> dict[str, str]:
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        raise invalid(f"{member} must be an object")
    attributes = payload.get("attributes") or {}
    if not isinstance(attributes, dict):
        raise invalid(f"{member}.attributes must be a map of string to string")
    for name, value in attributes.items():
        if len(name) > 128 or not ATTRIBUTE_NAME.fullmatch(name):
            raise invalid(f"attribute name '{name}' must be at most 128 characters matching {ATTRIBUTE_NAME.pattern}")
        if not isinstance(value, str) or len(value) > 800 or not ATTRIBUTE_VALUE.fullmatch(value):
            raise invalid(
                f"attribute '{name}' must be a string of at most 800 characters matching {ATTRIBUTE_VALUE.pattern}"
            )
    return dict(attributes)


async def create_thing(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_thing_name(request.match_info["thingName"])
    body = await json_body(request)
    type_name = optional(body, "thingTypeName", str, "a string")
    if type_name is not None:
        v.check_name("thingTypeName", type_name, v.THING_NAME, 128)
    command = registry.CreateThing(
        thing_name=name,
        thing_id=str(uuid.uuid4()),
        thing_type_name=type_name,
        attributes=_attributes(body.get("attributePayload"), "attributePayload"),
    )
    reply = await ctl.write(registry.KEY, command)
    return json_response({"thingName": name, "thingArn": ctl.arns.thing(name), "thingId": reply.thing_id})


async def describe_thing(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_thing_name(request.match_info["thingName"])
    row = await ctl.pool.fetchrow("SELECT * FROM things WHERE thing_name = $1", name)
    if row is None:
        raise not_found(f"Thing {name} does not exist")
    result = {
        "defaultClientId": name,
        "thingName": name,
        "thingId": row["thing_id"],
        "thingArn": ctl.arns.thing(name),
        "attributes": row["attributes"],
        "version": row["version"],
    }
    if row["thing_type_name"]:
        result["thingTypeName"] = row["thing_type_name"]
    return json_response(result)


async def create_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_group_name(request.match_info["thingGroupName"])
    body = await json_body(request)
    parent = optional(body, "parentGroupName", str, "a string")
    if parent is not None:
        v.check_group_name(parent, "parentGroupName")
    props = optional(body, "thingGroupProperties", dict, "an object") or {}
    description = optional(props, "thingGroupDescription", str, "a string")
    if description is not None and (len(description) > 2028 or not all(" " <= ch <= "~" for ch in description)):
        raise invalid("thingGroupDescription must be at most 2028 printable ASCII characters")
    command = registry.CreateThingGroup(
        group_name=name,
        group_id=str(uuid.uuid4()),
        parent_group_name=parent,
        description=description,
        attributes=_attributes(props.get("attributePayload"), "thingGroupProperties.attributePayload"),
    )
    reply = await ctl.write(registry.KEY, command)
    return json_response(
        {"thingGroupName": name, "thingGroupArn": ctl.arns.thing_group(name), "thingGroupId": reply.group_id}
    )


def _name_or_arn(body: dict[str, Any], name_member: str, arn_member: str, prefix: str) -> str:
    name = optional(body, name_member, str, "a string")
    arn = optional(body, arn_member, str, "a string")
    if name is None and arn is None:
        raise invalid(f"either {name_member} or {arn_member} is required")
    if arn is not None:
        _region_account, _, resource = arn.rpartition(":")
        kind, _, from_arn = resource.partition("/")
        if not arn.startswith("arn:aws:iot:") or kind != prefix or not from_arn:
            raise invalid(f"{arn_member} '{arn}' is not a {prefix} ARN")
        if name is not None and name != from_arn:
            raise invalid(f"{name_member} '{name}' and {arn_member} '{arn}' name different resources")
        name = from_arn
    assert name is not None
    return v.check_name(name_member, name, v.THING_NAME, 128)


async def add_thing_to_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    body = await json_body(request)
    group = _name_or_arn(body, "thingGroupName", "thingGroupArn", "thinggroup")
    thing = _name_or_arn(body, "thingName", "thingArn", "thing")
    await ctl.write(registry.KEY, registry.AddThingToThingGroup(thing, group))
    return json_response({})
