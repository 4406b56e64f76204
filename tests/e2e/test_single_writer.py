"""One writer per key across instances, and timers that survive the loss of their owner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from botocore.exceptions import ClientError

from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.servers import Servers, free_port
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def two_controls(servers: Servers) -> AsyncIterator[tuple[Stack, str]]:
    """A stack with a second control instance sharing the partitions of the first; yields its URL."""
    stack = Stack(servers, seconds_per_minute=1.0)
    await stack.start()
    port = free_port()
    stack.spawn("control", name="control-2", IOTJOBS_CONTROL_PORT=str(port), IOTJOBS_INSTANCE_ID="second")
    second = f"http://127.0.0.1:{port}"
    try:
        await stack.wait_ready(stack.control_url, second, stack.dataplane_url)
        yield stack, second
    finally:
        await stack.stop()


async def test_conflicting_creates_through_two_instances_succeed_once(two_controls: tuple[Stack, str]) -> None:
    stack, second = two_controls
    endpoints = (stack.control_url, second)
    thing = unique("t")
    await asyncio.to_thread(iot_client(stack).create_thing, thingName=thing)
    for _ in range(5):
        job = unique("race")

        def create(endpoint: str, document: str, job: str = job) -> str:
            try:
                iot_client(stack, endpoint).create_job(jobId=job, targets=[thing_arn(thing)], document=document)
                return document
            except ClientError as err:
                return str(err.response["Error"]["Code"])

        results = await asyncio.gather(
            asyncio.to_thread(create, endpoints[0], '{"from": "first"}'),
            asyncio.to_thread(create, endpoints[1], '{"from": "second"}'),
        )
        winners = [r for r in results if r.startswith("{")]
        assert len(winners) == 1 and "ResourceAlreadyExistsException" in results, results
        stored = await asyncio.to_thread(iot_client(stack, second).get_job_document, jobId=job)
        assert stored["document"] == winners[0]


async def test_timers_are_rearmed_when_a_new_owner_restores_the_state(two_controls: tuple[Stack, str]) -> None:
    stack, _ = two_controls
    iot = iot_client(stack)
    thing, job = unique("t"), unique("j")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(thing)],
        document="{}",
        timeoutConfig={"inProgressTimeoutInMinutes": 8},
    )
    async with MqttDevice(stack, thing) as device:

        async def started() -> bool:
            outcome, body = await device.request("start-next")
            return outcome == "accepted" and "execution" in body

        await until(started, what="the execution to start")

    async def status() -> str:
        try:
            described = await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing)
        except iot.exceptions.ResourceNotFoundException:
            return "not projected yet"
        return str(described["execution"]["status"])

    await until(lambda: _equals(status(), "IN_PROGRESS"), what="the start to be readable")
    stack.kill("dataplane")  # the timer's owner dies with the timer armed
    stack.spawn("dataplane")
    await until(lambda: _equals(status(), "TIMED_OUT"), timeout=40, what="the restored timer to fire")


async def _equals(value: object, expected: str) -> bool:
    return await value == expected  # type: ignore[misc]
