"""JOB and JOB_EXECUTION events on `$aws/events/...` (aws-iot-jobs.md §7.7), switched by UpdateEventConfigurations
and seen by a plain MQTT subscriber."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.clients import MqttDevice, TopicWatch, iot_client, thing_arn, unique
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


class EventWatch(TopicWatch):
    def __init__(self, stack: Stack) -> None:
        super().__init__(stack, "$aws/events/#")

    def about(self, job: str) -> list[tuple[str, dict[str, Any]]]:
        return [(topic, body) for topic, body, _at in self.seen if body.get("jobId") == job]

    async def wait_for(self, topic: str) -> dict[str, Any]:
        async def arrived() -> dict[str, Any] | None:
            return next((body for t, body, _at in self.seen if t == topic), None)

        return await until(arrived, 15, f"an event on {topic}")


async def _configure(iot: Any, **enabled: bool) -> None:
    await asyncio.to_thread(
        iot.update_event_configurations,
        eventConfigurations={name: {"Enabled": value} for name, value in enabled.items()},
    )


async def test_events_are_off_until_configured_and_describe_shows_every_type(stack: Stack) -> None:
    iot = iot_client(stack)
    described = await asyncio.to_thread(iot.describe_event_configurations)
    assert set(described["eventConfigurations"]) >= {"JOB", "JOB_EXECUTION", "THING"}
    assert not any(c["Enabled"] for c in described["eventConfigurations"].values())
    await _configure(iot, JOB=True, JOB_EXECUTION=True)
    described = await asyncio.to_thread(iot.describe_event_configurations)
    assert described["eventConfigurations"]["JOB"] == {"Enabled": True}
    assert described["eventConfigurations"]["JOB_EXECUTION"] == {"Enabled": True}
    assert described["eventConfigurations"]["THING"] == {"Enabled": False}
    assert described["creationDate"] <= described["lastModifiedDate"]
    with pytest.raises(iot.exceptions.InvalidRequestException, match="NOPE"):
        await _configure(iot, NOPE=True)


async def test_a_job_and_its_executions_announce_what_happens_to_them(stack: Stack) -> None:
    iot = iot_client(stack)
    await _configure(iot, JOB=True, JOB_EXECUTION=True)
    winner, loser = unique("ev"), unique("ev")
    for name in (winner, loser):
        await asyncio.to_thread(iot.create_thing, thingName=name)
    job = unique("ev")
    async with EventWatch(stack) as watch:
        await asyncio.to_thread(
            iot.create_job, jobId=job, targets=[thing_arn(winner), thing_arn(loser)], document="{}", description="d"
        )
        for name, status in ((winner, "SUCCEEDED"), (loser, "FAILED")):
            async with MqttDevice(stack, name) as device:
                outcome, _ = await device.request(f"{job}/update", {"status": status, "statusDetails": {"k": "v"}})
                assert outcome == "accepted"
        succeeded = await watch.wait_for(f"$aws/events/jobExecution/{job}/succeeded")
        assert succeeded["eventType"] == "JOB_EXECUTION" and succeeded["thingArn"] == thing_arn(winner)
        assert (succeeded["status"], succeeded["statusDetails"]) == ("SUCCEEDED", {"k": "v"})
        failed = await watch.wait_for(f"$aws/events/jobExecution/{job}/failed")
        assert failed["thingArn"] == thing_arn(loser)
        completed = await watch.wait_for(f"$aws/events/job/{job}/completed")
        assert (completed["eventType"], completed["status"], completed["description"]) == ("JOB", "COMPLETED", "d")
        details = completed["jobProcessDetails"]
        assert (details["numberOfSucceededThings"], details["numberOfFailedThings"]) == (1, 1)
        assert isinstance(completed["timestamp"], int) and completed["createdAt"] > 10**12, "seconds; times in ms"

        await asyncio.to_thread(iot.delete_job, jobId=job)
        await watch.wait_for(f"$aws/events/job/{job}/deletion_in_progress")
        deleted = await watch.wait_for(f"$aws/events/job/{job}/deleted")
        assert deleted["jobId"] == job
        operations = [topic.rsplit("/", 1)[1] for topic, _ in watch.about(job)]
        assert operations.count("deleted") == 3, "each execution, then the job"
        ids = [body["eventId"] for _, body in watch.about(job)]
        assert len(ids) == len(set(ids))


async def test_a_disabled_type_is_not_published(stack: Stack) -> None:
    iot = iot_client(stack)
    await _configure(iot, JOB=True, JOB_EXECUTION=False)
    thing = unique("quiet")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    job = unique("quiet")
    async with EventWatch(stack) as watch:
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
        async with MqttDevice(stack, thing) as device:
            assert (await device.request(f"{job}/update", {"status": "SUCCEEDED"}))[0] == "accepted"
        await watch.wait_for(f"$aws/events/job/{job}/completed")
        # One publisher, in log order: the execution's event would have come before the job's.
        assert [topic for topic, _ in watch.about(job)] == [f"$aws/events/job/{job}/completed"]
