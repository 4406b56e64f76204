"""The `iot-jobs-data` HTTPS API through boto3, against the real stack."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.support.clients import data_client, iot_client, thing_arn, unique
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


async def _thing_with_jobs(stack: Stack, *documents: str, timeout: int | None = None) -> tuple[str, list[str]]:
    iot = iot_client(stack)
    thing = unique("http")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    jobs = []
    for document in documents:
        job = unique("hjob")
        extra: dict[str, Any] = {"timeoutConfig": {"inProgressTimeoutInMinutes": timeout}} if timeout else {}
        if "s3-presigned-url" in document:
            extra["presignedUrlConfig"] = {"roleArn": "arn:aws:iam::123456789012:role/presign"}
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document=document, **extra)
        jobs.append(job)
    data = data_client(stack)

    async def pending() -> bool:
        got = await asyncio.to_thread(data.get_pending_job_executions, thingName=thing)
        return len(got["queuedJobs"]) == len(documents)

    await until(pending, what="pending executions")
    return thing, jobs


def _code(call: Any, **kwargs: Any) -> tuple[str, int, dict[str, Any]]:
    try:
        call(**kwargs)
    except ClientError as err:
        return err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"], err.response
    raise AssertionError("the call succeeded")


async def test_a_device_runs_a_job_over_http(stack: Stack) -> None:
    thing, (first, second) = await _thing_with_jobs(stack, '{"step": 1}', '{"step": 2}', timeout=30)
    data = data_client(stack)
    pending = await asyncio.to_thread(data.get_pending_job_executions, thingName=thing)
    assert pending["inProgressJobs"] == []
    assert [j["jobId"] for j in pending["queuedJobs"]] == [first, second]
    summary = pending["queuedJobs"][0]
    assert isinstance(summary["queuedAt"], int) and summary["versionNumber"] == 1 and summary["executionNumber"] == 1

    started = await asyncio.to_thread(
        data.start_next_pending_job_execution,
        thingName=thing,
        statusDetails={"phase": "download"},
        stepTimeoutInMinutes=5,
    )
    execution = started["execution"]
    assert (execution["jobId"], execution["thingName"], execution["status"]) == (first, thing, "IN_PROGRESS")
    assert execution["jobDocument"] == '{"step": 1}' and execution["statusDetails"] == {"phase": "download"}
    assert isinstance(execution["startedAt"], int) and execution["versionNumber"] == 2
    assert 0 < execution["approximateSecondsBeforeTimedOut"] <= 300

    described = await asyncio.to_thread(
        data.describe_job_execution, thingName=thing, jobId="$next", includeJobDocument=False
    )
    assert described["execution"]["jobId"] == first and "jobDocument" not in described["execution"]
    described = await asyncio.to_thread(data.describe_job_execution, thingName=thing, jobId=second)
    assert described["execution"]["jobDocument"] == '{"step": 2}'

    updated = await asyncio.to_thread(
        data.update_job_execution,
        thingName=thing,
        jobId=first,
        status="SUCCEEDED",
        expectedVersion=2,
        includeJobExecutionState=True,
        includeJobDocument=True,
    )
    assert updated["executionState"] == {
        "status": "SUCCEEDED",
        "statusDetails": {"phase": "download"},
        "versionNumber": 3,
    }
    assert updated["jobDocument"] == '{"step": 1}'
    quiet = await asyncio.to_thread(data.update_job_execution, thingName=thing, jobId=second, status="IN_PROGRESS")
    assert set(quiet) == {"ResponseMetadata"}


async def test_device_http_errors_carry_their_codes_and_statuses(stack: Stack) -> None:
    thing, (job,) = await _thing_with_jobs(stack, "{}")
    data = data_client(stack)
    code, status, response = _code(data.update_job_execution, thingName=thing, jobId=unique("none"), status="QUEUED")
    assert (code, status) == ("InvalidStateTransitionException", 409)  # AWS refuses it before any look-up
    assert response["Error"]["Message"] == "The status of job execution cannot be changed to be QUEUED"
    code, status, _ = _code(data.update_job_execution, thingName=thing, jobId=unique("none"), status="IN_PROGRESS")
    assert (code, status) == ("ResourceNotFoundException", 404)
    code, status, response = _code(
        data.update_job_execution, thingName=thing, jobId=job, status="IN_PROGRESS", expectedVersion=9
    )
    assert (code, status) == ("InvalidStateTransitionException", 409)
    assert "9" in response["Error"]["Message"] and "1" in response["Error"]["Message"]
    await asyncio.to_thread(data.update_job_execution, thingName=thing, jobId=job, status="FAILED")
    code, status, _ = _code(data.update_job_execution, thingName=thing, jobId=job, status="IN_PROGRESS")
    assert (code, status) == ("InvalidStateTransitionException", 409)
    code, status, _ = _code(data.describe_job_execution, thingName=thing, jobId=job)
    assert (code, status) == ("TerminalStateException", 410)
    code, status, _ = _code(data.get_pending_job_executions, thingName=unique("unknown"))
    assert (code, status) == ("ResourceNotFoundException", 404)
    code, status, response = _code(
        data.update_job_execution, thingName=thing, jobId=job, status="IN_PROGRESS", statusDetails={"k": "v" * 1025}
    )
    assert (code, status) == ("InvalidRequestException", 400) and "1024" in response["Error"]["Message"]
    nothing = await asyncio.to_thread(data.start_next_pending_job_execution, thingName=thing)
    assert set(nothing) == {"ResponseMetadata"}


async def test_without_an_s3_signer_presigned_url_placeholders_reach_devices_unchanged(stack: Stack) -> None:
    """This stack has no IOTJOBS_S3_* settings: the device gets the document as it was stored (a warning is
    logged); tests/e2e/test_presigned_urls.py covers a stack that signs."""
    document = '{"url": "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/bucket/key.bin}"}'
    thing, (job,) = await _thing_with_jobs(stack, document)
    data = data_client(stack)
    described = await asyncio.to_thread(data.describe_job_execution, thingName=thing, jobId=job)
    assert described["execution"]["jobDocument"] == document
    started = await asyncio.to_thread(data.start_next_pending_job_execution, thingName=thing)
    assert started["execution"]["jobDocument"] == document


async def test_a_document_with_presigned_url_placeholders_needs_a_role(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("norole")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    document = '{"url": "${aws:iot:s3-presigned-url-v2:https://s3.amazonaws.com/bucket/key.bin}"}'
    with pytest.raises(iot.exceptions.InvalidRequestException, match=r"presignedUrlConfig\.roleArn is required"):
        await asyncio.to_thread(iot.create_job, jobId=unique("norole"), targets=[thing_arn(thing)], document=document)


async def test_an_execution_number_beyond_a_64_bit_integer_is_an_invalid_request_on_both_planes(stack: Stack) -> None:
    thing, (job,) = await _thing_with_jobs(stack, "{}")
    too_big = 2**63
    data, iot = data_client(stack), iot_client(stack)
    for client in (data, iot):
        with pytest.raises(client.exceptions.InvalidRequestException, match="executionNumber must be a 64-bit"):
            await asyncio.to_thread(client.describe_job_execution, jobId=job, thingName=thing, executionNumber=too_big)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="executionNumber must be a 64-bit"):
        await asyncio.to_thread(
            iot.delete_job_execution, jobId=job, thingName=thing, executionNumber=too_big, force=True
        )
