"""The thing registry and DescribeEndpoint through boto3, and what registry changes do to jobs
(aws-iot-jobs.md §1.5, §2.7, §3.4, §6.9), against the real stack."""

from __future__ import annotations

import asyncio
import base64
import datetime
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError

from tests.support.clients import MqttDevice, data_client, group_arn, iot_client, thing_arn, unique
from tests.support.events import read_records
from tests.support.stack import Stack
from tests.support.waiting import until, until_sync

pytestmark = pytest.mark.e2e


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    error = caught.value.response["Error"]
    return error["Code"], error["Message"]


def paged(iot: Any, operation: str, key: str, page_size: int, **kwargs: Any) -> list[Any]:
    pages = iot.get_paginator(operation).paginate(**kwargs, PaginationConfig={"PageSize": page_size})
    return [item for page in pages for item in page[key]]


def tampered(token: str) -> str:
    raw = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    raw["k"] = ["zzzz", 1]
    return base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")


# --- DeleteThing ------------------------------------------------------------------------------


def test_delete_thing_with_and_without_expected_version(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, group = unique("del"), unique("g")
    first = iot.create_thing(thingName=thing, attributePayload={"attributes": {"a": "1"}})
    iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    assert iot.describe_thing(thingName=thing)["version"] == 2

    code, message = error_of(iot.delete_thing, thingName=thing, expectedVersion=1)
    assert code == "VersionConflictException"
    assert message == f"expectedVersion 1 does not match the current version 2 of thing {thing}"
    assert iot.describe_thing(thingName=thing)["thingId"] == first["thingId"]

    assert iot.delete_thing(thingName=thing, expectedVersion=2)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=thing)
    assert iot.list_things_in_thing_group(thingGroupName=group)["things"] == []
    assert thing not in [t["thingName"] for t in iot.list_things()["things"]]

    # A missing thing deletes fine, with or without a version.
    iot.delete_thing(thingName=thing)
    iot.delete_thing(thingName=unique("never"), expectedVersion=5)

    again = iot.create_thing(thingName=thing)
    assert again["thingId"] != first["thingId"]
    described = iot.describe_thing(thingName=thing)
    assert (described["version"], described["attributes"]) == (1, {})
    assert iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"] == []


def test_delete_thing_rejects_a_bad_name(stack: Stack) -> None:
    iot = iot_client(stack)
    code, message = error_of(iot.delete_thing, thingName="bad name")
    assert code == "InvalidRequestException" and "thingName" in message
    code, message = error_of(iot.delete_thing, thingName="x" * 129)
    assert code == "InvalidRequestException" and "128" in message


# --- ListThings -------------------------------------------------------------------------------


def test_list_things_filters_and_pages(stack: Stack) -> None:
    iot = iot_client(stack)
    batch = unique("batch")
    names = sorted(unique("lt") for _ in range(5))
    for i, name in enumerate(names):
        extra = {"thingTypeName": "sensor"} if i % 2 == 0 else {}
        iot.create_thing(thingName=name, attributePayload={"attributes": {"batch": f"{batch}-{i}"}}, **extra)

    listed = iot.list_things()["things"]
    assert [t["thingName"] for t in listed] == sorted(t["thingName"] for t in listed)
    mine = [t for t in listed if t["thingName"] in names]
    assert mine[0] == {
        "thingName": names[0],
        "thingTypeName": "sensor",
        "thingArn": thing_arn(names[0]),
        "attributes": {"batch": f"{batch}-0"},
        "version": 1,
    }
    assert "thingTypeName" not in mine[1]

    exact = iot.list_things(attributeName="batch", attributeValue=f"{batch}-3")["things"]
    assert [t["thingName"] for t in exact] == [names[3]]
    prefix = iot.list_things(attributeName="batch", attributeValue=batch, usePrefixAttributeValue=True)["things"]
    assert [t["thingName"] for t in prefix] == names
    assert iot.list_things(attributeName="batch", attributeValue=batch)["things"] == []
    having = {t["thingName"] for t in iot.list_things(attributeName="batch")["things"]}
    assert set(names) <= having
    typed = {t["thingName"] for t in iot.list_things(thingTypeName="sensor")["things"]}
    assert {names[0], names[2], names[4]} <= typed and names[1] not in typed

    everything = iot.list_things()["things"]
    assert paged(iot, "list_things", "things", 2) == everything
    by_batch = {"attributeName": "batch", "attributeValue": batch, "usePrefixAttributeValue": True}
    filtered = paged(iot, "list_things", "things", 2, **by_batch)
    assert [t["thingName"] for t in filtered] == names

    first = iot.list_things(maxResults=2, **by_batch)
    assert len(first["things"]) == 2 and first["nextToken"]
    rest = iot.list_things(nextToken=first["nextToken"], **by_batch)
    assert [t["thingName"] for t in first["things"] + rest["things"]] == names
    assert "nextToken" not in rest


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"maxResults": 251}, "maxResults"),
        ({"nextToken": "bm90LWEtdG9rZW4"}, "nextToken"),
        ({"attributeName": "bad name"}, "attributeName"),
        ({"attributeName": "a" * 129}, "attributeName"),
        ({"attributeName": "a", "attributeValue": "bad value"}, "attributeValue"),
        ({"attributeValue": "v"}, "attributeValue"),
        ({"thingTypeName": "bad type"}, "thingTypeName"),
    ],
)
def test_list_things_rejects_bad_input(stack: Stack, kwargs: dict[str, Any], needle: str) -> None:
    code, message = error_of(iot_client(stack).list_things, **kwargs)
    assert code == "InvalidRequestException" and needle in message


