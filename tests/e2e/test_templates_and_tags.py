"""Job templates and tags through boto3, against the real stack (aws-iot-jobs.md §3.2, §3.3, §5.4)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.clients import ACCOUNT, REGION, iot_client, thing_arn, unique
from tests.support.stack import Stack
from tests.support.waiting import until_sync

pytestmark = pytest.mark.e2e

DOC = json.dumps({"operation": "reboot"})
BLOCKS: dict[str, Any] = {
    "presignedUrlConfig": {"roleArn": "arn:aws:iam::123456789012:role/presign", "expiresInSec": 600},
    "jobExecutionsRolloutConfig": {
        "maximumPerMinute": 50,
        "exponentialRate": {
            "baseRatePerMinute": 5,
            "incrementFactor": 1.5,
            "rateIncreaseCriteria": {"numberOfSucceededThings": 10},
        },
    },
    "abortConfig": {
        "criteriaList": [
            {"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 12.5, "minNumberOfExecutedThings": 4}
        ]
    },
    "timeoutConfig": {"inProgressTimeoutInMinutes": 15},
    "jobExecutionsRetryConfig": {"criteriaList": [{"failureType": "TIMED_OUT", "numberOfRetries": 3}]},
    "maintenanceWindows": [{"startTime": "cron(0 2 ? * SUN *)", "durationInMinutes": 120}],
    "destinationPackageVersions": ["arn:aws:iot:us-east-1:123456789012:package/p/version/1.0"],
}


def template_arn(template_id: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:jobtemplate/{template_id}"


def job_arn(job_id: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:job/{job_id}"


def error_of(call: Any, **kwargs: Any) -> tuple[str, str, dict[str, Any]]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response


def a_thing(iot: Any) -> str:
    name = unique("t")
    iot.create_thing(thingName=name)
    return name


def tags_of(iot: Any, arn: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in iot.list_tags_for_resource(resourceArn=arn)["tags"]}


# --- CreateJobTemplate / DescribeJobTemplate --------------------------------------------------


def test_create_then_describe_echoes_every_member_as_given(stack: Stack) -> None:
    iot = iot_client(stack)
    template = unique("tmpl")
    created = iot.create_job_template(
        jobTemplateId=template,
        description="nightly reboot",
        document=DOC,
        tags=[{"Key": "team", "Value": "ops"}],
        **BLOCKS,
    )
    assert (created["jobTemplateArn"], created["jobTemplateId"]) == (template_arn(template), template)
    described = iot.describe_job_template(jobTemplateId=template)
    described.pop("ResponseMetadata")
    created_at = described.pop("createdAt")
    assert isinstance(created_at, datetime) and created_at.tzinfo is not None
    assert described == {
        "jobTemplateArn": template_arn(template),
        "jobTemplateId": template,
        "description": "nightly reboot",
        "document": DOC,
        **BLOCKS,
    }
    assert tags_of(iot, template_arn(template)) == {"team": "ops"}


def test_document_source_is_stored_and_echoed(stack: Stack) -> None:
    iot = iot_client(stack)
    template = unique("tmpl")
    source = "https://s3.amazonaws.com/bucket/job.json"
    iot.create_job_template(jobTemplateId=template, description="from S3", documentSource=source)
    described = iot.describe_job_template(jobTemplateId=template)
    assert described["documentSource"] == source and "document" not in described


def test_a_duplicate_template_id_is_a_conflict(stack: Stack) -> None:
    iot = iot_client(stack)
    template = unique("tmpl")
    iot.create_job_template(jobTemplateId=template, description="first", document=DOC)
    code, message, response = error_of(
        iot.create_job_template, jobTemplateId=template, description="first", document=DOC
    )
    assert code == "ConflictException"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 409
    assert template in message
    assert response.get("resourceId") == template
    assert iot.describe_job_template(jobTemplateId=template)["description"] == "first"


def test_a_template_copies_a_jobs_document_and_config_and_given_blocks_win(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    job = unique("j")
    iot.create_job(jobId=job, targets=[thing_arn(thing)], document=DOC, timeoutConfig={"inProgressTimeoutInMinutes": 7})
    copied, overridden = unique("tmpl"), unique("tmpl")
    iot.create_job_template(jobTemplateId=copied, description="copy", jobArn=job_arn(job))
    described = iot.describe_job_template(jobTemplateId=copied)
    assert (described["document"], described["timeoutConfig"]) == (DOC, {"inProgressTimeoutInMinutes": 7})
    assert described["description"] == "copy"
    iot.create_job_template(
        jobTemplateId=overridden,
        description="copy, longer timeout",
        jobArn=job_arn(job),
        timeoutConfig={"inProgressTimeoutInMinutes": 60},
    )
    assert iot.describe_job_template(jobTemplateId=overridden)["timeoutConfig"] == {"inProgressTimeoutInMinutes": 60}


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"jobArn": job_arn("no-such-job")}, "ResourceNotFoundException", "no-such-job"),
        ({"jobArn": "arn:aws:iot:eu-west-1:123456789012:job/j1"}, "ResourceNotFoundException", "eu-west-1"),
        ({"jobArn": thing_arn("t1")}, "InvalidRequestException", "jobArn"),
        ({"jobArn": "not-an-arn"}, "InvalidRequestException", "jobArn"),
        ({}, "InvalidRequestException", "exactly one of jobArn, document and documentSource"),
        ({"document": DOC, "jobArn": job_arn("j1")}, "InvalidRequestException", "exactly one of"),
        ({"document": DOC, "documentSource": "https://x/y"}, "InvalidRequestException", "exactly one of"),
        ({"document": "not json"}, "InvalidRequestException", "document"),
        ({"document": "[1, 2]"}, "InvalidRequestException", "JSON object"),
        ({"document": '{"k": "' + "v" * 32768 + '"}'}, "InvalidRequestException", "32768"),
        ({"document": DOC, "description": "d" * 2029}, "InvalidRequestException", "2028"),
        ({"document": DOC, "description": "bell\u0007"}, "InvalidRequestException", "description"),
        (
            {"document": DOC, "timeoutConfig": {"inProgressTimeoutInMinutes": 10081}},
            "InvalidRequestException",
            "inProgressTimeoutInMinutes",
        ),
        (
            {"document": DOC, "maintenanceWindows": [{"startTime": "cron(0 0 * * ? *)", "durationInMinutes": 1431}]},
            "InvalidRequestException",
            "durationInMinutes",
        ),
        (
            {
                "document": DOC,
                "abortConfig": {
                    "criteriaList": [
                        {
                            "failureType": "FAILED",
                            "action": "CANCEL",
                            "thresholdPercentage": 101,
                            "minNumberOfExecutedThings": 1,
                        }
                    ]
                },
            },
            "InvalidRequestException",
            "thresholdPercentage",
        ),
        (
            {
                "document": DOC,
                "jobExecutionsRetryConfig": {
                    "criteriaList": [
                        {"failureType": "FAILED", "numberOfRetries": 6},
                        {"failureType": "TIMED_OUT", "numberOfRetries": 6},
                    ]
                },
            },
            "InvalidRequestException",
            "at most 10",
        ),
        (
            {
                "document": DOC,
                "jobExecutionsRolloutConfig": {
                    "exponentialRate": {
                        "baseRatePerMinute": 5,
                        "incrementFactor": 1.25,
                        "rateIncreaseCriteria": {"numberOfNotifiedThings": 2},
                    }
                },
            },
            "InvalidRequestException",
            "incrementFactor",
        ),
        ({"document": DOC, "tags": [{"Key": "bad key!", "Value": "v"}]}, "InvalidRequestException", "Key"),
        (
            {"document": DOC, "tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]},
            "InvalidRequestException",
            "50",
        ),
    ],
)
def test_create_job_template_rejects_bad_input_with_the_modeled_error(
    stack: Stack, kwargs: dict[str, Any], error: str, needle: str
) -> None:
    iot = iot_client(stack)
    template = unique("bad")
    code, message, _ = error_of(iot.create_job_template, jobTemplateId=template, **{"description": "d", **kwargs})
    assert code == error
    assert needle in message
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_job_template(jobTemplateId=template)


def test_bad_template_ids_and_missing_templates(stack: Stack) -> None:
    iot = iot_client(stack)
    for call in (iot.describe_job_template, iot.delete_job_template):
        with pytest.raises(iot.exceptions.InvalidRequestException, match="jobTemplateId"):
            call(jobTemplateId="has space")
        with pytest.raises(iot.exceptions.ResourceNotFoundException, match="does not exist"):
            call(jobTemplateId=unique("nope"))
    with pytest.raises(iot.exceptions.InvalidRequestException, match="jobTemplateId"):
        iot.create_job_template(jobTemplateId="t" * 65, description="d", document=DOC)


# --- ListJobTemplates -------------------------------------------------------------------------


def test_list_job_templates_pages_join_to_the_full_list(stack: Stack) -> None:
    iot = iot_client(stack)
    created = sorted(unique("page") for _ in range(5))
    for template in created:
        iot.create_job_template(jobTemplateId=template, description=f"about {template}", document=DOC)
    everything = iot.list_job_templates()["jobTemplates"]
    ids = [t["jobTemplateId"] for t in everything]
    assert ids == sorted(ids) and set(created) <= set(ids)
    one = next(t for t in everything if t["jobTemplateId"] == created[0])
    assert (one["jobTemplateArn"], one["description"]) == (template_arn(created[0]), f"about {created[0]}")
    assert isinstance(one["createdAt"], datetime)
    pages = list(iot.get_paginator("list_job_templates").paginate(PaginationConfig={"PageSize": 2}))
    assert [t["jobTemplateId"] for page in pages for t in page["jobTemplates"]] == ids
    assert all(len(page["jobTemplates"]) <= 2 for page in pages) and "nextToken" not in pages[-1]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="nextToken"):
        iot.list_job_templates(nextToken="bm90LWEtdG9rZW4")
    with pytest.raises(iot.exceptions.InvalidRequestException, match="maxResults"):
        iot.list_job_templates(maxResults=251)


# --- DeleteJobTemplate ------------------------------------------------------------------------


def test_delete_leaves_jobs_made_from_the_template_alone_and_frees_the_id(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    template = unique("tmpl")
    iot.create_job_template(jobTemplateId=template, description="d", document=DOC, tags=[{"Key": "k", "Value": "v"}])
    job = unique("j")
    iot.create_job(jobId=job, targets=[thing_arn(thing)], jobTemplateArn=template_arn(template))
    assert iot.delete_job_template(jobTemplateId=template)["ResponseMetadata"]["HTTPStatusCode"] == 200
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_job_template(jobTemplateId=template)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.delete_job_template(jobTemplateId=template)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.list_tags_for_resource(resourceArn=template_arn(template))
    assert template not in [t["jobTemplateId"] for t in iot.list_job_templates()["jobTemplates"]]
    assert iot.describe_job(jobId=job)["job"]["jobTemplateArn"] == template_arn(template)
    assert iot.get_job_document(jobId=job)["document"] == DOC
    with pytest.raises(iot.exceptions.ResourceNotFoundException, match=template):
        iot.create_job(jobId=unique("j"), targets=[thing_arn(thing)], jobTemplateArn=template_arn(template))

    iot.create_job_template(jobTemplateId=template, description="again", document="{}")
    assert iot.describe_job_template(jobTemplateId=template)["description"] == "again"
    assert tags_of(iot, template_arn(template)) == {}


# --- CreateJob with jobTemplateArn ------------------------------------------------------------


def test_a_job_from_a_template_inherits_its_document_and_timeout(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    template = unique("tmpl")
    iot.create_job_template(
        jobTemplateId=template,
        description="template",
        document=DOC,
        timeoutConfig={"inProgressTimeoutInMinutes": 15},
    )
    job = unique("j")
    made = iot.create_job(
        jobId=job, targets=[thing_arn(thing)], jobTemplateArn=template_arn(template), description="from a template"
    )
    assert (made["jobId"], made["description"]) == (job, "from a template")
    described = iot.describe_job(jobId=job)["job"]
    assert described["jobTemplateArn"] == template_arn(template)
    assert described["timeoutConfig"] == {"inProgressTimeoutInMinutes": 15}
    assert described["description"] == "from a template"
    assert iot.get_job_document(jobId=job)["document"] == DOC
    listed = until_sync(lambda: iot.list_job_executions_for_job(jobId=job)["executionSummaries"], what="the execution")
    assert [e["thingArn"] for e in listed] == [thing_arn(thing)]


def test_request_fields_win_over_the_templates(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    template = unique("tmpl")
    iot.create_job_template(
        jobTemplateId=template, description="t", document=DOC, timeoutConfig={"inProgressTimeoutInMinutes": 15}
    )
    job = unique("j")
    iot.create_job(
        jobId=job,
        targets=[thing_arn(thing)],
        jobTemplateArn=template_arn(template),
        timeoutConfig={"inProgressTimeoutInMinutes": 90},
    )
    described = iot.describe_job(jobId=job)["job"]
    assert described["timeoutConfig"] == {"inProgressTimeoutInMinutes": 90}
    assert iot.get_job_document(jobId=job)["document"] == DOC


def test_a_template_without_timeout_gives_a_job_without_one(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    template = unique("tmpl")
    iot.create_job_template(jobTemplateId=template, description="t", document=DOC)
    job = unique("j")
    iot.create_job(jobId=job, targets=[thing_arn(thing)], jobTemplateArn=template_arn(template))
    described = iot.describe_job(jobId=job)["job"]
    assert "timeoutConfig" not in described and described["jobTemplateArn"] == template_arn(template)


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        ({"jobTemplateArn": template_arn("no-such-template")}, "ResourceNotFoundException", "no-such-template"),
        (
            {"jobTemplateArn": "arn:aws:iot:eu-west-1:123456789012:jobtemplate/x"},
            "ResourceNotFoundException",
            "eu-west-1",
        ),
        (
            {"jobTemplateArn": "arn:aws:iot:us-east-1::jobtemplate/AWS-No-Such-Template:1.0"},
            "ResourceNotFoundException",
            "AWS-No-Such-Template",
        ),
        (
            {"jobTemplateArn": template_arn("TEMPLATE"), "documentParameters": {"k": "v"}},
            "InvalidRequestException",
            "documentParameters can only be used with an AWS managed job template",
        ),
        ({"jobTemplateArn": "not-an-arn"}, "InvalidRequestException", "jobTemplateArn"),
        ({"jobTemplateArn": thing_arn("t1")}, "InvalidRequestException", "jobTemplateArn"),
        ({"jobTemplateArn": template_arn("TEMPLATE"), "document": DOC}, "InvalidRequestException", "document"),
        (
            {"jobTemplateArn": template_arn("TEMPLATE"), "documentSource": "https://s3.amazonaws.com/b/k"},
            "InvalidRequestException",
            "documentSource",
        ),
        ({}, "InvalidRequestException", "one of document, documentSource or jobTemplateArn is required"),
    ],
)
def test_create_job_with_a_bad_template_reference(
    stack: Stack, kwargs: dict[str, Any], error: str, needle: str
) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    template = unique("tmpl")
    iot.create_job_template(jobTemplateId=template, description="t", document=DOC)
    if "jobTemplateArn" in kwargs:
        kwargs = {**kwargs, "jobTemplateArn": kwargs["jobTemplateArn"].replace("TEMPLATE", template)}
    job = unique("bad")
    code, message, _ = error_of(iot.create_job, jobId=job, targets=[thing_arn(thing)], **kwargs)
    assert code == error
    assert needle in message
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_job(jobId=job)


def test_a_job_from_a_template_takes_every_configuration_block(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    template = unique("tmpl")
    iot.create_job_template(jobTemplateId=template, description="t", document=DOC, **BLOCKS)
    job = unique("j")
    own_rollout = {"maximumPerMinute": 7}
    iot.create_job(
        jobId=job,
        targets=[thing_arn(thing)],
        jobTemplateArn=template_arn(template),
        jobExecutionsRolloutConfig=own_rollout,
    )
    described = iot.describe_job(jobId=job)["job"]
    for block in ("presignedUrlConfig", "abortConfig", "jobExecutionsRetryConfig", "destinationPackageVersions"):
        assert described[block] == BLOCKS[block], block
    assert described["jobExecutionsRolloutConfig"] == own_rollout  # the request's own block wins
    assert described["timeoutConfig"] == BLOCKS["timeoutConfig"]
    assert described["schedulingConfig"]["maintenanceWindows"] == BLOCKS["maintenanceWindows"]


# --- tags -------------------------------------------------------------------------------------


def test_tag_untag_and_list_a_job(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    job = unique("j")
    iot.create_job(
        jobId=job,
        targets=[thing_arn(thing)],
        document=DOC,
        tags=[{"Key": "env", "Value": "prod"}, {"Key": "owner", "Value": ""}],
    )
    assert tags_of(iot, job_arn(job)) == {"env": "prod", "owner": ""}
    iot.tag_resource(resourceArn=job_arn(job), tags=[{"Key": "env", "Value": "dev"}, {"Key": "zone", "Value": "b"}])
    listed = iot.list_tags_for_resource(resourceArn=job_arn(job))
    assert listed["tags"] == [
        {"Key": "env", "Value": "dev"},
        {"Key": "owner", "Value": ""},
        {"Key": "zone", "Value": "b"},
    ]
    assert "nextToken" not in listed
    iot.untag_resource(resourceArn=job_arn(job), tagKeys=["owner", "not-there"])
    assert tags_of(iot, job_arn(job)) == {"env": "dev", "zone": "b"}
    iot.untag_resource(resourceArn=job_arn(job), tagKeys=["env", "zone"])
    assert iot.list_tags_for_resource(resourceArn=job_arn(job))["tags"] == []
    paged = iot.get_paginator("list_tags_for_resource").paginate(resourceArn=job_arn(job))
    assert [t for page in paged for t in page["tags"]] == []


def test_tag_untag_and_list_a_template(stack: Stack) -> None:
    iot = iot_client(stack)
    template = unique("tmpl")
    iot.create_job_template(jobTemplateId=template, description="t", document=DOC)
    assert tags_of(iot, template_arn(template)) == {}
    iot.tag_resource(resourceArn=template_arn(template), tags=[{"Key": "名前", "Value": "値"}, {"Key": "a:b/c"}])
    assert tags_of(iot, template_arn(template)) == {"名前": "値", "a:b/c": ""}
    iot.untag_resource(resourceArn=template_arn(template), tagKeys=["名前"])
    assert tags_of(iot, template_arn(template)) == {"a:b/c": ""}


def test_a_resource_holds_at_most_fifty_tags(stack: Stack) -> None:
    iot = iot_client(stack)
    template = unique("tmpl")
    iot.create_job_template(
        jobTemplateId=template,
        description="t",
        document=DOC,
        tags=[{"Key": f"k{i:02}", "Value": "v"} for i in range(45)],
    )
    code, message, _ = error_of(
        iot.tag_resource,
        resourceArn=template_arn(template),
        tags=[{"Key": f"n{i}", "Value": "v"} for i in range(6)],
    )
    assert code == "InvalidRequestException" and "51 tags" in message
    iot.tag_resource(resourceArn=template_arn(template), tags=[{"Key": f"n{i}", "Value": "v"} for i in range(5)])
    assert len(tags_of(iot, template_arn(template))) == 50
    pages = list(iot.get_paginator("list_tags_for_resource").paginate(resourceArn=template_arn(template)))
    assert sum(len(p["tags"]) for p in pages) == 50


def test_deleting_a_job_drops_its_tags(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    job = unique("j")
    iot.create_job(jobId=job, targets=[thing_arn(thing)], document=DOC, tags=[{"Key": "old", "Value": "1"}])
    iot.delete_job(jobId=job, force=True)

    def gone() -> bool:
        try:
            iot.describe_job(jobId=job)
        except iot.exceptions.ResourceNotFoundException:
            return True
        return False

    until_sync(gone, what="the job to be deleted")
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.list_tags_for_resource(resourceArn=job_arn(job))
    iot.create_job(jobId=job, targets=[thing_arn(thing)], document=DOC)
    assert tags_of(iot, job_arn(job)) == {}


@pytest.mark.parametrize(
    ("arn", "error", "needle"),
    [
        (job_arn("no-such-job"), "ResourceNotFoundException", "Job no-such-job does not exist"),
        (template_arn("no-such-template"), "ResourceNotFoundException", "Job template no-such-template"),
        ("arn:aws:iot:eu-west-1:123456789012:job/j1", "ResourceNotFoundException", "eu-west-1"),
        (thing_arn("t1"), "InvalidRequestException", "names a thing"),
        ("arn:aws:iot:us-east-1:123456789012:thinggroup/g1", "InvalidRequestException", "names a thinggroup"),
        ("arn:aws:s3:::bucket", "InvalidRequestException", "not an AWS IoT resource ARN"),
        ("not-an-arn", "InvalidRequestException", "resourceArn"),
        (job_arn("bad id"), "InvalidRequestException", "does not match pattern"),
    ],
)
def test_tag_operations_reject_unknown_and_foreign_resources(stack: Stack, arn: str, error: str, needle: str) -> None:
    iot = iot_client(stack)
    for call, kwargs in (
        (iot.tag_resource, {"tags": [{"Key": "k", "Value": "v"}]}),
        (iot.untag_resource, {"tagKeys": ["k"]}),
        (iot.list_tags_for_resource, {}),
    ):
        code, message, _ = error_of(call, resourceArn=arn, **kwargs)
        assert (code, needle in message) == (error, True), (call, message)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"tags": [{"Key": "bad key!", "Value": "v"}]}, "Key"),
        ({"tags": [{"Key": "k", "Value": "v" * 257}]}, "256"),
        ({"tags": [{"Key": "k" * 129, "Value": "v"}]}, "128"),
        ({"tags": [{"Key": f"k{i}", "Value": "v"} for i in range(51)]}, "50"),
    ],
)
def test_bad_tags_are_invalid_requests(stack: Stack, kwargs: dict[str, Any], needle: str) -> None:
    iot = iot_client(stack)
    thing = a_thing(iot)
    job = unique("j")
    iot.create_job(jobId=job, targets=[thing_arn(thing)], document=DOC)
    code, message, _ = error_of(iot.tag_resource, resourceArn=job_arn(job), **kwargs)
    assert code == "InvalidRequestException" and needle in message
    code, message, _ = error_of(iot.create_job, jobId=unique("j"), targets=[thing_arn(thing)], document=DOC, **kwargs)
    assert code == "InvalidRequestException" and needle in message
    code, message, _ = error_of(iot.untag_resource, resourceArn=job_arn(job), tagKeys=["bad key!"])
    assert code == "InvalidRequestException" and "tagKeys" in message
    assert tags_of(iot, job_arn(job)) == {}
    with pytest.raises(iot.exceptions.InvalidRequestException, match="nextToken"):
        iot.list_tags_for_resource(resourceArn=job_arn(job), nextToken="bm90LWEtdG9rZW4")
