"""Thing-registry operations the job targets need."""

from __future__ import annotations

import re
import uuid
from typing import Any

from aiohttp import web

from iotjobs.domain import group, thing
from iotjobs.domain import validation as v
from iotjobs.domain.arns import Arns
from iotjobs.domain.errors import invalid, not_found
from iotjobs.wire.http_request import json_body, json_response, optional, query_bool, query_int
from iotjobs.wire.pagination import decode_token, encode_token, page_size
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


def _attribute_changes(payload: Any, member: str) -> tuple[dict[str, str] | None, bool]:
    """An update's attributePayload: the attributes it sets (None: it leaves them as they are) and whether
    they are merged with the stored ones rather than replace them."""
    if payload is None:
        return None, False
    if not isinstance(payload, dict):
        raise invalid(f"{member} must be an object")
    merge = payload.get("merge")
    if merge is not None and not isinstance(merge, bool):
        raise invalid(f"{member}.merge must be true or false")
    if payload.get("attributes") is None:
        return None, bool(merge)
    return _attributes(payload, member), bool(merge)


def _description(properties: dict[str, Any]) -> str | None:
    description: str | None = optional(properties, "thingGroupDescription", str, "a string")
    if description is not None and (len(description) > 2028 or not all(" " <= ch <= "~" for ch in description)):
        raise invalid("thingGroupDescription must be at most 2028 printable ASCII characters")
    return description


def _thing_type_name(body: dict[str, Any]) -> str | None:
    # Thing types are not modelled: any well-formed name is taken.
    type_name: str | None = optional(body, "thingTypeName", str, "a string")
    if type_name is not None:
        v.check_name("thingTypeName", type_name, v.THING_NAME, 128)
    return type_name