def test_a_page_token_only_fits_the_listing_that_issued_it(stack: Stack) -> None:
    iot = iot_client(stack)
    for _ in range(2):
        iot.create_thing(thingName=unique("tok"))
    token = iot.list_things(maxResults=1)["nextToken"]
    code, message = error_of(iot.list_things, nextToken=token, thingTypeName="sensor")
    assert code == "InvalidRequestException" and "different request" in message
    code, message = error_of(iot.list_things, nextToken=tampered(token))
    assert code == "InvalidRequestException" and "nextToken" in message
    code, _ = error_of(iot.list_thing_groups, nextToken=token)
    assert code == "InvalidRequestException"


# --- thing groups -----------------------------------------------------------------------------


ROOT_PROPERTIES = {"thingGroupDescription": "the fleet", "attributePayload": {"attributes": {"k": "v"}}}


def _tree(iot: Any) -> tuple[str, str, str, str]:
    """root > child > grandchild, and root > sibling; names share one unique prefix."""
    prefix = unique("tree")
    root, child, grandchild, sibling = (f"{prefix}-{n}" for n in ("a-root", "b-child", "c-grand", "d-sibling"))
    iot.create_thing_group(thingGroupName=root, thingGroupProperties=ROOT_PROPERTIES)
    iot.create_thing_group(thingGroupName=child, parentGroupName=root)
    iot.create_thing_group(thingGroupName=grandchild, parentGroupName=child)
    iot.create_thing_group(thingGroupName=sibling, parentGroupName=root)
    return root, child, grandchild, sibling


def test_describe_thing_group(stack: Stack) -> None:
    iot = iot_client(stack)
    root, child, grandchild, _sibling = _tree(iot)
    created = iot.create_thing_group(thingGroupName=root, thingGroupProperties=ROOT_PROPERTIES)  # the same group
    described = iot.describe_thing_group(thingGroupName=root)
    assert described["thingGroupName"] == root
    assert described["thingGroupId"] == created["thingGroupId"]
    assert described["thingGroupArn"] == group_arn(root)
    assert described["version"] == 1
    assert described["thingGroupProperties"] == {
        "thingGroupDescription": "the fleet",
        "attributePayload": {"attributes": {"k": "v"}},
    }
    metadata = described["thingGroupMetadata"]
    assert set(metadata) == {"creationDate"}
    assert isinstance(metadata["creationDate"], datetime.datetime)
    assert abs(metadata["creationDate"].timestamp() - datetime.datetime.now().timestamp()) < 120

    deep = iot.describe_thing_group(thingGroupName=grandchild)
    assert deep["thingGroupProperties"] == {"attributePayload": {"attributes": {}}}
    assert deep["thingGroupMetadata"]["parentGroupName"] == child
    assert deep["thingGroupMetadata"]["rootToParentThingGroups"] == [
        {"groupName": root, "groupArn": group_arn(root)},
        {"groupName": child, "groupArn": group_arn(child)},
    ]

    with pytest.raises(iot.exceptions.ResourceNotFoundException, match="does not exist"):
        iot.describe_thing_group(thingGroupName=unique("nope"))
    code, message = error_of(iot.describe_thing_group, thingGroupName="bad name")
    assert code == "InvalidRequestException" and "thingGroupName" in message


def test_list_thing_groups(stack: Stack) -> None:
    iot = iot_client(stack)
    root, child, grandchild, sibling = _tree(iot)
    prefix = root.rsplit("-", 2)[0]

    def names(**kwargs: Any) -> list[str]:
        groups = iot.list_thing_groups(**kwargs)["thingGroups"]
        for g in groups:
            assert g == {"groupName": g["groupName"], "groupArn": group_arn(g["groupName"])}
        return [g["groupName"] for g in groups]

    assert names(namePrefixFilter=prefix) == [root, child, grandchild, sibling]
    assert names(namePrefixFilter=prefix, recursive=False) == [root]
    assert names(parentGroup=root) == [child, grandchild, sibling]
    assert names(parentGroup=root, recursive=True) == [child, grandchild, sibling]
    assert names(parentGroup=root, recursive=False) == [child, sibling]
    assert names(parentGroup=child, namePrefixFilter=grandchild) == [grandchild]
    assert names(parentGroup=grandchild) == []
    everything = iot.list_thing_groups()["thingGroups"]
    assert {root, child, grandchild, sibling} <= {g["groupName"] for g in everything}
    assert paged(iot, "list_thing_groups", "thingGroups", 2) == everything
    assert [g["groupName"] for g in paged(iot, "list_thing_groups", "thingGroups", 1, parentGroup=root)] == [
        child,
        grandchild,
        sibling,
    ]

    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.list_thing_groups(parentGroup=unique("nope"))
    for kwargs, needle in (
        ({"parentGroup": "bad name"}, "parentGroup"),
        ({"namePrefixFilter": "bad prefix"}, "namePrefixFilter"),
        ({"maxResults": 251}, "maxResults"),
        ({"nextToken": "%%%"}, "nextToken"),
    ):
        code, message = error_of(iot.list_thing_groups, **kwargs)
        assert code == "InvalidRequestException" and needle in message


