"""AWS managed job templates through boto3 (aws-iot-jobs.md §3.3, §6.11): the catalog, CreateJob with a managed
template's ARN and documentParameters, and what the control plane and a device see of the job."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.clients import REGION, MqttDevice, iot_client, thing_arn, unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

NAMES = [
    "AWS-Download-File",
    "AWS-Install-Application",
    "AWS-Reboot",
    "AWS-Remove-Application",
    "AWS-Restart-Application",
    "AWS-Run-Command",
    "AWS-Start-Application",
    "AWS-Stop-Application",
]
DOWNLOAD_FILE = f"arn:aws:iot:{REGION}::jobtemplate/AWS-Download-File:1.0"


def managed_arn(name: str, version: str = "1.0") -> str:
    return f"arn:aws:iot:{REGION}::jobtemplate/{name}:{version}"


def error_of(call: Any, **kwargs: Any) -> tuple[str, str]:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return caught.value.response["Error"]["Code"], caught.value.response["Error"]["Message"]


def test_list_managed_job_templates_pages_through_the_whole_catalog(stack: Stack) -> None:
    iot = iot_client(stack)
    listed = iot.list_managed_job_templates()["managedJobTemplates"]
    assert [t["templateName"] for t in listed] == NAMES
    assert all(t["environments"] == ["LINUX"] and t["templateVersion"] == "1.0" for t in listed)
    assert [t["templateArn"] for t in listed] == [managed_arn(name) for name in NAMES]
    assert all(t["description"] for t in listed)

    pages = list(iot.get_paginator("list_managed_job_templates").paginate(PaginationConfig={"PageSize": 3}))
    assert [len(page["managedJobTemplates"]) for page in pages] == [3, 3, 2]
    assert [t["templateName"] for page in pages for t in page["managedJobTemplates"]] == NAMES

    one = iot.list_managed_job_templates(templateName="AWS-Reboot")["managedJobTemplates"]
    assert [t["templateName"] for t in one] == ["AWS-Reboot"]
    code, message = error_of(iot.list_managed_job_templates, templateName="AWS-Nothing")
    assert code == "ResourceNotFoundException" and "AWS-Nothing" in message
    code, message = error_of(iot.list_managed_job_templates, templateName="AWS-Reboot", nextToken="garbage")
    assert code == "InvalidRequestException" and "nextToken" in message


def test_describe_managed_job_template_shows_its_parameters_and_document(stack: Stack) -> None:
    iot = iot_client(stack)
    described = iot.describe_managed_job_template(templateName="AWS-Download-File")
    assert described["templateName"] == "AWS-Download-File"
    assert described["templateArn"] == DOWNLOAD_FILE
    assert described["templateVersion"] == "1.0" and described["environments"] == ["LINUX"]
    assert [(p["key"], p["regex"], p["optional"]) for p in described["documentParameters"]] == [
        ("downloadUrl", "(.*?)", False),
        ("filePath", "(.*?)", False),
        ("runAsUser", "(.){0,256}", True),
        ("pathToHandler", "(.){0,4096}", True),
    ]
    assert all(p["description"] and p["example"] for p in described["documentParameters"])
    action = json.loads(described["document"])["steps"][0]["action"]
    assert action["type"] == "runHandler" and action["input"]["handler"] == "download-file.sh"
    assert action["input"]["args"] == ["${aws:iot:parameter:downloadUrl}", "${aws:iot:parameter:filePath}"]

    again = iot.describe_managed_job_template(templateName="AWS-Download-File", templateVersion="1.0")
    assert {k: v for k, v in again.items() if k != "ResponseMetadata"} == {
        k: v for k, v in described.items() if k != "ResponseMetadata"
    }
    run = iot.describe_managed_job_template(templateName="AWS-Run-Command")
    assert [p["key"] for p in run["documentParameters"]] == ["command", "runAsUser"]
    for kwargs, needle in (
        ({"templateName": "AWS-Nothing"}, "AWS-Nothing"),
        ({"templateName": "AWS-Reboot", "templateVersion": "2.0"}, "2.0"),
    ):
        code, message = error_of(iot.describe_managed_job_template, **kwargs)
        assert code == "ResourceNotFoundException" and needle in message
    code, _ = error_of(iot.describe_managed_job_template, templateName="AWS-Reboot", templateVersion="one")
    assert code == "InvalidRequestException"


async def test_a_job_from_a_managed_template_fills_its_parameters_and_keeps_the_template_document(
    stack: Stack,
) -> None:
    iot = iot_client(stack)
    thing, job = unique("mt"), unique("mtjob")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    parameters = {"downloadUrl": 'https://example.com/a "quoted" file', "filePath": "/tmp/a", "runAsUser": "pi"}
    async with MqttDevice(stack, thing) as device:
        made = await asyncio.to_thread(
            iot.create_job,
            jobId=job,
            targets=[thing_arn(thing)],
            jobTemplateArn=DOWNLOAD_FILE,
            documentParameters=parameters,
        )
        template = await asyncio.to_thread(iot.describe_managed_job_template, templateName="AWS-Download-File")
        assert made["description"] == template["description"]

        notified = await device.next_notify_next()
        action = notified["execution"]["jobDocument"]["steps"][0]["action"]
        assert action["input"] == {
            "handler": "download-file.sh",
            "args": ['https://example.com/a "quoted" file', "/tmp/a"],
            "path": "",
        }
        assert action["runAsUser"] == "pi"

    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["jobTemplateArn"] == DOWNLOAD_FILE
    assert described["documentParameters"] == parameters
    assert described["description"] == template["description"]
    raw = await asyncio.to_thread(iot.describe_job, jobId=job, beforeSubstitution=True)
    assert raw["job"]["documentParameters"] == parameters

    document = (await asyncio.to_thread(iot.get_job_document, jobId=job))["document"]
    assert json.loads(document)["steps"][0]["action"] == action
    before = await asyncio.to_thread(iot.get_job_document, jobId=job, beforeSubstitution=True)
    assert before["document"] == template["document"]


async def test_a_job_from_a_managed_template_keeps_its_own_description_and_needs_only_required_parameters(
    stack: Stack,
) -> None:
    iot = iot_client(stack)
    thing, job = unique("mt"), unique("mtjob")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    made = await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(thing)],
        jobTemplateArn=f"arn:aws:iot:{REGION}::jobtemplate/AWS-Reboot",  # no version: the default one
        description="reboot the lab",
    )
    assert made["description"] == "reboot the lab"
    document = json.loads((await asyncio.to_thread(iot.get_job_document, jobId=job))["document"])
    assert document["steps"][0]["action"]["input"] == {"handler": "reboot.sh", "path": ""}
    assert "documentParameters" not in (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]


@pytest.mark.parametrize(
    ("kwargs", "error", "needle"),
    [
        (
            {"jobTemplateArn": DOWNLOAD_FILE, "documentParameters": {"filePath": "/tmp/a"}},
            "InvalidRequestException",
            "must give 'downloadUrl'",
        ),
        (
            {"jobTemplateArn": DOWNLOAD_FILE, "documentParameters": {"downloadUrl": "u", "filePath": "f", "mode": "x"}},
            "InvalidRequestException",
            "'mode' is not a parameter of managed template AWS-Download-File",
        ),
        (
            {
                "jobTemplateArn": DOWNLOAD_FILE,
                "documentParameters": {"downloadUrl": "u", "filePath": "f", "runAsUser": "u" * 300},
            },
            "InvalidRequestException",
            "'runAsUser' does not match the pattern (.){0,256}",
        ),
        (
            {"jobTemplateArn": managed_arn("AWS-Install-Application")},
            "InvalidRequestException",
            "must give 'packages'",
        ),
        ({"document": "{}", "documentParameters": {"k": "v"}}, "InvalidRequestException", "documentParameters"),
        (
            {"jobTemplateArn": DOWNLOAD_FILE, "document": "{}", "documentParameters": {"downloadUrl": "u"}},
            "InvalidRequestException",
            "document cannot be given together with jobTemplateArn",
        ),
        ({"jobTemplateArn": managed_arn("AWS-Reboot", "9.0")}, "ResourceNotFoundException", "9.0"),
        (
            {"jobTemplateArn": "arn:aws:iot:eu-west-1::jobtemplate/AWS-Reboot:1.0"},
            "ResourceNotFoundException",
            "eu-west-1",
        ),
    ],
)
def test_create_job_refuses_managed_template_requests_that_do_not_fit(
    stack: Stack, kwargs: dict[str, Any], error: str, needle: str
) -> None:
    iot = iot_client(stack)
    thing, job = unique("mt"), unique("mtbad")
    iot.create_thing(thingName=thing)
    code, message = error_of(iot.create_job, jobId=job, targets=[thing_arn(thing)], **kwargs)
    assert code == error
    assert needle in message
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_job(jobId=job)
