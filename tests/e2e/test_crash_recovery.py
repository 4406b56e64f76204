"""SIGKILL the dataplane in the middle of a stream of device updates: nothing acknowledged is lost,
nothing is applied twice, and every device finishes."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest

from iotjobs.domain.thing import ExecutionUpdated
from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.events import read_events
from tests.support.servers import Servers
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

DEVICES = 12
STEPS = 20
REPLY_TIMEOUT = 4.0
ATTEMPTS = 10


@pytest.fixture
async def own_stack(servers: Servers) -> AsyncIterator[Stack]:
    running = Stack(servers)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


async def _update(device: MqttDevice, job: str, status: str, version: int, step: int) -> int:
    """Send one update until it is known to be applied; returns the new versionNumber.

    A retry of an update that was applied but whose reply died with the process comes back as
    VersionMismatch showing exactly the state the update produced.
    """
    body = {"status": status, "expectedVersion": version, "statusDetails": {"step": str(step)}}
    for _ in range(ATTEMPTS):
        try:
            outcome, reply = await device.request(f"{job}/update", body, timeout=REPLY_TIMEOUT)
        except TimeoutError:
            continue
        if outcome == "accepted":
            return version + 1
        state = reply.get("executionState", {})
        if reply["code"] == "VersionMismatch" and state.get("versionNumber") == version + 1:
            assert state["statusDetails"] == {"step": str(step)} and state["status"] == status
            return version + 1
        raise AssertionError(f"update rejected: {reply}")
    raise AssertionError(f"update to version {version + 1} never answered")


async def _run_device(
    stack: Stack, thing: str, job: str, accepted: dict[str, list[int]], progress: asyncio.Event
) -> None:
    async with MqttDevice(stack, thing) as device:
        version = None
        for _ in range(ATTEMPTS):
            try:
                outcome, started = await device.request("start-next", timeout=REPLY_TIMEOUT)
            except TimeoutError:
                continue
            if outcome == "accepted" and "execution" in started:
                version = started["execution"]["versionNumber"]
                break
        assert version is not None, f"{thing} could not start its job"
        for step in range(1, STEPS + 1):
            status = "SUCCEEDED" if step == STEPS else "IN_PROGRESS"
            version = await _update(device, job, status, version, step)
            accepted[thing].append(version)
            if sum(len(v) for v in accepted.values()) >= DEVICES * STEPS // 3:
                progress.set()  # a third done: the test kills the dataplane in this very moment


async def test_sigkill_of_the_dataplane_loses_nothing_and_duplicates_nothing(own_stack: Stack) -> None:
    stack = own_stack
    iot = iot_client(stack)
    things = [unique("crash") for _ in range(DEVICES)]
    for thing in things:
        await asyncio.to_thread(iot.create_thing, thingName=thing)
    job = unique("crash-job")
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(t) for t in things], document="{}")

    async def all_queued() -> bool:
        listed = await asyncio.to_thread(iot.list_job_executions_for_job, jobId=job)
        return len(listed["executionSummaries"]) == DEVICES

    await until(all_queued, what="every execution queued")

    accepted: dict[str, list[int]] = defaultdict(list)
    progress = asyncio.Event()
    devices = asyncio.gather(*(_run_device(stack, t, job, accepted, progress) for t in things))

    # Woken by the device that completes the first third, with the others' requests in flight: a poll
    # could come too late, a device update taking a few milliseconds now.
    await asyncio.wait_for(progress.wait(), 60)
    stack.kill("dataplane")
    killed_at = sum(len(v) for v in accepted.values())
    stack.spawn("dataplane")
    await asyncio.wait_for(devices, 120)
    assert killed_at < DEVICES * STEPS, "the kill happened after the stream ended"

    async def completed() -> bool:
        described = await asyncio.to_thread(iot.describe_job, jobId=job)
        return described["job"]["status"] == "COMPLETED"

    await until(completed, timeout=30, what="the job to complete")
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["jobProcessDetails"]["numberOfSucceededThings"] == DEVICES

    versions: dict[str, list[int]] = defaultdict(list)
    for event, _envelope in await read_events(stack.settings):
        if isinstance(event, ExecutionUpdated) and event.job_id == job:
            versions[event.thing_name].append(event.version_number)
    for thing in things:
        # start-next made version 2; each acknowledged update is in the log exactly once
        assert sorted(versions[thing]) == list(range(2, STEPS + 3)), (thing, versions[thing])
        assert set(accepted[thing]) <= set(versions[thing])
