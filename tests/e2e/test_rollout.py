"""Rollout pacing, abort criteria and retries through boto3 and MQTT devices (aws-iot-jobs.md §6.5-§6.7).

The stack runs with a minute of one second (IOTJOBS_SECONDS_PER_MINUTE=1), so a rate of R per minute is R
per second here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.clients import MqttDevice, TopicWatch, data_client, group_arn, iot_client, thing_arn, unique
from tests.support.rolling import most_in_window
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

MINUTE = 1.0


async def _group_of(iot: Any, size: int) -> tuple[str, list[str]]:
    group = unique("roll")
    await asyncio.to_thread(iot.create_thing_group, thingGroupName=group)
    things = [f"{group}-{i:03d}" for i in range(size)]

    async def register(name: str) -> None:
        await asyncio.to_thread(iot.create_thing, thingName=name)
        await asyncio.to_thread(iot.add_thing_to_thing_group, thingGroupName=group, thingName=name)

    for start in range(0, size, 8):
        await asyncio.gather(*(register(name) for name in things[start : start + 8]))
    return group, things


async def _executions(iot: Any, job: str) -> list[dict[str, Any]]:
    summaries: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = await asyncio.to_thread(
            iot.list_job_executions_for_job, jobId=job, maxResults=250, **({"nextToken": token} if token else {})
        )
        summaries += page["executionSummaries"]
        token = page.get("nextToken")
        if not token:
            return summaries


async def test_maximum_per_minute_paces_the_rollout_and_devices_hear_it_paced(stack: Stack) -> None:
    iot = iot_client(stack)
    group, things = await _group_of(iot, 36)
    heard: dict[str, float] = {}
    async with TopicWatch(stack, "$aws/things/+/jobs/notify-next") as watch:
        job = unique("paced")
        await asyncio.to_thread(
            iot.create_job,
            jobId=job,
            targets=[group_arn(group)],
            document="{}",
            jobExecutionsRolloutConfig={"maximumPerMinute": 10},
        )
        described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
        assert described["isConcurrent"] is True
        assert described["jobProcessDetails"]["processingTargets"] == [group_arn(group)]
        assert described["jobProcessDetails"]["numberOfQueuedThings"] <= 10

        async def all_heard() -> bool:
            for topic, body, at in watch.seen:
                thing = topic.split("/")[2]
                if thing in things and body.get("execution"):
                    heard.setdefault(thing, at)
            return len(heard) == len(things)

        await until(all_heard, 30, "every device to hear of its execution")
        executions = await until(
            lambda: _all_listed(iot, job, len(things)), 10, "every execution listed by ListJobExecutionsForJob"
        )

    queued_at = [e["jobExecutionSummary"]["queuedAt"].timestamp() for e in executions]
    # Timestamps travel with millisecond precision: two releases a minute apart may read 0.999 s apart.
    assert most_in_window(queued_at, MINUTE - 0.002) == 10, "10 per rolling minute, never more"
    assert max(queued_at) - min(queued_at) >= 3 * MINUTE - 0.01, "36 things at 10 a minute take over 3 minutes"
    by_release = sorted(executions, key=lambda e: e["jobExecutionSummary"]["queuedAt"])
    first_released = {e["thingArn"].rsplit("/", 1)[1] for e in by_release[:10]}
    first_heard = {thing for thing, _at in sorted(heard.items(), key=lambda kv: kv[1])[:10]}
    assert first_heard == first_released, "the devices hear of the first minute's ten before any other"

    async def rolled_out() -> bool:
        job_now = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
        return job_now["isConcurrent"] is False and "processingTargets" not in job_now["jobProcessDetails"]

    await until(rolled_out, 10, "the job to say its rollout has finished")


async def _all_listed(iot: Any, job: str, count: int) -> list[dict[str, Any]] | None:
    executions = await _executions(iot, job)
    return executions if len(executions) == count else None


async def test_an_abort_criterion_cancels_the_job_and_its_queued_executions(stack: Stack) -> None:
    iot = iot_client(stack)
    things = [unique("abort") for _ in range(8)]
    for name in things:
        await asyncio.to_thread(iot.create_thing, thingName=name)
    job = unique("abort")
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(t) for t in things],
        document="{}",
        abortConfig={
            "criteriaList": [
                {"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 50, "minNumberOfExecutedThings": 4}
            ]
        },
    )
    failing, working, queued = things[:3], things[3:4], things[5:]
    busy = things[4]
    async with MqttDevice(stack, busy) as device:
        assert (await device.request(f"{job}/update", {"status": "IN_PROGRESS"}))[0] == "accepted"
    for name in failing[:2] + working:
        async with MqttDevice(stack, name) as device:
            status = "FAILED" if name in failing else "SUCCEEDED"
            assert (await device.request(f"{job}/update", {"status": status}))[0] == "accepted"
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["status"] == "IN_PROGRESS", "2 of 3 executed failed, but fewer than 4 have executed"

    async with MqttDevice(stack, failing[2]) as device:
        assert (await device.request(f"{job}/update", {"status": "FAILED"}))[0] == "accepted"

    async def canceled() -> dict[str, Any] | None:
        job_now = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
        return job_now if job_now["status"] == "CANCELED" else None

    aborted = await until(canceled, 10, "the abort criterion to cancel the job")
    assert aborted["reasonCode"] == "ABORTED_BY_CRITERIA"
    assert "3 of 4" in aborted["comment"] and aborted["forceCanceled"] is False

    async def statuses() -> dict[str, str] | None:
        seen = {
            e["thingArn"].rsplit("/", 1)[1]: e["jobExecutionSummary"]["status"] for e in await _executions(iot, job)
        }
        return seen if all(seen.get(t) == "CANCELED" for t in queued) else None

    seen = await until(statuses, 10, "the queued executions to be canceled")
    assert seen[busy] == "IN_PROGRESS", "an abort cancels QUEUED executions only"
    assert [seen[t] for t in failing] == ["FAILED"] * 3


async def test_a_failed_execution_is_retried_as_a_new_execution_number(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("retry")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    job = unique("retry")
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(thing)],
        document="{}",
        jobExecutionsRetryConfig={"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 1}]},
    )
    async with MqttDevice(stack, thing) as device:
        outcome, started = await device.request("start-next", {})
        assert outcome == "accepted" and started["execution"]["executionNumber"] == 1
        await device.request(f"{job}/update", {"status": "FAILED"})

        async def retried() -> dict[str, Any] | None:
            while not device.notify_next.empty():
                note = device.notify_next.get_nowait()
                if (note.get("execution") or {}).get("executionNumber") == 2:
                    return note
            return None

        note = await until(retried, 10, "notify-next for the retry")
        assert note["execution"]["jobId"] == job and note["execution"]["status"] == "QUEUED"
        outcome, again = await device.request("start-next", {})
        assert again["execution"]["executionNumber"] == 2
        await device.request(f"{job}/update", {"status": "FAILED"})

    async def counted() -> dict[str, Any] | None:
        job_now = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
        return job_now if job_now["status"] == "COMPLETED" else None

    done = await until(counted, 10, "the job to complete once its retry is spent")
    assert done["jobProcessDetails"]["numberOfFailedThings"] == 2, "AWS counts executions: two failed"
    first = await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing, executionNumber=1)
    second = await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing, executionNumber=2)
    assert [first["execution"]["status"], second["execution"]["status"]] == ["FAILED", "FAILED"]
    listed = await asyncio.to_thread(iot.list_job_executions_for_thing, thingName=thing)
    attempts = {
        s["jobExecutionSummary"]["executionNumber"]: s["jobExecutionSummary"] for s in listed["executionSummaries"]
    }
    assert attempts[2]["retryAttempt"] == 1 and attempts[1]["retryAttempt"] == 0


async def test_every_execution_is_kept_listed_and_deleted_one_by_one(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("kept")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    job = unique("kept")
    retry = {"criteriaList": [{"failureType": "ALL", "numberOfRetries": 2}]}
    await asyncio.to_thread(
        iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}", jobExecutionsRetryConfig=retry
    )
    async with MqttDevice(stack, thing) as device:
        for number, outcome in ((1, "FAILED"), (2, "FAILED"), (3, "SUCCEEDED")):

            async def started(number: int = number) -> bool:
                _, reply = await device.request("start-next", {})
                return bool((reply.get("execution") or {}).get("executionNumber") == number)

            await until(started, 10, f"execution {number} to start")  # a retry follows its failure at once
            assert (await device.request(f"{job}/update", {"status": outcome}))[0] == "accepted"

    async def listed() -> list[dict[str, Any]] | None:
        found = await _executions(iot, job)
        return found if len(found) == 3 and found[-1]["jobExecutionSummary"]["status"] == "SUCCEEDED" else None

    executions = await until(listed, 10, "three executions listed for the job")
    assert [e["jobExecutionSummary"]["executionNumber"] for e in executions] == [1, 2, 3]
    assert [e["jobExecutionSummary"]["retryAttempt"] for e in executions] == [0, 1, 2]
    for_thing = await asyncio.to_thread(iot.list_job_executions_for_thing, thingName=thing)
    assert sorted(s["jobExecutionSummary"]["executionNumber"] for s in for_thing["executionSummaries"]) == [1, 2, 3]
    details = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
    assert (details["numberOfFailedThings"], details["numberOfSucceededThings"]) == (2, 1)

    data = data_client(stack)
    with pytest.raises(data.exceptions.TerminalStateException, match=r"1 of job .* terminal state FAILED"):
        await asyncio.to_thread(data.describe_job_execution, jobId=job, thingName=thing, executionNumber=1)

    await asyncio.to_thread(iot.delete_job_execution, jobId=job, thingName=thing, executionNumber=1)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing, executionNumber=1)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.delete_job_execution, jobId=job, thingName=thing, executionNumber=1)
    assert [e["jobExecutionSummary"]["executionNumber"] for e in await _executions(iot, job)] == [2, 3]
    details = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
    assert (details["numberOfFailedThings"], details["numberOfSucceededThings"]) == (1, 1)

    await asyncio.to_thread(iot.delete_job, jobId=job)

    async def gone() -> bool:
        try:
            await asyncio.to_thread(iot.describe_job, jobId=job)
        except iot.exceptions.ResourceNotFoundException:
            return True
        return False

    await until(gone, 10, "the job and all its executions to be deleted")
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
    fresh = await until(lambda: _all_listed(iot, job, 1), 10, "the re-created job's one execution")
    assert fresh[0]["jobExecutionSummary"]["status"] == "QUEUED"
    assert fresh[0]["jobExecutionSummary"]["executionNumber"] == 4, "execution numbers are never reused"
    details = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
    assert (details["numberOfFailedThings"], details["numberOfQueuedThings"]) == (0, 1)
