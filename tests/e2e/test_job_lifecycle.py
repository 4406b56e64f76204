"""Updating, cancelling and deleting jobs and executions through boto3, seen by devices over MQTT."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.servers import Servers
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


async def _job_on_things(stack: Stack, count: int) -> tuple[Any, str, list[str]]:
    iot = iot_client(stack)
    things = [unique("life") for _ in range(count)]
    for name in things:
        await asyncio.to_thread(iot.create_thing, thingName=name)
    job = unique("job")
    await asyncio.to_thread(
        iot.create_job, jobId=job, targets=[thing_arn(t) for t in things], document="{}", description="before"
    )

    async def queued() -> bool:
        listed = await asyncio.to_thread(iot.list_job_executions_for_job, jobId=job)
        return len(listed["executionSummaries"]) == count

    await until(queued, what="executions queued")
    return iot, job, things


async def _status(iot: Any, job: str, thing: str) -> str:
    try:
        described = await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing)
    except iot.exceptions.ResourceNotFoundException:
        return "GONE"
    return str(described["execution"]["status"])


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def test_update_job_changes_description_and_timeout(stack: Stack) -> None:
    iot, job, _ = await _job_on_things(stack, 1)
    await asyncio.to_thread(
        iot.update_job, jobId=job, description="after", timeoutConfig={"inProgressTimeoutInMinutes": 30}
    )
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["description"] == "after"
    assert described["timeoutConfig"] == {"inProgressTimeoutInMinutes": 30}
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.update_job, jobId=unique("missing"), description="x")
    with pytest.raises(iot.exceptions.InvalidRequestException, match="inProgressTimeoutInMinutes"):
        await asyncio.to_thread(iot.update_job, jobId=job, timeoutConfig={"inProgressTimeoutInMinutes": 0})


async def test_cancel_job_cancels_queued_executions_and_force_reaches_in_progress(stack: Stack) -> None:
    iot, job, (busy, idle) = await _job_on_things(stack, 2)
    async with MqttDevice(stack, busy) as device:
        outcome, _ = await device.request(f"{job}/update", {"status": "IN_PROGRESS"})
        assert outcome == "accepted"
        await until(lambda: _is(_status(iot, job, busy), "IN_PROGRESS"), what="the start to be readable")

        answer = await asyncio.to_thread(iot.cancel_job, jobId=job, reasonCode="OPERATOR_STOP", comment="why not")
        assert (answer["jobId"], answer["description"]) == (job, "before")
        described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
        assert (described["status"], described["reasonCode"], described["comment"]) == (
            "CANCELED",
            "OPERATOR_STOP",
            "why not",
        )
        assert described["forceCanceled"] is False
        await until(lambda: _is(_status(iot, job, idle), "CANCELED"), what="the queued execution to be canceled")
        assert await _status(iot, job, busy) == "IN_PROGRESS"

        await asyncio.to_thread(iot.cancel_job, jobId=job, force=True)
        await until(lambda: _is(_status(iot, job, busy), "CANCELED"), what="the forced cancel")
        outcome, body = await device.request(f"{job}/update", {"status": "SUCCEEDED"})
        assert (outcome, body["code"], body["executionState"]["status"]) == (
            "rejected",
            "InvalidStateTransition",
            "CANCELED",
        )
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["forceCanceled"] is True
    assert described["jobProcessDetails"]["numberOfCanceledThings"] == 2
    forced = (await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=busy))["execution"]
    assert forced["forceCanceled"] is True
    with pytest.raises(iot.exceptions.InvalidRequestException, match="reasonCode"):
        await asyncio.to_thread(iot.cancel_job, jobId=job, reasonCode="lower case")


async def test_cancel_job_execution_rules(stack: Stack) -> None:
    iot, job, (thing,) = await _job_on_things(stack, 1)
    with pytest.raises(iot.exceptions.VersionConflictException, match="expectedVersion"):
        await asyncio.to_thread(iot.cancel_job_execution, jobId=job, thingName=thing, expectedVersion=9)
    async with MqttDevice(stack, thing) as device:
        await device.request(f"{job}/update", {"status": "IN_PROGRESS"})
        with pytest.raises(iot.exceptions.InvalidStateTransitionException, match="force"):
            await asyncio.to_thread(iot.cancel_job_execution, jobId=job, thingName=thing)
        await asyncio.to_thread(
            iot.cancel_job_execution, jobId=job, thingName=thing, force=True, statusDetails={"by": "operator"}
        )
        moved = await device.next_notify_next()
        while "execution" in moved:  # notify-next of the start may still be queued
            moved = await device.next_notify_next()
    execution = (await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing))["execution"]
    assert execution["status"] == "CANCELED" and execution["statusDetails"] == {"detailsMap": {"by": "operator"}}
    with pytest.raises(iot.exceptions.InvalidStateTransitionException):
        await asyncio.to_thread(iot.cancel_job_execution, jobId=job, thingName=thing, force=True)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.cancel_job_execution, jobId=unique("none"), thingName=thing)


async def test_delete_job_execution_then_delete_job_frees_the_id(stack: Stack) -> None:
    iot, job, (thing,) = await _job_on_things(stack, 1)
    with pytest.raises(iot.exceptions.InvalidStateTransitionException, match="force"):
        await asyncio.to_thread(iot.delete_job_execution, jobId=job, thingName=thing, executionNumber=1)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.delete_job_execution, jobId=job, thingName=thing, executionNumber=2)
    await asyncio.to_thread(iot.delete_job_execution, jobId=job, thingName=thing, executionNumber=1, force=True)
    assert await _status(iot, job, thing) == "GONE"

    # the only execution is gone, so the SNAPSHOT job has nothing left to wait for
    async def completed() -> bool:
        return (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["status"] == "COMPLETED"

    await until(completed, what="the job to complete")
    await asyncio.to_thread(iot.delete_job, jobId=job)

    async def gone() -> bool:
        try:
            await asyncio.to_thread(iot.describe_job, jobId=job)
        except iot.exceptions.ResourceNotFoundException:
            return True
        return False

    await until(gone, what="the job to be deleted")
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document='{"again": true}')
    assert (await asyncio.to_thread(iot.get_job_document, jobId=job))["document"] == '{"again": true}'

    async def requeued() -> bool:
        listed = await asyncio.to_thread(iot.list_job_executions_for_thing, thingName=thing)
        return [e["jobExecutionSummary"]["executionNumber"] for e in listed["executionSummaries"]] == [2]

    await until(requeued, what="a new execution that does not reuse number 1")


async def test_delete_job_needs_force_while_in_progress_and_removes_its_executions(stack: Stack) -> None:
    iot, job, things = await _job_on_things(stack, 2)
    with pytest.raises(iot.exceptions.InvalidStateTransitionException, match="force"):
        await asyncio.to_thread(iot.delete_job, jobId=job)
    async with MqttDevice(stack, things[0]) as device:
        await device.request(f"{job}/update", {"status": "IN_PROGRESS"})
        await asyncio.to_thread(iot.delete_job, jobId=job, force=True)

        async def all_gone() -> bool:
            return all([await _status(iot, job, t) == "GONE" for t in things])

        await until(all_gone, what="executions deleted")
        outcome, body = await device.request(f"{job}/update", {"status": "SUCCEEDED"})
        assert (outcome, body["code"]) == ("rejected", "ResourceNotFound")
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.delete_job, jobId=unique("none"))


async def test_update_job_replaces_the_configuration_blocks_it_names(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, job = unique("cfg"), unique("cfg-job")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    retry = {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 3}]}
    presigned = {"roleArn": "arn:aws:iam::123456789012:role/presign", "expiresInSec": 600}
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(thing)],
        document="{}",
        jobExecutionsRetryConfig=retry,
        presignedUrlConfig=presigned,
    )
    rollout = {"maximumPerMinute": 25}
    await asyncio.to_thread(iot.update_job, jobId=job, jobExecutionsRolloutConfig=rollout)
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["jobExecutionsRolloutConfig"] == rollout
    assert described["presignedUrlConfig"] == presigned and described["jobExecutionsRetryConfig"] == retry

    lowered = {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 0}]}
    await asyncio.to_thread(iot.update_job, jobId=job, jobExecutionsRetryConfig=lowered)
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["jobExecutionsRetryConfig"] == lowered
    raised = {"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 2}]}
    with pytest.raises(iot.exceptions.InvalidRequestException, match="lowered to 0"):
        await asyncio.to_thread(iot.update_job, jobId=job, jobExecutionsRetryConfig=raised)


async def test_at_most_ten_jobs_are_being_deleted_at_once(servers: Servers) -> None:
    """With the dataplane down, deletions wait for their executions and stay DELETION_IN_PROGRESS."""
    # Eventual: a strict DeleteJob would wait its whole timeout for effects the dead dataplane cannot make.
    stack = Stack(servers, consistency="eventual")
    await stack.start()
    try:
        iot = iot_client(stack)
        thing = unique("del")
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        jobs = [unique("del") for _ in range(11)]
        for job in jobs:
            await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")

        async def all_queued() -> bool:  # so no transaction of the dataplane is open when it dies
            listed = await asyncio.to_thread(iot.list_job_executions_for_thing, thingName=thing)
            return len(listed["executionSummaries"]) == len(jobs)

        await until(all_queued, what="every execution queued")
        stack.kill("dataplane")
        for job in jobs[:10]:
            await asyncio.to_thread(iot.delete_job, jobId=job, force=True)

        async def ten_being_deleted() -> bool:  # eventual consistency: the limit reads the read model
            listed = await asyncio.to_thread(iot.list_jobs, status="DELETION_IN_PROGRESS")
            return len(listed["jobs"]) == 10

        await until(ten_being_deleted, what="the ten deletions to show as DELETION_IN_PROGRESS")
        with pytest.raises(iot.exceptions.LimitExceededException, match="at most 10"):
            await asyncio.to_thread(iot.delete_job, jobId=jobs[10], force=True)
        stack.spawn("dataplane")

        async def all_deleted() -> bool:
            listed = await asyncio.to_thread(iot.list_jobs)
            return not set(jobs[:10]) & {j["jobId"] for j in listed["jobs"]}

        await until(all_deleted, timeout=60, what="the deletions to finish once the dataplane is back")
        await asyncio.to_thread(iot.delete_job, jobId=jobs[10], force=True)
    finally:
        await stack.stop()


async def test_an_updated_timeout_reaches_the_executions_that_start_afterwards(stack: Stack) -> None:
    iot = iot_client(stack)
    early, late, untimed = unique("tmo"), unique("tmo"), unique("tmo")
    for name in (early, late, untimed):
        await asyncio.to_thread(iot.create_thing, thingName=name)
    job = unique("tmo")
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(early), thing_arn(late)],
        document="{}",
        timeoutConfig={"inProgressTimeoutInMinutes": 60},
    )
    bare = unique("tmo")
    await asyncio.to_thread(iot.create_job, jobId=bare, targets=[thing_arn(untimed)], document="{}")

    async def started(thing: str) -> dict[str, Any]:
        async with MqttDevice(stack, thing) as device:
            outcome, reply = await device.request("start-next", {})
            assert outcome == "accepted"
            return dict(reply["execution"])

    await started(early)
    await asyncio.to_thread(iot.update_job, jobId=job, timeoutConfig={"inProgressTimeoutInMinutes": 120})
    await asyncio.to_thread(iot.update_job, jobId=bare, timeoutConfig={"inProgressTimeoutInMinutes": 120})
    await started(late)
    await started(untimed)

    async def seconds_left(job_id: str, thing: str) -> int:
        described = await asyncio.to_thread(iot.describe_job_execution, jobId=job_id, thingName=thing)
        return int(described["execution"]["approximateSecondsBeforeTimedOut"])

    # A minute lasts a second here: 60 and 120 minutes are 60 and 120 seconds.
    assert await seconds_left(job, early) <= 60, "started before the update: the old timeout"
    assert 60 < await seconds_left(job, late) <= 120, "started after it: the new one"
    assert 60 < await seconds_left(bare, untimed) <= 120, "a job given a timeout by UpdateJob times out too"
