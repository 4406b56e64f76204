"""A whole job through unmodified clients: boto3 on the control plane, the AWS IoT Device SDK v2 on devices."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
from awscrt import io, mqtt
from awsiot import iotjobs

from tests.support.clients import group_arn, iot_client, unique
from tests.support.stack import Stack
from tests.support.waiting import until_sync

pytestmark = pytest.mark.e2e

TIMEOUT = 15
QOS = mqtt.QoS.AT_LEAST_ONCE


class SdkDevice:
    """The SDK's IotJobsClient over MQTT 3.1.1 on plain TCP, as a fleet device would run it."""

    def __init__(self, stack: Stack, thing: str) -> None:
        self.thing = thing
        client = mqtt.Client(io.ClientBootstrap.get_or_create_static_default(), tls_ctx=None)
        self.connection = mqtt.Connection(
            client=client,
            host_name=stack.settings.mqtt_host,
            port=stack.settings.mqtt_port,
            client_id=f"{thing}-{uuid.uuid4().hex[:6]}",
            clean_session=True,
            keep_alive_secs=30,
        )
        self.jobs = iotjobs.IotJobsClient(self.connection)
        self.next_events: list[Any] = []
        self.next_changed = threading.Condition()
        self.replies: dict[str, Any] = {}
        self.replied = threading.Condition()

    def __enter__(self) -> SdkDevice:
        self.connection.connect().result(TIMEOUT)
        subscriptions = [
            self.jobs.subscribe_to_next_job_execution_changed_events(
                iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=self.thing), QOS, self._on_next
            ),
            self.jobs.subscribe_to_start_next_pending_job_execution_accepted(
                iotjobs.StartNextPendingJobExecutionSubscriptionRequest(thing_name=self.thing),
                QOS,
                self._reply("start"),
            ),
            self.jobs.subscribe_to_start_next_pending_job_execution_rejected(
                iotjobs.StartNextPendingJobExecutionSubscriptionRequest(thing_name=self.thing),
                QOS,
                self._reply("start"),
            ),
        ]
        for future, _topic in subscriptions:
            future.result(TIMEOUT)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.connection.disconnect().result(TIMEOUT)

    def _on_next(self, event: iotjobs.NextJobExecutionChangedEvent) -> None:
        with self.next_changed:
            self.next_events.append(event)
            self.next_changed.notify_all()

    def _reply(self, name: str) -> Any:
        def record(response: Any) -> None:
            with self.replied:
                self.replies[name] = response
                self.replied.notify_all()

        return record

    def wait_next(self, count: int) -> Any:
        with self.next_changed:
            assert self.next_changed.wait_for(lambda: len(self.next_events) >= count, TIMEOUT), "no notify-next"
            return self.next_events[count - 1]

    def take(self, name: str) -> Any:
        with self.replied:
            assert self.replied.wait_for(lambda: name in self.replies, TIMEOUT), f"no reply to {name}"
            return self.replies.pop(name)

    def start_next(self) -> Any:
        self.jobs.publish_start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(
                thing_name=self.thing, client_token=uuid.uuid4().hex, status_details={"step": "download"}
            ),
            QOS,
        ).result(TIMEOUT)
        return self.take("start")

    def update(self, job_id: str, status: str, expected_version: int) -> Any:
        name = f"update-{job_id}"
        request = iotjobs.UpdateJobExecutionSubscriptionRequest(thing_name=self.thing, job_id=job_id)
        for subscribe in (
            self.jobs.subscribe_to_update_job_execution_accepted,
            self.jobs.subscribe_to_update_job_execution_rejected,
        ):
            future, _ = subscribe(request, QOS, self._reply(name))
            future.result(TIMEOUT)
        self.jobs.publish_update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name=self.thing,
                job_id=job_id,
                status=status,
                expected_version=expected_version,
                include_job_execution_state=True,
                client_token=uuid.uuid4().hex,
            ),
            QOS,
        ).result(TIMEOUT)
        return self.take(name)


def test_job_on_a_group_runs_to_completion_on_sdk_devices(stack: Stack) -> None:
    iot = iot_client(stack)
    group = unique("fleet")
    iot.create_thing_group(thingGroupName=group)
    things = [unique("sdk") for _ in range(2)]
    for thing in things:
        iot.create_thing(thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)

    devices = [SdkDevice(stack, thing).__enter__() for thing in things]
    try:
        job = unique("rollout")
        iot.create_job(jobId=job, targets=[group_arn(group)], document='{"firmware": "2.0"}')
        for device in devices:
            announced = device.wait_next(1)
            assert announced.execution.job_id == job
            assert announced.execution.job_document == {"firmware": "2.0"}
            assert announced.execution.status == "QUEUED"

            started = device.start_next()
            assert isinstance(started, iotjobs.StartNextJobExecutionResponse), started
            assert started.execution.status == "IN_PROGRESS"
            assert started.execution.status_details == {"step": "download"}

            progress = device.update(job, iotjobs.JobStatus.IN_PROGRESS, started.execution.version_number)
            assert isinstance(progress, iotjobs.UpdateJobExecutionResponse), progress
            assert progress.execution_state.version_number == 3
            done = device.update(job, iotjobs.JobStatus.SUCCEEDED, 3)
            assert done.execution_state.status == "SUCCEEDED"

            stale = device.update(job, iotjobs.JobStatus.SUCCEEDED, 3)
            assert isinstance(stale, iotjobs.RejectedError) and stale.code == "VersionMismatch"
            emptied = device.wait_next(2)
            assert emptied.execution is None

        def completed() -> dict[str, Any] | None:
            described = iot.describe_job(jobId=job)["job"]
            return described if described["status"] == "COMPLETED" else None

        final = until_sync(completed, what="the job to complete")
        details = final["jobProcessDetails"]
        assert details["numberOfSucceededThings"] == 2
        assert sum(v for k, v in details.items() if k != "numberOfSucceededThings" and isinstance(v, int)) == 0
        assert final["completedAt"] >= final["createdAt"]
    finally:
        for device in devices:
            device.__exit__(None, None, None)
