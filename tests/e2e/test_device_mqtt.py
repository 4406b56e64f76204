"""The device MQTT slice with a plain MQTT client: replies, errors, notifications, races, timeouts."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from iotjobs.domain.thing import ExecutionUpdated
from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.events import read_events
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


async def _thing_with_jobs(stack: Stack, *documents: str, timeout_minutes: int | None = None) -> tuple[str, list[str]]:
    iot = iot_client(stack)
    thing = unique("dev")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    jobs = []
    for document in documents:
        job = unique("job")
        extra: dict[str, Any] = {}
        if timeout_minutes is not None:
            extra["timeoutConfig"] = {"inProgressTimeoutInMinutes": timeout_minutes}
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document=document, **extra)
        jobs.append(job)
    return thing, jobs


async def _wait_pending(device: MqttDevice, count: int) -> dict[str, Any]:
    async def listed() -> dict[str, Any] | None:
        _, body = await device.request("get")
        return body if len(body["inProgressJobs"]) + len(body["queuedJobs"]) == count else None

    return await until(listed, what=f"{count} pending executions")


async def test_get_start_next_update_round_trip(stack: Stack) -> None:
    thing, (job,) = await _thing_with_jobs(stack, '{"step": "flash"}')
    async with MqttDevice(stack, thing) as device:
        pending = await _wait_pending(device, 1)
        assert [j["jobId"] for j in pending["queuedJobs"]] == [job]
        queued = pending["queuedJobs"][0]
        assert isinstance(queued["queuedAt"], int) and queued["versionNumber"] == 1

        outcome, started = await device.request("start-next", {"statusDetails": {"step": "download"}})
        assert outcome == "accepted"
        execution = started["execution"]
        assert execution["jobId"] == job and execution["thingName"] == thing
        assert execution["status"] == "IN_PROGRESS"
        assert execution["jobDocument"] == {"step": "flash"}
        assert execution["statusDetails"] == {"step": "download"}
        assert execution["versionNumber"] == 2 and isinstance(execution["startedAt"], int)
        assert isinstance(started["timestamp"], int)

        outcome, described = await device.request(f"{job}/get")
        assert outcome == "accepted" and described["execution"]["status"] == "IN_PROGRESS"
        outcome, nxt = await device.request("$next/get", {"includeJobDocument": False})
        assert nxt["execution"]["jobId"] == job and "jobDocument" not in nxt["execution"]

        outcome, updated = await device.request(
            f"{job}/update",
            {"status": "SUCCEEDED", "expectedVersion": 2, "includeJobExecutionState": True, "includeJobDocument": True},
        )
        assert outcome == "accepted"
        assert updated["executionState"] == {
            "status": "SUCCEEDED",
            "statusDetails": {"step": "download"},
            "versionNumber": 3,
        }
        assert updated["jobDocument"] == {"step": "flash"}

        outcome, gone = await device.request(f"{job}/get")
        assert (outcome, gone["code"]) == ("rejected", "TerminalStateReached")
        outcome, empty = await device.request("$next/get")
        assert outcome == "accepted" and "execution" not in empty


async def test_rejections_carry_codes_and_execution_state(stack: Stack) -> None:
    thing, (job,) = await _thing_with_jobs(stack, "{}")
    async with MqttDevice(stack, thing) as device:
        await _wait_pending(device, 1)

        device.publish_raw(f"{job}/update", b"{not json")
        topic, invalid_json = await asyncio.wait_for(device.untokened.get(), 10)
        assert topic.endswith(f"{job}/update/rejected") and invalid_json["code"] == "InvalidJson"

        outcome, body = await device.request(f"{job}/update", {"status": "QUEUED"})
        assert (outcome, body["code"]) == ("rejected", "InvalidStateTransition") and "QUEUED" in body["message"]
        outcome, body = await device.request(f"{job}/update", {"status": "DONE"})
        assert (outcome, body["code"]) == ("rejected", "InvalidRequest") and "DONE" in body["message"]
        outcome, body = await device.request(f"{job}/update", {"expectedVersion": 1})
        assert body["code"] == "InvalidRequest" and "status" in body["message"]
        outcome, body = await device.request(
            f"{job}/update", {"status": "IN_PROGRESS", "statusDetails": {"bad key": "v"}}
        )
        assert body["code"] == "InvalidRequest" and "bad key" in body["message"]
        outcome, body = await device.request(
            f"{job}/update", {"status": "IN_PROGRESS", "statusDetails": {f"k{i}": "v" for i in range(11)}}
        )
        assert body["code"] == "InvalidRequest" and "10" in body["message"]
        outcome, body = await device.request("no-such-job/update", {"status": "IN_PROGRESS"})
        assert body["code"] == "ResourceNotFound"
        outcome, body = await device.request("bad$job/update", {"status": "IN_PROGRESS"})
        assert body["code"] == "InvalidRequest"

        outcome, body = await device.request(f"{job}/update", {"status": "IN_PROGRESS", "expectedVersion": 7})
        assert (outcome, body["code"]) == ("rejected", "VersionMismatch")
        assert body["executionState"] == {"status": "QUEUED", "statusDetails": {}, "versionNumber": 1}

        outcome, _ = await device.request(f"{job}/update", {"status": "FAILED", "expectedVersion": 1})
        assert outcome == "accepted"
        outcome, body = await device.request(f"{job}/update", {"status": "IN_PROGRESS"})
        assert (outcome, body["code"]) == ("rejected", "InvalidStateTransition")
        assert body["executionState"]["status"] == "FAILED"
        assert body["executionState"]["versionNumber"] == 2


async def test_racing_updates_with_one_expected_version_accept_exactly_one(stack: Stack) -> None:
    thing, (job,) = await _thing_with_jobs(stack, "{}")
    async with MqttDevice(stack, thing) as first, MqttDevice(stack, thing) as second:
        await _wait_pending(first, 1)
        outcomes = await asyncio.gather(
            first.request(
                f"{job}/update", {"status": "IN_PROGRESS", "expectedVersion": 1, "statusDetails": {"by": "first"}}
            ),
            second.request(
                f"{job}/update", {"status": "IN_PROGRESS", "expectedVersion": 1, "statusDetails": {"by": "second"}}
            ),
        )
    accepted = [body for outcome, body in outcomes if outcome == "accepted"]
    rejected = [body for outcome, body in outcomes if outcome == "rejected"]
    assert len(accepted) == 1 and len(rejected) == 1
    assert rejected[0]["code"] == "VersionMismatch"
    assert rejected[0]["executionState"]["versionNumber"] == 2
    updates = [e for e, _ in await read_events(stack.settings) if isinstance(e, ExecutionUpdated) and e.job_id == job]
    assert [u.version_number for u in updates] == [2]  # the loser left nothing in the log


async def test_notify_and_notify_next_follow_the_head_of_the_queue(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("dev")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    async with MqttDevice(stack, thing) as device:
        j1, j2 = unique("j1"), unique("j2")
        await asyncio.to_thread(iot.create_job, jobId=j1, targets=[thing_arn(thing)], document='{"n": 1}')
        first_next = await device.next_notify_next()
        assert first_next["execution"]["jobId"] == j1 and first_next["execution"]["jobDocument"] == {"n": 1}
        assert (await device.next_notify())["jobs"]["QUEUED"][0]["jobId"] == j1

        await asyncio.to_thread(iot.create_job, jobId=j2, targets=[thing_arn(thing)], document='{"n": 2}')
        listed = await device.next_notify()
        assert [e["jobId"] for e in listed["jobs"]["QUEUED"]] == [j1, j2]
        # J2 starts while J1 waits: J2 becomes the head, so only notify-next fires (the documented J1/J2 case)
        outcome, _ = await device.request(f"{j2}/update", {"status": "IN_PROGRESS"})
        assert outcome == "accepted"
        moved = await device.next_notify_next()
        assert moved["execution"]["jobId"] == j2 and moved["execution"]["status"] == "IN_PROGRESS"
        # J2 finishes: the list shrinks (notify) and J1 is the head again (notify-next)
        await device.request(f"{j2}/update", {"status": "SUCCEEDED"})
        assert [e["jobId"] for e in (await device.next_notify())["jobs"]["QUEUED"]] == [j1]
        assert (await device.next_notify_next())["execution"]["jobId"] == j1
        await device.request(f"{j1}/update", {"status": "REJECTED"})
        assert (await device.next_notify())["jobs"] == {}
        last = await device.next_notify_next()
        assert "execution" not in last and isinstance(last["timestamp"], int)
        assert device.notify.empty() and device.notify_next.empty()


async def test_in_progress_and_step_timeouts_fire_as_scheduled_events(stack: Stack) -> None:
    # The stack runs with one second per minute: a 1-minute timeout fires after about a second.
    thing, (slow, stepped) = await _thing_with_jobs(stack, "{}", "{}", timeout_minutes=2)
    iot = iot_client(stack)
    async with MqttDevice(stack, thing) as device:
        await _wait_pending(device, 2)
        outcome, started = await device.request("start-next")
        assert started["execution"]["jobId"] == slow
        outcome, _ = await device.request(f"{stepped}/update", {"status": "IN_PROGRESS", "stepTimeoutInMinutes": 1})
        assert outcome == "accepted"

        async def status(job: str) -> str:
            described = await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing)
            return described["execution"]["status"]

        await until(lambda: _is(status(stepped), "TIMED_OUT"), timeout=15, what="the step timeout")
        assert await status(slow) == "IN_PROGRESS"
        await until(lambda: _is(status(slow), "TIMED_OUT"), timeout=15, what="the in-progress timeout")
        outcome, body = await device.request(f"{slow}/update", {"status": "SUCCEEDED"})
        assert (outcome, body["code"], body["executionState"]["status"]) == (
            "rejected",
            "InvalidStateTransition",
            "TIMED_OUT",
        )


async def _is(value: Any, expected: str) -> bool:
    return await value == expected


async def test_a_request_delivered_twice_is_applied_once(stack: Stack) -> None:
    thing, (job,) = await _thing_with_jobs(stack, "{}")
    async with MqttDevice(stack, thing) as device:
        await _wait_pending(device, 1)
        token = "redelivered-1"
        payload = orjson.dumps({"status": "IN_PROGRESS", "clientToken": token, "includeJobExecutionState": True})
        device.publish_raw(f"{job}/update", payload)
        device.publish_raw(f"{job}/update", payload)  # as a QoS 1 redelivery would
        replies = [await asyncio.wait_for(device.untokened.get(), 30) for _ in range(2)]
    assert [topic.rsplit("/", 1)[1] for topic, _ in replies] == ["accepted", "accepted"]
    assert [body["executionState"]["versionNumber"] for _, body in replies] == [2, 2]
    updates = [e for e, _ in await read_events(stack.settings) if isinstance(e, ExecutionUpdated) and e.job_id == job]
    assert [(u.thing_name, u.version_number) for u in updates] == [(thing, 2)]


async def test_namespaced_jobs_use_the_namespaced_topics(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("gg")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    async with MqttDevice(stack, thing) as device:
        plain, scoped = unique("plain"), unique("scoped")
        await asyncio.to_thread(iot.create_job, jobId=plain, targets=[thing_arn(thing)], document='{"n": 0}')
        assert (await device.next_notify_next())["execution"]["jobId"] == plain
        await asyncio.to_thread(
            iot.create_job, jobId=scoped, targets=[thing_arn(thing)], document='{"n": 1}', namespaceId="ns1"
        )
        seen: dict[str, dict[str, Any]] = {}
        while {"notify-next-namespace-ns1", "notify-namespace-ns1"} - set(seen):
            topic, body = await asyncio.wait_for(device.other.get(), 10)
            seen[topic] = body
        assert seen["notify-next-namespace-ns1"]["execution"]["jobId"] == scoped
        assert [j["jobId"] for j in seen["notify-namespace-ns1"]["jobs"]["QUEUED"]] == [scoped]
        # the shared queue (plain topics) lists both jobs; its head did not change
        assert [j["jobId"] for j in (await device.next_notify())["jobs"]["QUEUED"]] == [plain]
        assert [j["jobId"] for j in (await device.next_notify())["jobs"]["QUEUED"]] == [plain, scoped]

        outcome, described = await device.request("$next/namespace-ns1/get")
        assert outcome == "accepted" and described["execution"]["jobId"] == scoped
        outcome, body = await device.request(f"{plain}/namespace-ns1/update", {"status": "IN_PROGRESS"})
        assert (outcome, body["code"]) == ("rejected", "ResourceNotFound")
        outcome, _ = await device.request(f"{scoped}/namespace-ns1/update", {"status": "SUCCEEDED"})
        assert outcome == "accepted"
        outcome, body = await device.request(f"{scoped}/elsewhere/get")
        assert (outcome, body["code"]) == ("rejected", "InvalidTopic")


async def test_qos0_requests_and_oversized_payloads(stack: Stack) -> None:
    thing, (job,) = await _thing_with_jobs(stack, "{}")
    async with MqttDevice(stack, thing) as device:
        await _wait_pending(device, 1)
        device.client.publish(f"$aws/things/{thing}/jobs/get", orjson.dumps({"clientToken": "qos0"}), qos=0)
        topic, body = await asyncio.wait_for(device.untokened.get(), 10)
        assert topic.endswith("/get/accepted") and body["queuedJobs"][0]["jobId"] == job

        huge = orjson.dumps({"status": "IN_PROGRESS", "statusDetails": {"k": "v" * 200_000}})
        device.publish_raw(f"{job}/update", huge)
        topic, body = await asyncio.wait_for(device.untokened.get(), 10)
        assert topic.endswith("/update/rejected") and body["code"] == "InvalidRequest" and "1024" in body["message"]
        outcome, _ = await device.request(f"{job}/update", {"status": "IN_PROGRESS"})
        assert outcome == "accepted"  # still connected, still served
