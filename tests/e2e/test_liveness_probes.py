"""The two probes of control and dataplane, seen through HTTP while Kafka stalls, against the module's own
servers: `/health` (readiness) fails as soon as a partition stops being served, `/live` (liveness) only once
that has lasted `IOTJOBS_LIVENESS_STALL_SECONDS`, and both answer 200 again by themselves once Kafka is back."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.support.clients import iot_client, thing_arn, unique
from tests.support.faults import probe, serving_again, strict_client, timed
from tests.support.servers import LocalServers
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

STALL_SECONDS = 8.0
REQUEST_TIMEOUT = 3.0


async def test_liveness_fails_only_after_a_partition_stays_unserved_past_the_threshold(private: LocalServers) -> None:
    stack = Stack(private.servers, liveness_stall_seconds=STALL_SECONDS, request_timeout_seconds=REQUEST_TIMEOUT)
    print(f"stack {stack.settings.topic_prefix}: logs in {stack.logs}")  # shown when the test fails
    await stack.start()
    try:
        iot = iot_client(stack)
        thing, job = unique("live"), unique("live-job")
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")

        async def queued() -> bool:
            details = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
            return details.get("numberOfQueuedThings") == 1

        await until(queued, 30, f"the execution of {job} to be queued")
        planes = {"control": stack.control_url, "dataplane": stack.dataplane_url}
        for name, url in planes.items():
            assert await probe(url, "/live") == (200, {"live": True, "stalled": {}}), name

        strict_iot = strict_client("iot", stack.control_url, read_timeout=4 * REQUEST_TIMEOUT)
        data = strict_client("iot-jobs-data", stack.dataplane_url, read_timeout=4 * REQUEST_TIMEOUT)
        with private.paused("kafka"):
            paused_at = time.monotonic()
            # A write on each plane: its append is never acknowledged, so its owner drops the partition and
            # keeps trying to take it again while Kafka does not answer.
            writes = await asyncio.gather(
                timed(strict_iot.update_job, jobId=job, description="during the stall"),
                timed(data.update_job_execution, thingName=thing, jobId=job, status="IN_PROGRESS"),
            )
            assert [outcome for _s, outcome, _status in writes] == ["ServiceUnavailableException"] * 2, writes

            async def unready() -> bool:
                answers = [await probe(url) for url in planes.values()]
                return all(status == 503 for status, _body in answers)

            await until(unready, 2 * REQUEST_TIMEOUT, "/health of both planes to fail")
            for name, url in planes.items():
                status, body = await probe(url, "/live")
                assert (status, body["live"]) == (200, True), (name, "would restart before the threshold", body)

            async def wedged(url: str) -> tuple[int, dict[str, Any]] | None:
                answer = await probe(url, "/live")
                return answer if answer[0] == 503 else None

            for name, url in planes.items():
                status, body = await until(lambda url=url: wedged(url), STALL_SECONDS + 10, f"{name}'s /live to fail")
                # No partition stopped being served before Kafka did.
                assert time.monotonic() - paused_at >= STALL_SECONDS, (name, body)
                assert body["live"] is False and body["stalled"]["unserved"], (name, body)
                assert all(age >= STALL_SECONDS for age in body["stalled"]["unserved"].values()), (name, body)
                assert (await probe(url))[0] == 503, name

        await serving_again(stack, timeout=60)
        for name, url in planes.items():

            async def alive(url: str = url) -> bool:
                return (await probe(url, "/live"))[0] == 200

            await until(alive, 10, f"{name}'s /live to pass again")
        _seconds, outcome, _status = await timed(strict_iot.update_job, jobId=job, description="after the stall")
        assert outcome == "ok"
    finally:
        await stack.stop()
