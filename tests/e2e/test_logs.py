"""Service logs as an operator's collector reads them: one JSON object per line on every service, the
libraries' lines included, an access line per HTTP and MQTT request with the request's id, thing name, job id
and clientToken bound; and structlog's readable console lines by setting."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import pytest

from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.servers import Servers
from tests.support.stack import SERVICES, Stack, running
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


def json_lines(stack: Stack, service: str) -> list[dict[str, Any]]:
    """Every line of the service's log, each parsed as JSON: a line that is not JSON fails the test."""
    lines = (stack.logs / f"{service}.log").read_text().splitlines()
    parsed = []
    for number, line in enumerate(lines, 1):
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            raise AssertionError(f"{service}.log line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), line
        assert {"event", "level", "timestamp", "logger"} <= entry.keys(), line
        parsed.append(entry)
    return parsed


async def test_every_line_is_json_and_requests_are_logged_with_their_ids(servers: Servers) -> None:
    async with running(servers, access_log="on") as stack:
        iot = iot_client(stack)
        thing, job = unique("logged"), unique("logged-job")
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")

        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{stack.dataplane_url}/things/{thing}/jobs/{job}") as resp,
        ):
            assert resp.status == 200, await resp.text()
            request_id = resp.headers["x-amzn-RequestId"]
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{stack.control_url}/jobs/{unique('missing')}") as resp,
        ):
            assert resp.status == 404
            refused_id = resp.headers["x-amzn-RequestId"]

        token = uuid.uuid4().hex
        async with MqttDevice(stack, thing) as device:
            outcome, _ = await device.request(f"{job}/get", token=token)
            assert outcome == "accepted"

        async def access_line(service: str, **fields: Any) -> dict[str, Any] | None:
            for entry in json_lines(stack, service):
                if entry["logger"] == "iotjobs.access" and fields.items() <= entry.items():
                    return entry
            return None

        http_line = await until(
            lambda: access_line("dataplane", request_id=request_id), what="the HTTP request's access line"
        )
        assert http_line["event"] == "request"
        assert http_line["thing_name"] == thing and http_line["job_id"] == job
        assert http_line["method"] == "GET" and http_line["path"] == f"/things/{thing}/jobs/{job}"
        assert http_line["operation"] == "DescribeJobExecution" and http_line["status"] == 200
        assert http_line["duration_ms"] > 0 and http_line["level"] == "info"

        refused = await until(
            lambda: access_line("control", request_id=refused_id), what="the refused request's access line"
        )
        assert refused["operation"] == "DescribeJob" and refused["status"] == 404
        assert refused["error"] == "ResourceNotFoundException"

        mqtt_line = await until(
            lambda: access_line("dataplane", client_token=token), what="the MQTT request's access line"
        )
        assert mqtt_line["event"] == "mqtt request" and mqtt_line["operation"] == "DescribeJobExecution"
        assert mqtt_line["thing_name"] == thing and mqtt_line["job_id"] == job and mqtt_line["durable"] is True
        assert mqtt_line["request_id"] not in (request_id, refused_id)

    # Stopped: every line each service wrote, start to shutdown, the libraries' included, is JSON.
    loggers = set()
    for service in SERVICES:
        loggers |= {entry["logger"] for entry in json_lines(stack, service)}
    assert any(name.startswith("aiokafka") for name in loggers), loggers
    assert {"iotjobs.projector", "iotjobs.access"} <= loggers


async def test_console_format_is_readable_lines(servers: Servers) -> None:
    async with (
        running(servers, log_format="console") as stack,
        aiohttp.ClientSession() as http,
        http.get(f"{stack.projector_url}/health") as resp,
    ):
        assert resp.status == 200
    for service in SERVICES:
        lines = (stack.logs / f"{service}.log").read_text().splitlines()
        assert lines, service
        for line in lines:
            with pytest.raises(json.JSONDecodeError):
                json.loads(line)
    projector = (stack.logs / "projector.log").read_text()
    assert "projector running" in projector and "[iotjobs.projector]" in projector
    assert "partition taken" in (stack.logs / "dataplane.log").read_text()
