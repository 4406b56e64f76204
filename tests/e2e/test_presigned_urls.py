"""Presigned-URL placeholders (aws-iot-jobs.md §6.11): every delivery of a job document to a device, over MQTT
and over HTTP, carries presigned GET URLs that download the object from a real S3-compatible server (moto's);
the control plane keeps showing the placeholders.

Each delivered URL is checked twice: it downloads the object's bytes, and its SigV4 query signature is
recomputed here from the credentials the stack was given (moto serves presigned URLs without checking
their signatures, so the download alone would not prove them).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import aiohttp
import boto3
import pytest
from moto.server import ThreadedMotoServer
from yarl import URL

from tests.support.clients import REGION, MqttDevice, data_client, iot_client, thing_arn, unique
from tests.support.servers import Servers, free_port
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

ACCESS_KEY = "AKIAIOTJOBSTEST00001"
SECRET_KEY = "iotjobs-test-secret-key-0000000000000000"
SIGNING_REGION = "eu-west-1"
BUCKET = "firmware-bucket"
OBJECTS = {"v2/image.bin": b"\x00firmware v2\xff" * 64, "notes/read me.txt": b"release notes"}
PATH_STYLE = f"${{aws:iot:s3-presigned-url:https://s3.{REGION}.amazonaws.com/{BUCKET}/v2/image.bin}}"
VIRTUAL_HOSTED = f"${{aws:iot:s3-presigned-url:https://{BUCKET}.s3.amazonaws.com/notes/read%20me.txt}}"
NOT_S3 = "${aws:iot:s3-presigned-url:https://example.com/elsewhere/file.bin}"
DOCUMENT = json.dumps({"operation": "install", "image": PATH_STYLE, "notes": [VIRTUAL_HOSTED], "other": NOT_S3})


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="y"
    )
    s3.create_bucket(Bucket=BUCKET)
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=BUCKET, Key=key, Body=body)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture(scope="module")
async def s3_stack(servers: Servers, s3_endpoint: str) -> AsyncIterator[Stack]:
    stack = Stack(
        servers,
        s3_endpoint=s3_endpoint,
        s3_access_key_id=ACCESS_KEY,
        s3_secret_access_key=SECRET_KEY,
        s3_region=SIGNING_REGION,
    )
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


# --- what a delivered URL must be ---------------------------------------------------------------


def _signature(url: str) -> str:
    """The SigV4 query signature a presigned GET URL should carry, computed from the URL and the secret."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.pop("X-Amz-Signature")
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = "\n".join(["GET", parts.path, query, f"host:{parts.netloc}", "", "host", "UNSIGNED-PAYLOAD"])
    scope = params["X-Amz-Credential"].split("/", 1)[1]
    to_sign = "\n".join(
        ["AWS4-HMAC-SHA256", params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + SECRET_KEY).encode()
    for part in scope.split("/"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


async def _check_delivered(url: str, s3_endpoint: str, key: str, expires: int, window: tuple[float, float]) -> None:
    """`url` is a presigned GET of `key` on the S3 server, signed with the stack's credentials during `window`
    for `expires` seconds, and it downloads the object."""
    assert url.startswith(f"{s3_endpoint}/{BUCKET}/"), url
    params = dict(parse_qsl(urlsplit(url).query))
    credential = params["X-Amz-Credential"].split("/")
    assert credential[0] == ACCESS_KEY and credential[2:] == [SIGNING_REGION, "s3", "aws4_request"]
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert params["X-Amz-Expires"] == str(expires)
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
    assert int(window[0]) <= signed_at <= window[1], (signed_at, window)
    assert params["X-Amz-Signature"] == _signature(url)
    async with aiohttp.ClientSession() as http, http.get(URL(url, encoded=True)) as response:
        assert response.status == 200
        assert await response.read() == OBJECTS[key]


async def _check_document(
    delivered: dict[str, Any], s3_endpoint: str, expires: int, window: tuple[float, float]
) -> None:
    assert delivered["operation"] == "install"
    await _check_delivered(delivered["image"], s3_endpoint, "v2/image.bin", expires, window)
    await _check_delivered(delivered["notes"][0], s3_endpoint, "notes/read me.txt", expires, window)
    assert delivered["other"] == NOT_S3  # no S3 object URL: delivered as it is


ROLE = "arn:aws:iam::123456789012:role/presign"


async def _job(stack: Stack, thing: str, **extra: Any) -> str:
    """A job on `thing` with the placeholders' document; its presignedUrlConfig names a role, as it must."""
    job = unique("psjob")
    iot = iot_client(stack)
    config = {"roleArn": ROLE, **extra.pop("presignedUrlConfig", {})}
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(thing)],
        document=DOCUMENT,
        presignedUrlConfig=config,
        **extra,
    )
    return job


