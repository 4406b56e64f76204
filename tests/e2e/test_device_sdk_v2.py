"""IotJobsClientV2 of the AWS IoT Device SDK v2 over MQTT 5: request/response futures and event streams."""

from __future__ import annotations

import pytest
from awsiot import V2ServiceException, iotjobs

from tests.support.clients import iot_client, thing_arn, unique
from tests.support.device_sdk import TIMEOUT, V2Device
from tests.support.stack import Stack
from tests.support.waiting import until_sync

pytestmark = pytest.mark.e2e


def test_a_full_job_over_mqtt5_with_the_v2_client(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, job = unique("v2"), unique("v2job")
    iot.create_thing(thingName=thing)
    with V2Device(stack, thing) as device:
        iot.create_job(jobId=job, targets=[thing_arn(thing)], document='{"app": "v3"}')
        announced = until_sync(lambda: device.nexts(), what="notify-next")[0]
        assert announced.execution.job_id == job and announced.execution.job_document == {"app": "v3"}

        pending = device.jobs.get_pending_job_executions(
            iotjobs.GetPendingJobExecutionsRequest(thing_name=thing)
        ).result(TIMEOUT)
        assert [j.job_id for j in pending.queued_jobs] == [job]
        started = device.jobs.start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(thing_name=thing, status_details={"step": "install"})
        ).result(TIMEOUT)
        assert started.execution.status == "IN_PROGRESS" and started.execution.status_details == {"step": "install"}
        described = device.jobs.describe_job_execution(
            iotjobs.DescribeJobExecutionRequest(thing_name=thing, job_id=job, include_job_document=True)
        ).result(TIMEOUT)
        assert described.execution.job_document == {"app": "v3"}

        with pytest.raises(V2ServiceException) as rejected:
            device.jobs.update_job_execution(
                iotjobs.UpdateJobExecutionRequest(
                    thing_name=thing, job_id=job, status=iotjobs.JobStatus.SUCCEEDED, expected_version=1
                )
            ).result(TIMEOUT)
        assert rejected.value.modeled_error.code == "VersionMismatch"
        assert rejected.value.modeled_error.execution_state.version_number == 2

        done = device.jobs.update_job_execution(
            iotjobs.UpdateJobExecutionRequest(
                thing_name=thing,
                job_id=job,
                status=iotjobs.JobStatus.SUCCEEDED,
                expected_version=2,
                include_job_execution_state=True,
            )
        ).result(TIMEOUT)
        assert done.execution_state.status == "SUCCEEDED"
        emptied = until_sync(lambda: len(device.nexts()) >= 2 and device.nexts(), what="notify-next when empty")
        assert emptied[1].execution is None

        with pytest.raises(V2ServiceException) as missing:
            device.jobs.describe_job_execution(
                iotjobs.DescribeJobExecutionRequest(thing_name=thing, job_id=unique("none"))
            ).result(TIMEOUT)
        assert missing.value.modeled_error.code == "ResourceNotFound"
    assert iot.describe_job(jobId=job)["job"]["status"] in ("IN_PROGRESS", "COMPLETED")