def test_delete_thing_group(stack: Stack) -> None:
    iot = iot_client(stack)
    root, child, grandchild, sibling = _tree(iot)
    thing = unique("member")
    iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=sibling, thingName=thing)

    code, message = error_of(iot.delete_thing_group, thingGroupName=root)
    assert code == "InvalidRequestException"
    assert message == f"Cannot delete thing group {root}: it still has child groups ({child}, {sibling}); " + (
        "delete them first"
    )
    code, message = error_of(iot.delete_thing_group, thingGroupName=sibling, expectedVersion=9)
    assert code == "VersionConflictException" and "expectedVersion 9" in message

    iot.delete_thing_group(thingGroupName=sibling, expectedVersion=1)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing_group(thingGroupName=sibling)
    assert iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"] == []
    iot.delete_thing_group(thingGroupName=grandchild)
    iot.delete_thing_group(thingGroupName=child)
    iot.delete_thing_group(thingGroupName=root)
    assert iot.list_thing_groups(namePrefixFilter=root.rsplit("-", 2)[0])["thingGroups"] == []
    iot.delete_thing_group(thingGroupName=root)  # already gone: still fine
    code, _ = error_of(iot.delete_thing_group, thingGroupName="bad name")
    assert code == "InvalidRequestException"

    # The name can be used again; the new group starts empty.
    iot.create_thing_group(thingGroupName=sibling)
    assert iot.list_things_in_thing_group(thingGroupName=sibling)["things"] == []


# --- membership -------------------------------------------------------------------------------


def test_membership_listings_and_removal(stack: Stack) -> None:
    iot = iot_client(stack)
    root, child, grandchild, _sibling = _tree(iot)
    things = sorted(unique("m") for _ in range(4))
    for thing in things:
        iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=root, thingName=things[0])
    iot.add_thing_to_thing_group(thingGroupArn=group_arn(child), thingArn=thing_arn(things[1]))
    iot.add_thing_to_thing_group(thingGroupName=grandchild, thingName=things[2])
    iot.add_thing_to_thing_group(thingGroupName=grandchild, thingName=things[0])
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=things[3])

    assert iot.list_things_in_thing_group(thingGroupName=root)["things"] == [things[0]]
    assert iot.list_things_in_thing_group(thingGroupName=root, recursive=False)["things"] == [things[0]]
    assert iot.list_things_in_thing_group(thingGroupName=root, recursive=True)["things"] == things
    assert iot.list_things_in_thing_group(thingGroupName=child)["things"] == [things[1], things[3]]
    assert paged(iot, "list_things_in_thing_group", "things", 1, thingGroupName=root, recursive=True) == things
    assert iot.list_thing_groups_for_thing(thingName=things[0])["thingGroups"] == sorted(
        [
            {"groupName": root, "groupArn": group_arn(root)},
            {"groupName": grandchild, "groupArn": group_arn(grandchild)},
        ],
        key=lambda g: g["groupName"],
    )
    assert [
        g["groupName"] for g in paged(iot, "list_thing_groups_for_thing", "thingGroups", 1, thingName=things[0])
    ] == [
        root,
        grandchild,
    ]

    # by name, by ARN, and by both when they agree
    iot.remove_thing_from_thing_group(thingGroupName=root, thingName=things[0])
    iot.remove_thing_from_thing_group(thingGroupArn=group_arn(child), thingArn=thing_arn(things[1]))
    iot.remove_thing_from_thing_group(
        thingGroupName=grandchild,
        thingGroupArn=group_arn(grandchild),
        thingName=things[2],
        thingArn=thing_arn(things[2]),
    )
    iot.remove_thing_from_thing_group(thingGroupName=root, thingName=things[3])  # not a member: no change
    assert iot.list_things_in_thing_group(thingGroupName=root, recursive=True)["things"] == [things[0], things[3]]
    assert [g["groupName"] for g in iot.list_thing_groups_for_thing(thingName=things[0])["thingGroups"]] == [grandchild]
    assert iot.list_thing_groups_for_thing(thingName=things[1])["thingGroups"] == []
    assert iot.describe_thing(thingName=things[1])["version"] == 3  # one add, one removal