async def _thing(stack: Stack) -> str:
    thing = unique("ps")
    await asyncio.to_thread(iot_client(stack).create_thing, thingName=thing)
    return thing


# --- MQTT ---------------------------------------------------------------------------------------


async def test_every_mqtt_delivery_signs_fresh_urls_and_the_control_plane_keeps_the_placeholders(
    s3_stack: Stack, s3_endpoint: str
) -> None:
    thing = await _thing(s3_stack)
    async with MqttDevice(s3_stack, thing) as device:
        before = time.time()
        job = await _job(s3_stack, thing, presignedUrlConfig={"expiresInSec": 600})
        notified = await device.next_notify_next()
        await _check_document(notified["execution"]["jobDocument"], s3_endpoint, 600, (before, time.time()))

        before = time.time()
        outcome, started = await device.request("start-next")
        assert outcome == "accepted"
        await _check_document(started["execution"]["jobDocument"], s3_endpoint, 600, (before, time.time()))

        for topic in (f"{job}/get", "$next/get"):
            before = time.time()
            outcome, described = await device.request(topic)
            assert outcome == "accepted"
            await _check_document(described["execution"]["jobDocument"], s3_endpoint, 600, (before, time.time()))
        outcome, described = await device.request(f"{job}/get", {"includeJobDocument": False})
        assert outcome == "accepted" and "jobDocument" not in described["execution"]

        before = time.time()
        outcome, updated = await device.request(f"{job}/update", {"status": "SUCCEEDED", "includeJobDocument": True})
        assert outcome == "accepted"
        await _check_document(updated["jobDocument"], s3_endpoint, 600, (before, time.time()))

    iot = iot_client(s3_stack)
    document = await asyncio.to_thread(iot.get_job_document, jobId=job)
    assert document["document"] == DOCUMENT
    before_substitution = await asyncio.to_thread(iot.get_job_document, jobId=job, beforeSubstitution=True)
    assert before_substitution["document"] == DOCUMENT
    described_job = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described_job["presignedUrlConfig"] == {"roleArn": ROLE, "expiresInSec": 600}


# --- HTTP (iot-jobs-data) ------------------------------------------------------------------------


async def test_every_http_delivery_carries_presigned_urls_valid_for_an_hour_by_default(
    s3_stack: Stack, s3_endpoint: str
) -> None:
    thing = await _thing(s3_stack)
    job = await _job(s3_stack, thing)
    data = data_client(s3_stack)

    async def queued() -> dict[str, Any]:
        got: dict[str, Any] = await asyncio.to_thread(data.describe_job_execution, thingName=thing, jobId=job)
        return got

    before = time.time()
    described = await until(queued, what="the execution")
    await _check_document(json.loads(described["execution"]["jobDocument"]), s3_endpoint, 3600, (before, time.time()))

    without = await asyncio.to_thread(data.describe_job_execution, thingName=thing, jobId=job, includeJobDocument=False)
    assert "jobDocument" not in without["execution"]

    before = time.time()
    started = await asyncio.to_thread(data.start_next_pending_job_execution, thingName=thing)
    await _check_document(json.loads(started["execution"]["jobDocument"]), s3_endpoint, 3600, (before, time.time()))

    before = time.time()
    updated = await asyncio.to_thread(
        data.update_job_execution, thingName=thing, jobId=job, status="IN_PROGRESS", includeJobDocument=True
    )
    await _check_document(json.loads(updated["jobDocument"]), s3_endpoint, 3600, (before, time.time()))

    plain = await asyncio.to_thread(data.update_job_execution, thingName=thing, jobId=job, status="SUCCEEDED")
    assert "jobDocument" not in plain
    stored = await asyncio.to_thread(iot_client(s3_stack).get_job_document, jobId=job)
    assert stored["document"] == DOCUMENT


async def test_a_job_from_a_template_signs_for_the_templates_lifetime(s3_stack: Stack, s3_endpoint: str) -> None:
    iot = iot_client(s3_stack)
    template = unique("pstemplate")
    await asyncio.to_thread(
        iot.create_job_template,
        jobTemplateId=template,
        description="presigned",
        document=DOCUMENT,
        presignedUrlConfig={"roleArn": "arn:aws:iam::123456789012:role/presign", "expiresInSec": 120},
    )
    thing = await _thing(s3_stack)
    arn = f"arn:aws:iot:{REGION}:123456789012:jobtemplate/{template}"
    job = unique("psjob")
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], jobTemplateArn=arn)
    data = data_client(s3_stack)
    before = time.time()
    started = await until(
        lambda: asyncio.to_thread(data.start_next_pending_job_execution, thingName=thing), what="the execution"
    )
    await _check_document(json.loads(started["execution"]["jobDocument"]), s3_endpoint, 120, (before, time.time()))