async def create_thing(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_thing_name(request.match_info["thingName"])
    body = await json_body(request)
    type_name = _thing_type_name(body)
    command = thing.CreateThing(
        thing_name=name,
        thing_id=str(uuid.uuid4()),
        thing_type_name=type_name,
        attributes=_attributes(body.get("attributePayload"), "attributePayload"),
    )
    reply = await ctl.write(thing.key_for(name), command)
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


async def update_thing(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_thing_name(request.match_info["thingName"])
    body = await json_body(request)
    type_name = _thing_type_name(body)
    attributes, merge = _attribute_changes(body.get("attributePayload"), "attributePayload")
    command = thing.UpdateThing(
        thing_name=name,
        thing_type_name=type_name,
        remove_thing_type=optional(body, "removeThingType", bool, "true or false") or False,
        attributes=attributes,
        merge=merge,
        expected_version=optional(body, "expectedVersion", int, "an integer"),
    )
    await ctl.write(thing.key_for(name), command)
    return json_response({})


async def create_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_group_name(request.match_info["thingGroupName"])
    body = await json_body(request)
    parent = optional(body, "parentGroupName", str, "a string")
    if parent is not None:
        v.check_group_name(parent, "parentGroupName")
    props = optional(body, "thingGroupProperties", dict, "an object") or {}
    command = group.CreateThingGroup(
        group_name=name,
        group_id=str(uuid.uuid4()),
        parent_group_name=parent,
        description=_description(props),
        attributes=_attributes(props.get("attributePayload"), "thingGroupProperties.attributePayload"),
    )
    reply = await ctl.write(group.key_for(name), command)
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


async def update_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_group_name(request.match_info["thingGroupName"])
    body = await json_body(request)
    props = optional(body, "thingGroupProperties", dict, "an object")
    if props is None:
        raise invalid("thingGroupProperties is required")
    attributes, merge = _attribute_changes(props.get("attributePayload"), "thingGroupProperties.attributePayload")
    command = group.UpdateThingGroup(
        group_name=name,
        description=_description(props),
        attributes=attributes,
        merge=merge,
        expected_version=optional(body, "expectedVersion", int, "an integer"),
    )
    reply = await ctl.write(group.key_for(name), command)
    return json_response({"version": reply.version})


async def add_thing_to_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    body = await json_body(request)
    group_name = _name_or_arn(body, "thingGroupName", "thingGroupArn", "thinggroup")
    thing_name = _name_or_arn(body, "thingName", "thingArn", "thing")
    await ctl.write(group.key_for(group_name), group.AddThingToThingGroup(thing_name, group_name))
    return json_response({})


def _group_list(body: dict[str, Any], member: str) -> list[str]:
    names = optional(body, member, list, "a list of thing group names") or []
    return [v.check_group_name(name, f"{member}[{i}]") for i, name in enumerate(names)]


async def update_thing_groups_for_thing(request: web.Request) -> web.Response:
    """The single AddThingToThingGroup and RemoveThingFromThingGroup writes, one after the other, each
    answered once its effects are readable (group.membership_changes gives their order). The thing and
    every named group are looked up first, so a request naming a missing one changes nothing; a change
    made meanwhile by another request can still stop it part way, as it would a series of single calls."""
    ctl = control(request)
    body = await json_body(request)
    thing_name = optional(body, "thingName", str, "a string")
    if thing_name is None:
        raise invalid("thingName is required")
    v.check_thing_name(thing_name)
    to_add = _group_list(body, "thingGroupsToAdd")
    to_remove = _group_list(body, "thingGroupsToRemove")
    current = await ctl.pool.fetch("SELECT group_name FROM thing_group_members WHERE thing_name = $1", thing_name)
    changes = group.membership_changes(thing_name, [r["group_name"] for r in current], to_add, to_remove)
    if not await ctl.pool.fetchval("SELECT 1 FROM things WHERE thing_name = $1", thing_name):
        raise not_found(f"Thing {thing_name} does not exist")
    named = list(dict.fromkeys([*to_add, *to_remove]))
    rows = await ctl.pool.fetch("SELECT group_name FROM thing_groups WHERE group_name = ANY($1::text[])", named)
    found = {r["group_name"] for r in rows}
    if missing := [name for name in named if name not in found]:
        raise not_found(f"Thing group {missing[0]} does not exist")
    for change in changes:
        await ctl.write(group.key_for(change.group_name), change)
    return json_response({})


# --- deletes, removal and listings (aws-iot-jobs.md §3.4) --------------------------------------


async def delete_thing(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_thing_name(request.match_info["thingName"])
    await ctl.write(thing.key_for(name), thing.DeleteThing(name, query_int(request, "expectedVersion")))
    return json_response({})


async def remove_thing_from_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    body = await json_body(request)
    group_name = _name_or_arn(body, "thingGroupName", "thingGroupArn", "thinggroup")
    thing_name = _name_or_arn(body, "thingName", "thingArn", "thing")
    await ctl.write(group.key_for(group_name), group.RemoveThingFromThingGroup(thing_name, group_name))
    return json_response({})


async def describe_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_group_name(request.match_info["thingGroupName"])
    row = await ctl.pool.fetchrow("SELECT * FROM thing_groups WHERE group_name = $1", name)
    if row is None:
        raise not_found(f"Thing group {name} does not exist")
    properties: dict[str, Any] = {"attributePayload": {"attributes": row["attributes"]}}
    if row["description"] is not None:
        properties["thingGroupDescription"] = row["description"]
    metadata: dict[str, Any] = {"creationDate": row["created_at"]}
    if row["parent_group_name"] is not None:
        ancestors = await ctl.pool.fetch(
            """WITH RECURSIVE chain (group_name, parent_group_name, depth) AS (
                   SELECT group_name, parent_group_name, 0 FROM thing_groups WHERE group_name = $1
                   UNION ALL
                   SELECT g.group_name, g.parent_group_name, c.depth + 1
                   FROM thing_groups g JOIN chain c ON g.group_name = c.parent_group_name
                   WHERE c.depth < 64)
               SELECT group_name FROM chain WHERE depth > 0 ORDER BY depth DESC""",
            name,
        )
        metadata["parentGroupName"] = row["parent_group_name"]
        metadata["rootToParentThingGroups"] = [
            {"groupName": a["group_name"], "groupArn": ctl.arns.thing_group(a["group_name"])} for a in ancestors
        ]
    return json_response(
        {
            "thingGroupName": name,
            "thingGroupId": row["group_id"],
            "thingGroupArn": ctl.arns.thing_group(name),
            "version": row["version"],
            "thingGroupProperties": properties,
            "thingGroupMetadata": metadata,
        }
    )


async def delete_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    name = v.check_group_name(request.match_info["thingGroupName"])
    await ctl.write(group.key_for(name), group.DeleteThingGroup(name, query_int(request, "expectedVersion")))
    return json_response({})


def _page_after(request: web.Request, filters: dict[str, Any]) -> tuple[int, str | None]:
    """(page size, the name the previous page ended with): registry listings are ordered by name."""
    limit = page_size(request.query.get("maxResults"))
    after = decode_token(request.query.get("nextToken"), filters, (str,))
    return limit, after[0] if after is not None else None


def _listing(key: str, items: list[Any], names: list[str], limit: int, filters: dict[str, Any]) -> web.Response:
    """The first `limit` items, with a token only when the query found more (it asks for limit + 1)."""
    result: dict[str, Any] = {key: items[:limit]}
    if len(names) > limit:
        result["nextToken"] = encode_token([names[limit - 1]], filters)
    return json_response(result)


def _group_refs(arns: Arns, names: list[str]) -> list[dict[str, str]]:
    return [{"groupName": name, "groupArn": arns.thing_group(name)} for name in names]


async def list_things(request: web.Request) -> web.Response:
    ctl = control(request)
    query = request.query
    attribute_name = query.get("attributeName")
    attribute_value = query.get("attributeValue")
    type_name = query.get("thingTypeName")
    use_prefix = query_bool(request, "usePrefixAttributeValue") or False
    if attribute_name is not None and (len(attribute_name) > 128 or not ATTRIBUTE_NAME.fullmatch(attribute_name)):
        raise invalid(f"attributeName must be 1 to 128 characters matching {ATTRIBUTE_NAME.pattern}")
    if attribute_value is not None:
        if len(attribute_value) > 800 or not ATTRIBUTE_VALUE.fullmatch(attribute_value):
            raise invalid(f"attributeValue must be at most 800 characters matching {ATTRIBUTE_VALUE.pattern}")
        if attribute_name is None:
            raise invalid("attributeValue needs attributeName: name the attribute whose value to match")
    if type_name is not None:
        v.check_name("thingTypeName", type_name, v.THING_NAME, 128)
    filters = {
        "attributeName": attribute_name,
        "attributeValue": attribute_value,
        "thingTypeName": type_name,
        "usePrefixAttributeValue": use_prefix,
    }
    limit, after = _page_after(request, filters)
    rows = await ctl.pool.fetch(
        """SELECT thing_name, thing_type_name, attributes, version FROM things
           WHERE ($1::text IS NULL OR thing_type_name = $1)
             AND ($2::text IS NULL OR attributes ? $2)
             AND ($3::text IS NULL OR CASE WHEN $4::boolean THEN left(attributes->>$2, length($3)) = $3
                                           ELSE attributes->>$2 = $3 END)
             AND ($5::text IS NULL OR thing_name > $5)
           ORDER BY thing_name LIMIT $6""",
        type_name,
        attribute_name,
        attribute_value,
        use_prefix,
        after,
        limit + 1,
    )
    things = []
    for row in rows:
        item: dict[str, Any] = {
            "thingName": row["thing_name"],
            "thingArn": ctl.arns.thing(row["thing_name"]),
            "attributes": row["attributes"],
            "version": row["version"],
        }
        if row["thing_type_name"]:
            item["thingTypeName"] = row["thing_type_name"]
        things.append(item)
    return _listing("things", things, [r["thing_name"] for r in rows], limit, filters)


async def list_thing_groups(request: web.Request) -> web.Response:
    ctl = control(request)
    parent = request.query.get("parentGroup")
    prefix = request.query.get("namePrefixFilter")
    if parent is not None:
        v.check_group_name(parent, "parentGroup")
    if prefix is not None:
        v.check_group_name(prefix, "namePrefixFilter")
    recursive = query_bool(request, "recursive")
    # Choice (aws-iot-jobs.md §3.4): recursive defaults to true, so a plain listing holds every group;
    # recursive=false lists only root groups, or only the direct children of parentGroup.
    recursive = True if recursive is None else recursive
    filters = {"parentGroup": parent, "namePrefixFilter": prefix, "recursive": recursive}
    limit, after = _page_after(request, filters)
    if parent is not None and not await ctl.pool.fetchval("SELECT 1 FROM thing_groups WHERE group_name = $1", parent):
        raise not_found(f"Thing group {parent} does not exist")
    rows = await ctl.pool.fetch(
        """WITH RECURSIVE tree (group_name, depth) AS (
               SELECT group_name, 1 FROM thing_groups WHERE parent_group_name IS NOT DISTINCT FROM $1
               UNION ALL
               SELECT g.group_name, t.depth + 1 FROM thing_groups g JOIN tree t ON g.parent_group_name = t.group_name
               WHERE $2::boolean AND t.depth < 64)
           SELECT DISTINCT group_name FROM tree
           WHERE ($3::text IS NULL OR left(group_name, length($3)) = $3)
             AND ($4::text IS NULL OR group_name > $4)
           ORDER BY group_name LIMIT $5""",
        parent,
        recursive,
        prefix,
        after,
        limit + 1,
    )
    names = [r["group_name"] for r in rows]
    return _listing("thingGroups", _group_refs(ctl.arns, names), names, limit, filters)


async def list_things_in_thing_group(request: web.Request) -> web.Response:
    ctl = control(request)
    group = v.check_group_name(request.match_info["thingGroupName"])
    recursive = query_bool(request, "recursive") or False
    filters = {"group": group, "recursive": recursive}
    limit, after = _page_after(request, filters)
    if not await ctl.pool.fetchval("SELECT 1 FROM thing_groups WHERE group_name = $1", group):
        raise not_found(f"Thing group {group} does not exist")
    rows = await ctl.pool.fetch(
        """WITH RECURSIVE family (group_name, depth) AS (
               SELECT $1::text, 0
               UNION ALL
               SELECT g.group_name, f.depth + 1 FROM thing_groups g JOIN family f ON g.parent_group_name = f.group_name
               WHERE $2::boolean AND f.depth < 64)
           SELECT DISTINCT m.thing_name FROM thing_group_members m JOIN family f ON m.group_name = f.group_name
           WHERE ($3::text IS NULL OR m.thing_name > $3)
           ORDER BY m.thing_name LIMIT $4""",
        group,
        recursive,
        after,
        limit + 1,
    )
    names = [r["thing_name"] for r in rows]
    return _listing("things", names, names, limit, filters)


async def list_thing_groups_for_thing(request: web.Request) -> web.Response:
    ctl = control(request)
    thing = v.check_thing_name(request.match_info["thingName"])
    filters = {"thing": thing}
    limit, after = _page_after(request, filters)
    if not await ctl.pool.fetchval("SELECT 1 FROM things WHERE thing_name = $1", thing):
        raise not_found(f"Thing {thing} does not exist")
    rows = await ctl.pool.fetch(
        """SELECT group_name FROM thing_group_members WHERE thing_name = $1 AND ($2::text IS NULL OR group_name > $2)
           ORDER BY group_name LIMIT $3""",
        thing,
        after,
        limit + 1,
    )
    names = [r["group_name"] for r in rows]
    return _listing("thingGroups", _group_refs(ctl.arns, names), names, limit, filters)


# --- DescribeEndpoint (aws-iot-jobs.md §1.5) ---------------------------------------------------

ENDPOINT_TYPES = ("iot:Data", "iot:Data-ATS", "iot:Jobs")


async def describe_endpoint(request: web.Request) -> web.Response:
    settings = control(request).settings
    # AWS answers the legacy iot:Data endpoint when no type is given.
    endpoint_type = request.query.get("endpointType", "iot:Data")
    if endpoint_type not in ENDPOINT_TYPES:
        shown = endpoint_type if len(endpoint_type) <= 128 else endpoint_type[:128] + "..."
        raise invalid(f"endpointType '{shown}' is not served; use one of {', '.join(ENDPOINT_TYPES)}")
    address = settings.jobs_endpoint if endpoint_type == "iot:Jobs" else settings.mqtt_endpoint
    return json_response({"endpointAddress": address})
