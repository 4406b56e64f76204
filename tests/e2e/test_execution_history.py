"""Every execution's history, read back through control's extension operation and `iotjobs-admin history`,
after a job's executions went through a device's updates, a timeout, two retries, a cancellation and a
deletion; and `iotjobs-admin lag` and `topics --list` once the projector has caught up."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import botocore.session
import orjson
import pytest

from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.events import next_offsets
from tests.support.stack import Stack, admin, projected_to_end
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

HISTORY = "/_iotjobs/things/{thing}/jobs/{job}/history"
RETRIES = {"criteriaList": [{"failureType": kind, "numberOfRetries": 1} for kind in ("TIMED_OUT", "FAILED")]}
EXPECTED = [
    # (executionNumber, status, cause, statusDetails, versionNumber)
    (1, "QUEUED", "rollout", {}, 1),
    (1, "IN_PROGRESS", "device", {"step": "download"}, 2),
    (1, "TIMED_OUT", "timer", {"step": "download"}, 3),
    (2, "QUEUED", "retry", {}, 1),
    (2, "IN_PROGRESS", "device", {"step": "install"}, 2),
    (2, "IN_PROGRESS", "device", {"step": "install", "progress": "50"}, 3),
    (2, "FAILED", "device", {"error": "disk full"}, 4),
    (3, "QUEUED", "retry", {}, 1),
    (3, "CANCELED", "operator", {"by": "operator"}, 2),
    (1, "DELETED", "operator", {"step": "download"}, 3),
]


async def _get(stack: Stack, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{stack.control_url}{path}") as resp:
        return resp.status, dict(resp.headers), orjson.loads(await resp.read())


async def _history(stack: Stack, thing: str, job: str) -> list[dict[str, Any]]:
    status, _headers, body = await _get(stack, HISTORY.format(thing=thing, job=job))
    return list(body["history"]) if status == 200 else []


async def _execution(iot: Any, job: str, thing: str) -> tuple[int, str]:
    described = (await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing))["execution"]
    return described["executionNumber"], described["status"]


async def _run_the_job(stack: Stack) -> tuple[str, str, float]:
    """One thing's executions of one job: timed out, retried, failed, retried, canceled; the first deleted."""
    iot = iot_client(stack)
    thing, job = unique("hist"), unique("hjob")
    began = time.time()
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(
        iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}", jobExecutionsRetryConfig=RETRIES
    )
    async with MqttDevice(stack, thing) as device:
        # A step timeout of one (one-second) minute, and the device says nothing more: the timer times it out.
        started = {"status": "IN_PROGRESS", "statusDetails": {"step": "download"}, "stepTimeoutInMinutes": 1}
        assert (await device.request(f"{job}/update", started))[0] == "accepted"
        await until(lambda: _is(_execution(iot, job, thing), (2, "QUEUED")), what="the timeout's retry")

        for body in (
            {"status": "IN_PROGRESS", "statusDetails": {"step": "install"}},
            {"status": "IN_PROGRESS", "statusDetails": {"step": "install", "progress": "50"}},
            {"status": "FAILED", "statusDetails": {"error": "disk full"}},
        ):
            outcome, reply = await device.request(f"{job}/update", body)
            assert outcome == "accepted", reply
    await until(lambda: _is(_execution(iot, job, thing), (3, "QUEUED")), what="the failure's retry")
    await asyncio.to_thread(iot.cancel_job_execution, jobId=job, thingName=thing, statusDetails={"by": "operator"})
    await asyncio.to_thread(iot.delete_job_execution, jobId=job, thingName=thing, executionNumber=1)
    return thing, job, began


async def _is(value: Any, expected: Any) -> bool:
    return bool(await value == expected)


def _seen(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(e["executionNumber"], e["status"], e["cause"], e["statusDetails"], e["versionNumber"]) for e in entries]


