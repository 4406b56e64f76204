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