async def test_a_group_hands_joins_and_leaves_on_to_the_thing_without_recording_them(stack: Stack) -> None:
    """The group only checks that it exists before the thing decides (ADR 0007, handing a request on): its
    log holds what it records of its members, and nothing for the hand-on itself."""
    iot = iot_client(stack)
    thing, group, child = unique("h"), unique("hg"), unique("hc")
    iot.create_thing(thingName=thing)
    iot.create_thing_group(thingGroupName=group)
    iot.create_thing_group(thingGroupName=child, parentGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=child, thingName=thing)
    assert iot.list_things_in_thing_group(thingGroupName=group, recursive=True)["things"] == [thing]
    iot.remove_thing_from_thing_group(thingGroupName=child, thingName=thing)
    assert iot.list_things_in_thing_group(thingGroupName=group, recursive=True)["things"] == []

    records = await read_records(stack.settings)
    # An outbox record of its own has no event type: the group's hand-ons would show as such.
    written = {
        name: [r.get("type", "outbox") for r in records if r.get("key") == f"group/{name}"] for name in (group, child)
    }
    assert written == {
        group: ["ThingGroupCreated", "ChildGroupAdded"],
        child: ["ThingGroupCreated", "GroupMemberAdded", "GroupMemberRemoved"],
    }


def test_membership_errors(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, group = unique("t"), unique("g")
    iot.create_thing(thingName=thing)
    iot.create_thing_group(thingGroupName=group)
    missing = unique("nope")
    for kwargs, error, needle in (
        ({"thingGroupName": group, "thingName": missing}, "ResourceNotFoundException", f"Thing {missing}"),
        ({"thingGroupName": missing, "thingName": thing}, "ResourceNotFoundException", f"Thing group {missing}"),
        ({"thingGroupName": group}, "InvalidRequestException", "thingName or thingArn"),
        ({"thingName": thing}, "InvalidRequestException", "thingGroupName or thingGroupArn"),
        ({"thingGroupName": group, "thingArn": group_arn(group)}, "InvalidRequestException", "not a thing ARN"),
        (
            {"thingGroupName": group, "thingName": thing, "thingArn": thing_arn("other")},
            "InvalidRequestException",
            "name different resources",
        ),
        ({"thingGroupName": "bad name", "thingName": thing}, "InvalidRequestException", "thingGroupName"),
    ):
        code, message = error_of(iot.remove_thing_from_thing_group, **kwargs)
        assert (code, needle in message) == (error, True), (kwargs, code, message)

    with pytest.raises(iot.exceptions.ResourceNotFoundException, match=missing):
        iot.list_things_in_thing_group(thingGroupName=missing)
    with pytest.raises(iot.exceptions.ResourceNotFoundException, match=missing):
        iot.list_thing_groups_for_thing(thingName=missing)
    for call, kwargs in (
        (iot.list_things_in_thing_group, {"thingGroupName": "bad name"}),
        (iot.list_things_in_thing_group, {"thingGroupName": group, "maxResults": 251}),
        (iot.list_things_in_thing_group, {"thingGroupName": group, "nextToken": "e30"}),
        (iot.list_thing_groups_for_thing, {"thingName": "bad name"}),
        (iot.list_thing_groups_for_thing, {"thingName": thing, "maxResults": 300}),
        (iot.list_thing_groups_for_thing, {"thingName": thing, "nextToken": "garbage!"}),
    ):
        code, _ = error_of(call, **kwargs)
        assert code == "InvalidRequestException", kwargs


# --- UpdateThing -------------------------------------------------------------------------------


def _record(iot: Any, thing: str) -> tuple[dict[str, str], str | None, int]:
    described = iot.describe_thing(thingName=thing)
    return described["attributes"], described.get("thingTypeName"), described["version"]


def _names(things: list[dict[str, Any]]) -> list[str]:
    return [t["thingName"] for t in things]


def test_update_thing_merges_replaces_and_removes_attributes_and_sets_the_thing_type(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, batch = unique("upd"), unique("ub")
    start = {"site": "a", "rack": "3", "batch": batch}
    iot.create_thing(thingName=thing, thingTypeName="sensor", attributePayload={"attributes": start})

    merged = {"attributes": {"site": "b", "rack": "", "new": "1"}, "merge": True}
    assert iot.update_thing(thingName=thing, attributePayload=merged)["ResponseMetadata"]["HTTPStatusCode"] == 200
    attributes = {"site": "b", "batch": batch, "new": "1"}
    assert _record(iot, thing) == (attributes, "sensor", 2)
    listed = iot.list_things(attributeName="batch", attributeValue=batch)["things"]
    assert listed == [
        {
            "thingName": thing,
            "thingArn": thing_arn(thing),
            "thingTypeName": "sensor",
            "attributes": attributes,
            "version": 2,
        }
    ]
    assert thing not in _names(iot.list_things(attributeName="rack")["things"])

    # Without merge the given attributes replace them all; an empty value is no attribute.
    iot.update_thing(thingName=thing, attributePayload={"attributes": {"batch": batch, "only": "x", "gone": ""}})
    assert _record(iot, thing) == ({"batch": batch, "only": "x"}, "sensor", 3)
    assert thing not in _names(iot.list_things(attributeName="site", attributeValue="b")["things"])

    # A thing type given alone leaves the attributes as they are; removeThingType takes the type away.
    iot.update_thing(thingName=thing, thingTypeName="gateway")
    assert _record(iot, thing) == ({"batch": batch, "only": "x"}, "gateway", 4)
    assert thing in _names(iot.list_things(thingTypeName="gateway")["things"])
    assert thing not in _names(iot.list_things(thingTypeName="sensor")["things"])
    iot.update_thing(thingName=thing, removeThingType=True)
    assert _record(iot, thing) == ({"batch": batch, "only": "x"}, None, 5)
    assert "thingTypeName" not in iot.list_things(attributeName="batch", attributeValue=batch)["things"][0]

    iot.update_thing(thingName=thing, attributePayload={"attributes": {}})
    assert _record(iot, thing) == ({}, None, 6)


def test_update_thing_checks_the_expected_version_and_its_input(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("upv")
    iot.create_thing(thingName=thing, attributePayload={"attributes": {"a": "1"}})

    code, message = error_of(
        iot.update_thing, thingName=thing, expectedVersion=2, attributePayload={"attributes": {"a": "2"}}
    )
    assert code == "VersionConflictException"
    assert message == f"expectedVersion 2 does not match the current version 1 of thing {thing}"
    assert _record(iot, thing) == ({"a": "1"}, None, 1)
    iot.update_thing(thingName=thing, expectedVersion=1, attributePayload={"attributes": {"b": "2"}, "merge": True})
    assert _record(iot, thing) == ({"a": "1", "b": "2"}, None, 2)

    missing = unique("nope")
    code, message = error_of(iot.update_thing, thingName=missing, attributePayload={"attributes": {"a": "1"}})
    assert (code, message) == ("ResourceNotFoundException", f"Thing {missing} does not exist")
    for kwargs, needle in (
        ({"thingTypeName": "sensor", "removeThingType": True}, "removeThingType"),
        ({"thingTypeName": "bad type"}, "thingTypeName"),
        ({"attributePayload": {"attributes": {"bad name": "x"}}}, "attributePayload.attributes key"),
        ({"attributePayload": {"attributes": {"a": "bad value"}}}, "attributePayload.attributes.a"),
        ({"attributePayload": {"attributes": {"a": "x" * 801}}}, "attributePayload.attributes.a"),
    ):
        code, message = error_of(iot.update_thing, thingName=thing, **kwargs)
        assert (code, needle in message) == ("InvalidRequestException", True), (kwargs, message)
    code, message = error_of(iot.update_thing, thingName="bad name")
    assert code == "InvalidRequestException" and "thingName" in message
    assert _record(iot, thing) == ({"a": "1", "b": "2"}, None, 2)


# --- UpdateThingGroup ----------------------------------------------------------------------------


def test_update_thing_group(stack: Stack) -> None:
    iot = iot_client(stack)
    root, child, _grandchild, sibling = _tree(iot)
    thing = unique("ugm")
    iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=root, thingName=thing)

    properties = {
        "thingGroupDescription": "renamed",
        "attributePayload": {"attributes": {"n": "1", "k": ""}, "merge": True},
    }
    assert iot.update_thing_group(thingGroupName=root, thingGroupProperties=properties)["version"] == 2
    described = iot.describe_thing_group(thingGroupName=root)
    assert described["version"] == 2
    assert described["thingGroupProperties"] == {
        "thingGroupDescription": "renamed",
        "attributePayload": {"attributes": {"n": "1"}},
    }

    # Without merge the attributes are replaced; a description not given stays as it is.
    replaced = {"attributePayload": {"attributes": {"z": "9"}}}
    answer = iot.update_thing_group(thingGroupName=root, thingGroupProperties=replaced, expectedVersion=2)
    assert answer["version"] == 3
    described = iot.describe_thing_group(thingGroupName=root)
    assert (described["version"], described["thingGroupProperties"]) == (
        3,
        {"thingGroupDescription": "renamed", "attributePayload": {"attributes": {"z": "9"}}},
    )
    # Its place, members and children are untouched.
    assert iot.list_things_in_thing_group(thingGroupName=root)["things"] == [thing]
    children = iot.list_thing_groups(parentGroup=root, recursive=False)["thingGroups"]
    assert [g["groupName"] for g in children] == [child, sibling]
    assert iot.describe_thing_group(thingGroupName=child)["thingGroupMetadata"]["parentGroupName"] == root

    code, message = error_of(
        iot.update_thing_group,
        thingGroupName=root,
        thingGroupProperties={"thingGroupDescription": "late"},
        expectedVersion=2,
    )
    assert code == "VersionConflictException"
    assert message == f"expectedVersion 2 does not match the current version 3 of thing group {root}"
    assert iot.describe_thing_group(thingGroupName=root)["thingGroupProperties"]["thingGroupDescription"] == "renamed"
    code, _ = error_of(iot.delete_thing_group, thingGroupName=child, expectedVersion=2)
    assert code == "VersionConflictException"

    missing = unique("nope")
    code, message = error_of(
        iot.update_thing_group, thingGroupName=missing, thingGroupProperties={"thingGroupDescription": "x"}
    )
    assert (code, message) == ("ResourceNotFoundException", f"Thing group {missing} does not exist")
    for properties, needle in (
        ({"thingGroupDescription": "bell\u0007"}, "thingGroupProperties.thingGroupDescription"),
        ({"attributePayload": {"attributes": {"bad name": "x"}}}, "thingGroupProperties.attributePayload"),
    ):
        code, message = error_of(iot.update_thing_group, thingGroupName=root, thingGroupProperties=properties)
        assert (code, needle in message) == ("InvalidRequestException", True), (properties, message)
    assert iot.describe_thing_group(thingGroupName=root)["version"] == 3


# --- UpdateThingGroupsForThing -------------------------------------------------------------------


def _groups_of(iot: Any, thing: str) -> list[str]:
    return [g["groupName"] for g in iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"]]


def test_update_thing_groups_for_thing(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("ugt")
    first, second, third = sorted(unique("ug") for _ in range(3))
    iot.create_thing(thingName=thing)
    for group in (first, second, third):
        iot.create_thing_group(thingGroupName=group)
    iot.add_thing_to_thing_group(thingGroupName=first, thingName=thing)

    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=[second, third], thingGroupsToRemove=[first])
    assert _groups_of(iot, thing) == [second, third]
    assert iot.list_things_in_thing_group(thingGroupName=first)["things"] == []
    assert iot.list_things_in_thing_group(thingGroupName=third)["things"] == [thing]
    assert iot.describe_thing(thingName=thing)["version"] == 5  # created, one add, two adds and a removal

    # Groups it is already in (or not in) change nothing; neither does a request naming no group.
    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=[second], thingGroupsToRemove=[first])
    iot.update_thing_groups_for_thing(thingName=thing)
    assert (_groups_of(iot, thing), iot.describe_thing(thingName=thing)["version"]) == ([second, third], 5)


def test_update_thing_groups_for_thing_refuses_bad_input_and_changes_nothing(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, kept, other = unique("ugr"), unique("ug"), unique("ug")
    iot.create_thing(thingName=thing)
    iot.create_thing_group(thingGroupName=kept)
    iot.create_thing_group(thingGroupName=other)
    iot.add_thing_to_thing_group(thingGroupName=kept, thingName=thing)
    missing_thing, missing_group = unique("nope"), unique("nope")

    for kwargs, error, needle in (
        ({"thingName": missing_thing, "thingGroupsToAdd": [other]}, "ResourceNotFoundException", missing_thing),
        (
            {"thingName": thing, "thingGroupsToAdd": [other, missing_group], "thingGroupsToRemove": [kept]},
            "ResourceNotFoundException",
            f"Thing group {missing_group} does not exist",
        ),
        (
            {"thingName": thing, "thingGroupsToRemove": [kept, missing_group]},
            "ResourceNotFoundException",
            f"Thing group {missing_group} does not exist",
        ),
        (
            {"thingName": thing, "thingGroupsToAdd": [other], "thingGroupsToRemove": [other, kept]},
            "InvalidRequestException",
            f"thingGroupsToAdd and thingGroupsToRemove both name {other}",
        ),
        (
            {"thingName": thing, "thingGroupsToAdd": [other, "bad name"]},
            "InvalidRequestException",
            "thingGroupsToAdd[1] 'bad name'",
        ),
        (
            {"thingName": thing, "thingGroupsToRemove": ["x" * 129]},
            "InvalidRequestException",
            "thingGroupsToRemove[0] must have at most 128 characters",
        ),
        ({"thingName": "bad name", "thingGroupsToAdd": [other]}, "InvalidRequestException", "thingName"),
        ({"thingGroupsToAdd": [other]}, "InvalidRequestException", "thingName is required"),
    ):
        code, message = error_of(iot.update_thing_groups_for_thing, **kwargs)
        assert (code, needle in message) == (error, True), (kwargs, code, message)
    assert (_groups_of(iot, thing), iot.describe_thing(thingName=thing)["version"]) == ([kept], 2)


def test_update_thing_groups_for_thing_keeps_a_thing_within_ten_groups(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("ugl")
    groups = sorted(unique("ugl") for _ in range(12))
    iot.create_thing(thingName=thing)
    for group in groups:
        iot.create_thing_group(thingGroupName=group)
    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=groups[:9])
    assert _groups_of(iot, thing) == groups[:9]

    code, message = error_of(iot.update_thing_groups_for_thing, thingName=thing, thingGroupsToAdd=groups[9:11])
    assert code == "InvalidRequestException"
    assert message == f"thingGroupsToAdd would put thing {thing} in 11 thing groups; a thing belongs to at most 10"
    assert _groups_of(iot, thing) == groups[:9]

    # Two in, one out: ten. At ten, a swap works (the removal makes room first); one more does not.
    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=groups[9:11], thingGroupsToRemove=groups[:1])
    assert _groups_of(iot, thing) == groups[1:11]
    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=groups[11:], thingGroupsToRemove=groups[1:2])
    assert _groups_of(iot, thing) == groups[2:]
    code, _ = error_of(iot.update_thing_groups_for_thing, thingName=thing, thingGroupsToAdd=groups[:1])
    assert code == "InvalidRequestException"
    code, message = error_of(iot.add_thing_to_thing_group, thingGroupName=groups[0], thingName=thing)
    assert (code, message) == (
        "InvalidRequestException",
        f"Thing {thing} already belongs to 10 thing groups, the most allowed",
    )
    assert _groups_of(iot, thing) == groups[2:]


# --- effects on jobs (§6.9) -------------------------------------------------------------------


def _status(iot: Any, job: str, thing: str) -> str:
    return str(iot.describe_job_execution(jobId=job, thingName=thing)["execution"]["status"])


async def _call(method: Any, *args: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(method, *args, **kwargs)


async def test_leaving_the_target_group_removes_an_in_progress_execution_and_completes_the_job(stack: Stack) -> None:
    iot = iot_client(stack)
    group, other = unique("g"), unique("g")
    leaver, finisher, stayer = unique("leaver"), unique("finisher"), unique("stayer")
    await _call(iot.create_thing_group, thingGroupName=group)
    await _call(iot.create_thing_group, thingGroupName=other)
    for thing in (leaver, finisher, stayer):
        await _call(iot.create_thing, thingName=thing)
        await _call(iot.add_thing_to_thing_group, thingGroupName=group, thingName=thing)
    await _call(iot.add_thing_to_thing_group, thingGroupName=other, thingName=stayer)
    job = unique("j")
    await _call(iot.create_job, jobId=job, targets=[group_arn(group), group_arn(other)], document='{"op": "x"}')

    async with MqttDevice(stack, leaver) as device:

        async def started() -> bool:
            outcome, body = await device.request("start-next")
            return outcome == "accepted" and body.get("execution", {}).get("status") == "IN_PROGRESS"

        await until(started, what="the leaver to start its execution")
        await _call(iot.remove_thing_from_thing_group, thingGroupName=group, thingName=leaver)

        async def head_cleared() -> None:
            while "execution" in await device.notify_next.get():
                pass  # an earlier notify-next, from when the execution was queued

        await asyncio.wait_for(head_cleared(), 10)  # nothing is left pending for the leaver

        async def removed() -> bool:
            return await _call(_status, iot, job=job, thing=leaver) == "REMOVED"

        await until(removed, what="the leaver's execution to be REMOVED")
        described = (await _call(iot.describe_job_execution, jobId=job, thingName=leaver))["execution"]
        assert described["versionNumber"] == 3 and "approximateSecondsBeforeTimedOut" not in described
        outcome, body = await device.request(f"{job}/update", {"status": "SUCCEEDED"})
        assert (outcome, body["code"]) == ("rejected", "InvalidStateTransition")
        assert body["executionState"]["status"] == "REMOVED"

    # The stayer left one target group but is still in the other: its execution stays.
    await _call(iot.remove_thing_from_thing_group, thingGroupName=group, thingName=stayer)
    async with MqttDevice(stack, finisher) as device:
        outcome, _ = await device.request(f"{job}/update", {"status": "SUCCEEDED"})
        assert outcome == "accepted"
    assert await _call(_status, iot, job=job, thing=stayer) == "QUEUED"
    details = (await _call(iot.describe_job, jobId=job))["job"]
    assert details["status"] == "IN_PROGRESS"
    async with MqttDevice(stack, stayer) as device:
        outcome, _ = await device.request(f"{job}/update", {"status": "SUCCEEDED"})
        assert outcome == "accepted"

    async def completed() -> dict[str, Any] | None:
        described = (await _call(iot.describe_job, jobId=job))["job"]
        return described if described["status"] == "COMPLETED" else None

    done = await until(completed, what="the SNAPSHOT job to complete")
    counts = done["jobProcessDetails"]
    assert (counts["numberOfRemovedThings"], counts["numberOfSucceededThings"], counts["numberOfQueuedThings"]) == (
        1,
        2,
        0,
    )


def test_removing_the_last_pending_thing_completes_the_job(stack: Stack) -> None:
    iot = iot_client(stack)
    group, thing = unique("g"), unique("t")
    iot.create_thing_group(thingGroupName=group)
    iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    job = unique("j")
    iot.create_job(jobId=job, targets=[group_arn(group)], document="{}")
    until_sync(lambda: iot.list_job_executions_for_job(jobId=job)["executionSummaries"], what="the execution")

    iot.remove_thing_from_thing_group(thingGroupArn=group_arn(group), thingArn=thing_arn(thing))

    done = until_sync(
        lambda: (d := iot.describe_job(jobId=job)["job"])["status"] == "COMPLETED" and d, what="job completion"
    )
    assert done["jobProcessDetails"]["numberOfRemovedThings"] == 1
    summary = iot.list_job_executions_for_thing(thingName=thing)["executionSummaries"]
    assert [(s["jobId"], s["jobExecutionSummary"]["status"]) for s in summary] == [(job, "REMOVED")]
    # SNAPSHOT: joining the group again does not bring the execution back.
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    assert _status(iot, job, thing) == "REMOVED"


def test_deleting_a_target_group_removes_its_members_executions(stack: Stack) -> None:
    iot = iot_client(stack)
    group, thing = unique("g"), unique("t")
    iot.create_thing_group(thingGroupName=group)
    iot.create_thing(thingName=thing)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    job = unique("j")
    iot.create_job(jobId=job, targets=[group_arn(group)], document="{}")
    until_sync(lambda: iot.list_job_executions_for_job(jobId=job)["executionSummaries"], what="the execution")

    iot.delete_thing_group(thingGroupName=group)

    until_sync(lambda: _status(iot, job, thing) == "REMOVED", what="the execution to be REMOVED")
    until_sync(lambda: iot.describe_job(jobId=job)["job"]["status"] == "COMPLETED", what="job completion")


async def test_a_deleted_things_device_is_refused_and_its_executions_removed(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("gone")
    await _call(iot.create_thing, thingName=thing)
    jobs = [unique("j"), unique("j")]
    for job in jobs:
        await _call(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")

    async with MqttDevice(stack, thing) as device:

        async def both_pending() -> bool:
            _, body = await device.request("get")
            return len(body.get("queuedJobs", [])) == 2

        await until(both_pending, what="two pending executions")
        outcome, _ = await device.request(f"{jobs[0]}/update", {"status": "IN_PROGRESS"})
        assert outcome == "accepted"

        await _call(iot.delete_thing, thingName=thing)

        for suffix, body in (
            ("get", {}),
            ("start-next", {}),
            ("$next/get", {}),
            (f"{jobs[0]}/get", {}),
            (f"{jobs[0]}/update", {"status": "SUCCEEDED"}),
        ):
            outcome, reply = await device.request(suffix, body)
            assert (outcome, reply["code"]) == ("rejected", "ResourceNotFound"), suffix
            assert thing in reply["message"]

    for job in jobs:
        assert await _call(_status, iot, job=job, thing=thing) == "REMOVED"

        async def completed(job: str = job) -> bool:
            return (await _call(iot.describe_job, jobId=job))["job"]["status"] == "COMPLETED"

        await until(completed, what=f"job {job} to complete")

    # A thing created again with the same name inherits nothing.
    await _call(iot.create_thing, thingName=thing)
    async with MqttDevice(stack, thing) as device:
        outcome, body = await device.request("get")
        assert outcome == "accepted" and (body["inProgressJobs"], body["queuedJobs"]) == ([], [])
        outcome, body = await device.request("start-next")
        assert outcome == "accepted" and "execution" not in body


# --- DescribeEndpoint -------------------------------------------------------------------------


def test_describe_endpoint(stack: Stack) -> None:
    iot = iot_client(stack)
    settings = stack.settings
    assert iot.describe_endpoint(endpointType="iot:Jobs")["endpointAddress"] == f"127.0.0.1:{settings.dataplane_port}"
    mqtt = f"{settings.mqtt_host}:{settings.mqtt_port}"
    assert iot.describe_endpoint(endpointType="iot:Data")["endpointAddress"] == mqtt
    assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == mqtt
    assert iot.describe_endpoint()["endpointAddress"] == mqtt
    for endpoint_type in ("iot:CredentialProvider", "bogus", "x" * 129):
        code, message = error_of(iot.describe_endpoint, endpointType=endpoint_type)
        assert code == "InvalidRequestException" and "endpointType" in message


async def test_a_thing_created_again_starts_with_no_execution_history(stack: Stack) -> None:
    iot = iot_client(stack)
    name = unique("again")
    await asyncio.to_thread(iot.create_thing, thingName=name)
    job = unique("again")
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(name)], document="{}")
    await asyncio.to_thread(iot.delete_thing, thingName=name)
    described = await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=name)
    assert described["execution"]["status"] == "REMOVED"

    await asyncio.to_thread(iot.create_thing, thingName=name)
    listed = await asyncio.to_thread(iot.list_job_executions_for_thing, thingName=name)
    assert listed["executionSummaries"] == []
    data = data_client(stack)
    with pytest.raises(data.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(data.describe_job_execution, jobId=job, thingName=name)
    details = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
    assert details["numberOfRemovedThings"] == 0, "the job no longer counts the old thing's execution"
