"""SigV4 verification on (IOTJOBS_SIGV4_CREDENTIALS and _FILE): boto3, the AWS CLI and raw HTTP against both
planes, signed right, signed wrong and not signed."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError
from yarl import URL

from tests.support.clients import data_client, iot_client, thing_arn, unique
from tests.support.servers import Servers
from tests.support.signing import client_clock, signed_headers
from tests.support.stack import Stack, running
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

KEY = ("AKIDCONTROLTOOLS", "control/secret+1")
"""Configured in IOTJOBS_SIGV4_CREDENTIALS."""
DEVICE_KEY = ("AKIDFLEETDEVICES", "device-secret-2")
"""Configured in the file IOTJOBS_SIGV4_CREDENTIALS_FILE names."""
MISMATCH = "The request signature we calculated does not match the signature you provided."
EXPIRED = re.compile(r"Signature expired: \d{8}T\d{6}Z is now earlier than \d{8}T\d{6}Z \(\d{8}T\d{6}Z - 5 min\.\)")


@pytest.fixture(scope="module")
async def stack(servers: Servers, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    credentials = tmp_path_factory.mktemp("sigv4") / "credentials"
    credentials.write_text(f"# the fleet's devices\n{DEVICE_KEY[0]}:{DEVICE_KEY[1]}\n")
    async with running(
        servers,
        sigv4_credentials=f"{KEY[0]}:{KEY[1]}",
        sigv4_credentials_file=str(credentials),
        test_clock="on",
    ) as started:
        yield started


def error_of(call: Callable[..., Any], **kwargs: Any) -> tuple[str, int, str]:
    """(code, HTTP status, message) of the ClientError `call` raises."""
    try:
        call(**kwargs)
    except ClientError as err:
        meta = err.response["ResponseMetadata"]
        return err.response["Error"]["Code"], meta["HTTPStatusCode"], err.response["Error"]["Message"]
    raise AssertionError(f"{call} succeeded")


async def raw(
    method: str, url: str, headers: dict[str, str] | None = None, body: bytes = b""
) -> tuple[int, str | None, dict[str, Any]]:
    """(status, x-amzn-ErrorType, JSON body) of a plain HTTP request, its path sent exactly as given."""
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, URL(url, encoded=True), headers=headers, data=body or None) as resp,
    ):
        return resp.status, resp.headers.get("x-amzn-ErrorType"), await resp.json(content_type=None)


async def test_clients_signed_with_a_configured_key_are_served_on_both_planes(stack: Stack) -> None:
    iot = iot_client(stack, key=KEY)
    thing, job = unique("signed"), unique("signed-job")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document='{"step": 1}')
    described = await asyncio.to_thread(iot.describe_job, jobId=job)
    assert described["job"]["status"] == "IN_PROGRESS"

    data = data_client(stack, key=DEVICE_KEY)  # the key from the credentials file

    async def queued() -> list[str]:
        pending = await asyncio.to_thread(data.get_pending_job_executions, thingName=thing)
        return [j["jobId"] for j in pending["queuedJobs"]]

    assert await until(queued, what="the job queued for the thing") == [job]
    started = await asyncio.to_thread(data.start_next_pending_job_execution, thingName=thing)
    assert (started["execution"]["jobId"], started["execution"]["status"]) == (job, "IN_PROGRESS")


async def test_a_wrong_secret_is_an_invalid_signature_on_both_planes(stack: Stack) -> None:
    iot = iot_client(stack, key=(KEY[0], "not-the-secret"))
    code, status, message = await asyncio.to_thread(error_of, iot.list_jobs)
    assert (code, status) == ("InvalidSignatureException", 403) and message.startswith(MISMATCH)
    data = data_client(stack, key=(DEVICE_KEY[0], "not-the-secret"))
    code, status, message = await asyncio.to_thread(error_of, data.get_pending_job_executions, thingName="t1")
    assert (code, status) == ("InvalidSignatureException", 403) and message.startswith(MISMATCH)


async def test_an_unknown_access_key_is_an_unrecognized_client_on_both_planes(stack: Stack) -> None:
    expected = ("UnrecognizedClientException", 403, "The security token included in the request is invalid.")
    iot = iot_client(stack, key=("AKIDNOBODYKNOWS", KEY[1]))
    assert await asyncio.to_thread(error_of, iot.list_jobs) == expected
    data = data_client(stack, key=("AKIDNOBODYKNOWS", DEVICE_KEY[1]))
    assert await asyncio.to_thread(error_of, data.get_pending_job_executions, thingName="t1") == expected


async def test_an_unsigned_request_is_a_missing_authentication_token_on_both_planes(stack: Stack) -> None:
    expected = ("MissingAuthenticationTokenException", 403, "Missing Authentication Token")
    unsigned = Config(signature_version=UNSIGNED)
    thing = unique("unsigned")
    iot = iot_client(stack, config=unsigned)
    assert await asyncio.to_thread(error_of, iot.create_thing, thingName=thing) == expected
    data = data_client(stack, config=unsigned)
    assert await asyncio.to_thread(error_of, data.get_pending_job_executions, thingName=thing) == expected
    # and it did nothing
    signed = iot_client(stack, key=KEY)
    code, status, _ = await asyncio.to_thread(error_of, signed.describe_thing, thingName=thing)
    assert (code, status) == ("ResourceNotFoundException", 404)


async def test_a_skewed_client_clock_is_an_expired_or_not_yet_current_signature(stack: Stack) -> None:
    iot = iot_client(stack, key=KEY)
    data = data_client(stack, key=DEVICE_KEY)
    with client_clock(timedelta(minutes=-10)):
        code, status, message = await asyncio.to_thread(error_of, iot.list_jobs)
        assert (code, status) == ("InvalidSignatureException", 403) and EXPIRED.fullmatch(message), message
        code, _, message = await asyncio.to_thread(error_of, data.get_pending_job_executions, thingName="t1")
        assert code == "InvalidSignatureException" and EXPIRED.fullmatch(message), message
    with client_clock(timedelta(minutes=10)):
        code, _, message = await asyncio.to_thread(error_of, iot.list_jobs)
        assert code == "InvalidSignatureException" and message.startswith("Signature not yet current: "), message
    with client_clock(timedelta(minutes=-4)):  # within AWS's five minutes
        assert "jobs" in await asyncio.to_thread(iot.list_jobs)


async def test_the_control_plane_accepts_execute_api_signing_and_refuses_another_service(stack: Stack) -> None:
    iot = iot_client(stack, key=KEY)
    iot._request_signer._signing_name = "execute-api"  # what botocore ≤ 1.29.112 signs the iot API for
    thing = unique("execute-api")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    assert (await asyncio.to_thread(iot.describe_thing, thingName=thing))["thingName"] == thing

    url = f"{stack.control_url}/things/{thing}"
    status, code, body = await raw("GET", url, signed_headers("GET", url, KEY, "iot-jobs-data"))
    assert (status, code) == (403, "InvalidSignatureException")
    assert body["message"] == "Credential should be scoped to correct service: 'iot'. "
    url = f"{stack.dataplane_url}/things/{thing}/jobs"
    status, code, body = await raw("GET", url, signed_headers("GET", url, DEVICE_KEY, "iot"))
    assert (status, code) == (403, "InvalidSignatureException")
    assert body["message"] == "Credential should be scoped to correct service: 'iot-jobs-data'. "


@pytest.mark.parametrize("plane", ["control", "dataplane"])
async def test_a_garbage_authorization_header_is_an_incomplete_signature(stack: Stack, plane: str) -> None:
    base = stack.control_url if plane == "control" else stack.dataplane_url
    status, code, body = await raw("GET", f"{base}/things/t1/jobs", {"Authorization": "Bearer not.a.sigv4"})
    assert (status, code) == (403, "IncompleteSignatureException")
    assert body["message"].startswith("Authorization header requires 'Credential' parameter.")
    assert body["message"].endswith("Authorization=Bearer not.a.sigv4")


async def test_a_body_changed_after_signing_is_refused_and_does_nothing(stack: Stack) -> None:
    thing = unique("tampered")
    url = f"{stack.control_url}/things/{thing}"
    headers = signed_headers("POST", url, KEY, "iot", b"{}", {"Content-Type": "application/json"})
    changed = json.dumps({"attributePayload": {"attributes": {"owner": "mallory"}}}).encode()
    status, code, body = await raw("POST", url, headers, changed)
    assert (status, code) == (403, "InvalidSignatureException") and body["message"].startswith(MISMATCH)
    code, _, _ = await asyncio.to_thread(error_of, iot_client(stack, key=KEY).describe_thing, thingName=thing)
    assert code == "ResourceNotFoundException"
    status, _, body = await raw("POST", url, headers, b"{}")  # the request as signed
    assert status == 200 and body["thingName"] == thing


async def test_a_presigned_url_is_served_and_a_changed_one_refused(stack: Stack) -> None:
    iot = iot_client(stack, key=KEY)
    url = iot.generate_presigned_url("list_jobs", Params={"maxResults": 5}, ExpiresIn=300)
    status, code, body = await raw("GET", url)
    assert (status, code) == (200, None) and "jobs" in body
    status, code, _ = await raw("GET", url.replace("maxResults=5", "maxResults=6"))
    assert (status, code) == (403, "InvalidSignatureException")


async def test_probes_are_open_and_every_other_path_needs_a_signature(stack: Stack) -> None:
    for base in (stack.control_url, stack.dataplane_url):
        status, code, body = await raw("GET", f"{base}/health")
        assert (status, code, body["ready"]) == (200, None, True)
        status, code, body = await raw("GET", f"{base}/live")  # the liveness probe carries no credentials either
        assert (status, code, body["live"]) == (200, None, True)
        status, code, _ = await raw("GET", f"{base}/no/such/operation")
        assert (status, code) == (403, "MissingAuthenticationTokenException")
    url = f"{stack.control_url}/no/such/operation"
    status, code, _ = await raw("GET", url, signed_headers("GET", url, KEY, "iot"))
    assert (status, code) == (404, "UnknownOperationException")


async def test_metrics_are_open_to_an_unsigned_scrape(stack: Stack) -> None:
    unsigned = {"plane": "control", "status": "403", "error": "MissingAuthenticationTokenException"}
    for base in (stack.control_url, stack.dataplane_url):
        async with aiohttp.ClientSession() as http, http.get(f"{base}/metrics") as resp:
            assert resp.status == 200
            assert "iotjobs_http_requests_total" in await resp.text()
    status, code, _ = await raw("GET", f"{stack.control_url}/jobs")
    assert (status, code) == (403, "MissingAuthenticationTokenException")
    async with aiohttp.ClientSession() as http, http.get(f"{stack.control_url}/metrics") as resp:
        text = await resp.text()
    refused = [line for line in text.splitlines() if line.startswith("iotjobs_http_requests_total{")]
    assert any(all(f'{k}="{v}"' in line for k, v in {**unsigned, "operation": "ListJobs"}.items()) for line in refused)


async def test_the_test_clock_endpoint_needs_a_signature_too(stack: Stack) -> None:
    url = f"{stack.control_url}/_iotjobs/clock"
    status, code, _ = await raw("GET", url)
    assert (status, code) == (403, "MissingAuthenticationTokenException")
    advance = json.dumps({"advanceSeconds": 3600}).encode()
    wrong = signed_headers("POST", url, (KEY[0], "wrong"), "iot", advance, {"Content-Type": "application/json"})
    status, code, _ = await raw("POST", url, wrong, advance)
    assert (status, code) == (403, "InvalidSignatureException")
    status, code, body = await raw("GET", url, signed_headers("GET", url, KEY, "iot"))
    assert (status, code, body["offsetSeconds"]) == (200, None, 0)  # the refused advance moved nothing


def aws_cli(stack: Stack, key: tuple[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": key[0],
        "AWS_SECRET_ACCESS_KEY": key[1],
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    aws = shutil.which("aws") or sys.exit("the AWS CLI is not installed")
    command = [aws, *args, "--endpoint-url", stack.control_url]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)


async def test_the_aws_cli_signed_right_is_served_and_signed_wrong_is_refused(stack: Stack) -> None:
    listed = await asyncio.to_thread(aws_cli, stack, KEY, "iot", "list-jobs")
    assert listed.returncode == 0, listed.stderr
    assert "jobs" in json.loads(listed.stdout)
    refused = await asyncio.to_thread(aws_cli, stack, (KEY[0], "wrong-secret"), "iot", "list-jobs")
    assert refused.returncode == 255
    assert "An error occurred (InvalidSignatureException) when calling the ListJobs operation" in refused.stderr


@pytest.mark.parametrize("service", ["control", "dataplane"])
def test_a_service_whose_credentials_cannot_be_read_stops_at_start(service: str, tmp_path: Path) -> None:
    # Verification asked for but impossible must never become a service answering unchecked requests.
    empty = tmp_path / "empty"
    empty.write_text("# nothing yet\n")
    cases = [
        ("IOTJOBS_SIGV4_CREDENTIALS_FILE", str(tmp_path / "absent"), "cannot read it"),
        ("IOTJOBS_SIGV4_CREDENTIALS_FILE", str(empty), "the file names no ACCESS_KEY_ID:SECRET entry"),
        ("IOTJOBS_SIGV4_CREDENTIALS", "AKIDONLY", "entry 1 ((no ':')) must be ACCESS_KEY_ID:SECRET"),
    ]
    for variable, value, why in cases:
        env = {**os.environ, variable: value}
        started = subprocess.run(
            [sys.executable, "-m", f"services.{service}"], env=env, capture_output=True, text=True, timeout=60
        )
        assert started.returncode != 0 and why in started.stderr, started.stderr[-2000:]
