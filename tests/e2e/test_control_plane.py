"""The control-plane slice through boto3, against the real stack."""

from __future__ import annotations

import json

import pytest
from botocore.exceptions import ClientError

from tests.support.clients import group_arn, iot_client, thing_arn, unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def test_create_then_describe_reads_own_writes(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("t")
    created = iot.create_thing(thingName=thing)
    assert created["thingArn"] == thing_arn(thing)
    described = iot.describe_thing(thingName=thing)
    assert (described["thingName"], described["thingId"], described["version"]) == (thing, created["thingId"], 1)
    assert described["defaultClientId"] == thing

    job = unique("j")
    iot.create_job(jobId=job, targets=[thing_arn(thing)], document='{"op": "reboot"}', description="first")
    got = iot.describe_job(jobId=job)["job"]
    assert got["jobId"] == job
    assert got["status"] == "IN_PROGRESS"
    assert got["targets"] == [thing_arn(thing)]
    assert got["description"] == "first"
    assert got["createdAt"].tzinfo is not None
    assert iot.get_job_document(jobId=job)["document"] == '{"op": "reboot"}'


def test_create_thing_is_idempotent_only_for_the_same_configuration(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("t")
    first = iot.create_thing(thingName=thing, attributePayload={"attributes": {"a": "1"}})
    again = iot.create_thing(thingName=thing, attributePayload={"attributes": {"a": "1"}})
    assert again["thingId"] == first["thingId"]
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException):
        iot.create_thing(thingName=thing, attributePayload={"attributes": {"a": "2"}})


def test_group_targets_queue_one_execution_per_member(stack: Stack) -> None:
    iot = iot_client(stack)
    group = unique("g")
    iot.create_thing_group(thingGroupName=group)
    things = sorted(unique("t") for _ in range(3))
    for thing in things:
        iot.create_thing(thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)
    job = unique("j")
    # the first thing is also a direct target: it still gets one execution
    iot.create_job(jobId=job, targets=[group_arn(group), thing_arn(things[0])], document="{}")

    def executions() -> list[dict]:
        return iot.list_job_executions_for_job(jobId=job)["executionSummaries"]

    from tests.support.waiting import until_sync

    listed = until_sync(lambda: len(executions()) == 3 and executions(), what="three executions")
    assert sorted(e["thingArn"] for e in listed) == [thing_arn(t) for t in things]
    assert {e["jobExecutionSummary"]["status"] for e in listed} == {"QUEUED"}
    one = iot.describe_job_execution(jobId=job, thingName=things[1])["execution"]
    assert (one["status"], one["executionNumber"], one["versionNumber"]) == ("QUEUED", 1, 1)
    assert one["thingArn"] == thing_arn(things[1])
    for_thing = iot.list_job_executions_for_thing(thingName=things[2])["executionSummaries"]
    assert [e["jobId"] for e in for_thing] == [job]


def test_list_jobs_pages_join_to_the_full_list(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("t")
    iot.create_thing(thingName=thing)
    created = [unique("page") for _ in range(5)]
    for job in created:
        iot.create_job(jobId=job, targets=[thing_arn(thing)], document="{}")
    everything = [j["jobId"] for j in iot.list_jobs()["jobs"]]
    paged = [
        j["jobId"]
        for page in iot.get_paginator("list_jobs").paginate(PaginationConfig={"PageSize": 2})
        for j in page["jobs"]
    ]
    assert paged == everything
    assert set(created) <= set(everything)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="nextToken"):
        iot.list_jobs(nextToken="bm90LWEtdG9rZW4")


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"document": "{}", "targets": ["not-an-arn"]}, "InvalidRequestException", "not a thing or thing group ARN"),
        (
            {"document": "not json", "targets": [thing_arn("x")]},
            "InvalidRequestException",
            "document is not valid JSON",
        ),
        ({"document": "[1]", "targets": [thing_arn("x")]}, "InvalidRequestException", "JSON object"),
        ({"document": "{}", "targets": [thing_arn("missing-thing")]}, "ResourceNotFoundException", "missing-thing"),
        ({"document": "{}", "targets": [group_arn("missing-group")]}, "ResourceNotFoundException", "missing-group"),
        (
            {"document": "{}", "targets": ["arn:aws:iot:eu-west-1:123456789012:thing/x"]},
            "ResourceNotFoundException",
            "eu-west-1",
        ),
        ({"document": "{}", "targets": [thing_arn("x")] * 101}, "InvalidRequestException", "at most 100"),
        (
            {"document": "{}", "targets": [thing_arn("x")], "targetSelection": "SOMETIMES"},
            "InvalidRequestException",
            "targetSelection",
        ),
        (
            {"document": "{}", "targets": [thing_arn("x")], "timeoutConfig": {"inProgressTimeoutInMinutes": 10081}},
            "InvalidRequestException",
            "inProgressTimeoutInMinutes",
        ),
        (
            {"document": "{}", "targets": [thing_arn("x")], "description": "bad\u0007bell"},
            "InvalidRequestException",
            "description",
        ),
        (
            {"document": "{" + '"k": "' + "v" * 32768 + '"}', "targets": [thing_arn("x")]},
            "InvalidRequestException",
            "32768",
        ),
    ],
)
def test_create_job_rejects_bad_input_with_the_modeled_error(
    stack: Stack, kwargs: dict, error: str, needle: str
) -> None:
    iot = iot_client(stack)
    with pytest.raises(ClientError) as caught:
        iot.create_job(jobId=unique("bad"), **kwargs)
    assert caught.value.response["Error"]["Code"] == error
    assert needle in caught.value.response["Error"]["Message"]


def test_bad_ids_and_missing_resources(stack: Stack) -> None:
    iot = iot_client(stack)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="jobId"):
        iot.describe_job(jobId="has space")
    with pytest.raises(iot.exceptions.ResourceNotFoundException, match="does not exist"):
        iot.describe_job(jobId=unique("nope"))
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=unique("nope"))
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_job_execution(jobId=unique("nope"), thingName="x")
    with pytest.raises(iot.exceptions.InvalidRequestException, match="maxResults"):
        iot.list_jobs(maxResults=251)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.add_thing_to_thing_group(thingGroupName=unique("nope"), thingName=unique("nope"))


def test_duplicate_job_is_resource_already_exists(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("t")
    iot.create_thing(thingName=thing)
    job = unique("j")
    iot.create_job(jobId=job, targets=[thing_arn(thing)], document=json.dumps({"a": 1}))
    with pytest.raises(iot.exceptions.ResourceAlreadyExistsException, match=job):
        iot.create_job(jobId=job, targets=[thing_arn(thing)], document="{}")


@pytest.mark.parametrize("signing_name", ["iot", "execute-api"])
def test_requests_signed_for_either_service_name_are_served(stack: Stack, signing_name: str) -> None:
    iot = iot_client(stack)
    captured: list[str] = []
    iot.meta.events.register(
        "before-send.iot.*", lambda request, **_: captured.append(request.headers["Authorization"])
    )
    iot._request_signer._signing_name = signing_name  # what older botocore releases (≤ 1.29.112) sent
    thing = unique("signed")
    iot.create_thing(thingName=thing)
    assert iot.describe_thing(thingName=thing)["thingName"] == thing
    scope = f"/us-east-1/{signing_name}/aws4_request"
    assert captured and all(scope in (h.decode() if isinstance(h, bytes) else h) for h in captured)
