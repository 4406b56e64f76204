"""The AWS CLI as a subprocess against the stack, with dummy credentials."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from typing import Any

import pytest

from tests.support.clients import thing_arn, unique
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def aws(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "y",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    command = [
        shutil.which("aws") or sys.exit("the AWS CLI is not installed"),
        *args,
        "--endpoint-url",
        stack.control_url,
    ]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


def ok(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if result.stdout.strip() else None


def test_create_thing_create_job_describe_job(stack: Stack) -> None:
    thing, job = unique("cli"), unique("cli-job")
    created = ok(aws(stack, "iot", "create-thing", "--thing-name", thing))
    assert created["thingArn"] == thing_arn(thing)
    made = ok(
        aws(
            stack,
            "iot",
            "create-job",
            "--job-id",
            job,
            "--targets",
            thing_arn(thing),
            "--document",
            '{"action": "reboot"}',
            "--description",
            "from the CLI",
            "--timeout-config",
            "inProgressTimeoutInMinutes=30",
        )
    )
    assert made == {
        "jobArn": f"arn:aws:iot:us-east-1:123456789012:job/{job}",
        "jobId": job,
        "description": "from the CLI",
    }
    described = ok(aws(stack, "iot", "describe-job", "--job-id", job))["job"]
    assert described["status"] == "IN_PROGRESS"
    assert described["timeoutConfig"] == {"inProgressTimeoutInMinutes": 30}
    assert isinstance(described["createdAt"], float)
    assert ok(aws(stack, "iot", "get-job-document", "--job-id", job)) == {"document": '{"action": "reboot"}'}
    listed = ok(aws(stack, "iot", "list-jobs"))["jobs"]
    assert job in [j["jobId"] for j in listed]


def test_errors_print_the_modeled_code_and_exit_255(stack: Stack) -> None:
    missing = aws(stack, "iot", "describe-job", "--job-id", unique("missing"))
    assert missing.returncode == 255
    assert "(ResourceNotFoundException) when calling the DescribeJob operation" in missing.stderr
    bad = aws(stack, "iot", "create-job", "--job-id", unique("bad"), "--targets", "nope", "--document", "{}")
    assert bad.returncode == 255
    assert "(InvalidRequestException)" in bad.stderr and "nope" in bad.stderr


def test_create_and_describe_a_job_template_and_list_its_tags(stack: Stack) -> None:
    template = unique("cli-tmpl")
    arn = f"arn:aws:iot:us-east-1:123456789012:jobtemplate/{template}"
    made = ok(
        aws(
            stack,
            "iot",
            "create-job-template",
            "--job-template-id",
            template,
            "--description",
            "from the CLI",
            "--document",
            '{"action": "reboot"}',
            "--timeout-config",
            "inProgressTimeoutInMinutes=20",
            "--tags",
            "Key=team,Value=ops",
        )
    )
    assert made == {"jobTemplateArn": arn, "jobTemplateId": template}
    described = ok(aws(stack, "iot", "describe-job-template", "--job-template-id", template))
    assert described["document"] == '{"action": "reboot"}'
    assert described["description"] == "from the CLI"
    assert described["timeoutConfig"] == {"inProgressTimeoutInMinutes": 20}
    assert isinstance(described["createdAt"], float)
    tags = ok(aws(stack, "iot", "list-tags-for-resource", "--resource-arn", arn))
    assert tags == {"tags": [{"Key": "team", "Value": "ops"}]}
    duplicate = aws(
        stack, "iot", "create-job-template", "--job-template-id", template, "--description", "x", "--document", "{}"
    )
    assert duplicate.returncode == 255
    assert "(ConflictException) when calling the CreateJobTemplate operation" in duplicate.stderr


def test_tag_a_job_from_the_cli(stack: Stack) -> None:
    thing, job = unique("cli"), unique("cli-job")
    ok(aws(stack, "iot", "create-thing", "--thing-name", thing))
    made = ok(aws(stack, "iot", "create-job", "--job-id", job, "--targets", thing_arn(thing), "--document", "{}"))
    ok(aws(stack, "iot", "tag-resource", "--resource-arn", made["jobArn"], "--tags", "Key=env,Value=prod"))
    listed = ok(aws(stack, "iot", "list-tags-for-resource", "--resource-arn", made["jobArn"]))
    assert listed == {"tags": [{"Key": "env", "Value": "prod"}]}
    missing = aws(stack, "iot", "list-tags-for-resource", "--resource-arn", f"{made['jobArn']}-missing")
    assert missing.returncode == 255 and "(ResourceNotFoundException)" in missing.stderr


def test_describe_thing_group_and_list_things(stack: Stack) -> None:
    parent, group = unique("cli-parent"), unique("cli-group")
    ok(aws(stack, "iot", "create-thing-group", "--thing-group-name", parent))
    ok(
        aws(
            stack,
            "iot",
            "create-thing-group",
            "--thing-group-name",
            group,
            "--parent-group-name",
            parent,
            "--thing-group-properties",
            '{"thingGroupDescription": "from the CLI", "attributePayload": {"attributes": {"floor": "3"}}}',
        )
    )
    described = ok(aws(stack, "iot", "describe-thing-group", "--thing-group-name", group))
    assert described["thingGroupName"] == group
    assert described["thingGroupArn"] == f"arn:aws:iot:us-east-1:123456789012:thinggroup/{group}"
    assert described["version"] == 1
    assert described["thingGroupProperties"] == {
        "thingGroupDescription": "from the CLI",
        "attributePayload": {"attributes": {"floor": "3"}},
    }
    metadata = described["thingGroupMetadata"]
    assert metadata["parentGroupName"] == parent
    assert metadata["rootToParentThingGroups"] == [
        {"groupName": parent, "groupArn": f"arn:aws:iot:us-east-1:123456789012:thinggroup/{parent}"}
    ]
    assert isinstance(metadata["creationDate"], float)

    batch = unique("cli-batch")
    things = sorted(unique("cli-thing") for _ in range(3))
    for thing in things:
        payload = f'{{"attributes": {{"batch": "{batch}"}}}}'
        ok(aws(stack, "iot", "create-thing", "--thing-name", thing, "--attribute-payload", payload))
    # The CLI pages through every result itself; a page size of 1 makes it follow two tokens.
    listed = ok(
        aws(stack, "iot", "list-things", "--attribute-name", "batch", "--attribute-value", batch, "--page-size", "1")
    )
    assert [t["thingName"] for t in listed["things"]] == things
    assert listed["things"][0] == {
        "thingName": things[0],
        "thingArn": thing_arn(things[0]),
        "attributes": {"batch": batch},
        "version": 1,
    }
    missing = aws(stack, "iot", "describe-thing-group", "--thing-group-name", unique("missing"))
    assert missing.returncode == 255
    assert "(ResourceNotFoundException) when calling the DescribeThingGroup operation" in missing.stderr