async def test_history_shows_every_transition_with_its_cause_over_http_and_the_cli(stack: Stack) -> None:
    thing, job, began = await _run_the_job(stack)
    # Control's own writes are projected before they answer; the device's updates may lag the projector.
    entries = await until(
        lambda: _complete(_history(stack, thing, job)), what="the whole history to be projected", timeout=30
    )
    assert _seen(entries) == EXPECTED
    times = [e["at"] for e in entries]
    assert times == sorted(times) and began - 1 <= times[0] and times[-1] <= time.time()
    assert set(entries[0]) == {"executionNumber", "status", "at", "cause", "statusDetails", "versionNumber"}

    listed = await admin(stack, "history", thing, job, "--json")
    assert listed.returncode == 0, listed.stderr
    assert [orjson.loads(line) for line in listed.stdout.splitlines()] == entries

    table = await admin(stack, "history", thing, job)
    assert table.returncode == 0, table.stderr
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["EXECUTION", "AT", "(UTC)", "STATUS"]
    assert [tuple(row.split()[i] for i in (0, 2, 3, 4)) for row in rows] == [
        (str(n), status, cause, str(version)) for n, status, cause, _details, version in EXPECTED
    ]
    assert '{"error":"disk full"}' in rows[6]


async def _complete(entries: Any) -> list[dict[str, Any]] | None:
    got: list[dict[str, Any]] = await entries
    return got if len(got) >= len(EXPECTED) else None


async def test_history_errors_are_aws_shaped(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, job = unique("hist"), unique("hjob")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
    await until(lambda: _history(stack, thing, job), what="the queued execution's history")

    for path in (HISTORY.format(thing=thing, job=unique("never")), HISTORY.format(thing=unique("nobody"), job=job)):
        status, headers, body = await _get(stack, path)
        assert (status, headers["x-amzn-ErrorType"], body["__type"]) == (
            404,
            "ResourceNotFoundException",
            "ResourceNotFoundException",
        ), path
        assert "never had an execution" in body["message"]
    for path, member in (
        (HISTORY.format(thing=thing, job="bad%20job"), "jobId"),
        (HISTORY.format(thing="x" * 129, job=job), "thingName"),
    ):
        status, headers, body = await _get(stack, path)
        assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestException"), path
        assert member in body["message"]

    missing = await admin(stack, "history", thing, unique("never"))
    assert missing.returncode != 0 and "never had an execution" in missing.stderr
    invalid = await admin(stack, "history", thing, "bad job")
    assert invalid.returncode == 2 and "jobId" in invalid.stderr


def test_no_aws_operation_lives_where_the_history_is_served() -> None:
    session = botocore.session.get_session()
    for service in ("iot", "iot-jobs-data"):
        model = session.get_service_model(service)
        for name in model.operation_names:
            uri = model.operation_model(name).http["requestUri"]
            assert not uri.startswith("/_iotjobs") and not uri.split("?")[0].endswith("/history"), (service, name)


async def test_lag_is_zero_once_projected_and_topics_list_their_end_offsets(stack: Stack) -> None:
    await _run_the_job(stack)  # something to project, whichever test ran before
    await projected_to_end(stack, timeout=30)
    ends = await next_offsets(stack.settings)

    lag = await admin(stack, "lag", "--json")
    assert lag.returncode == 0, lag.stderr
    partitions = [orjson.loads(line) for line in lag.stdout.splitlines()]
    assert [p["partition"] for p in partitions] == list(range(stack.settings.partitions))
    assert all(p["records_behind"] == 0 and p["seconds_behind"] == 0 for p in partitions), partitions
    assert {p["partition"]: p["end_offset"] for p in partitions if p["end_offset"]} == ends
    assert {p["partition"]: p["checkpoint"] for p in partitions if p["checkpoint"]} == ends
    table = await admin(stack, "lag")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["PARTITION", "END", "OFFSET"]

    listed = await admin(stack, "topics", "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    topics = {t["topic"]: t for t in map(orjson.loads, listed.stdout.splitlines())}
    events = topics[stack.settings.topic("events")]
    assert events["partitions"] == stack.settings.partitions
    assert {p: end for p, end in enumerate(events["end_offsets"]) if end} == ends
    assert stack.settings.topic("dead-letters") in topics
