"""`/metrics` on control, dataplane and projector, scraped with a plain HTTP client and read with
prometheus_client's parser: requests by operation and outcome (HTTP and MQTT) with their latencies, events
appended, partitions owned, restores, the MQTT session, projector lag, and one job's rollout progress."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from typing import Any

import aiohttp
import pytest
from prometheus_client.samples import Sample

from iotjobs.runtime import pg
from tests.support import dashboard
from tests.support.clients import MqttDevice, data_client, iot_client, thing_arn, unique
from tests.support.dashboard import expressions, metric_names
from tests.support.events import read_events
from tests.support.faults import probe
from tests.support.metrics import Scrape, scrape, value
from tests.support.servers import Servers
from tests.support.stack import Stack, projected_to_end, running
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


def present(samples: Iterable[Sample], name: str, **labels: str) -> bool:
    return any(s.name == name and labels.items() <= s.labels.items() for s in samples)


def moved(before: Scrape, after: Scrape, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_requests_events_lag_and_rollout_progress_show_on_metrics(stack: Stack) -> None:
    iot, data = iot_client(stack), data_client(stack)
    mqtt_thing, http_thing, job = unique("metrics-mqtt"), unique("metrics-http"), unique("metrics-job")
    control_before = await scrape(stack.control_url)
    dataplane_before = await scrape(stack.dataplane_url)
    projector_before = await scrape(stack.projector_url)

    for thing in (mqtt_thing, http_thing):
        await asyncio.to_thread(iot.create_thing, thingName=thing)
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await asyncio.to_thread(iot.describe_job, jobId=unique("missing"))
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(mqtt_thing), thing_arn(http_thing)],
        document='{"v": 2}',
        jobExecutionsRolloutConfig={"maximumPerMinute": 120},
    )

    async with MqttDevice(stack, mqtt_thing) as device:
        gets = 0

        async def queued() -> bool:
            nonlocal gets
            gets += 1
            _, body = await device.request("get")
            return [j["jobId"] for j in body["queuedJobs"]] == [job]

        await until(queued, what="the job queued for the MQTT device")
        assert (await device.request("start-next"))[0] == "accepted"
        outcome, refused = await device.request(f"{job}/update", {"status": "SUCCEEDED", "expectedVersion": 99})
        assert outcome == "rejected"
        assert (await device.request(f"{job}/update", {"status": "SUCCEEDED"}))[0] == "accepted"

    started = await asyncio.to_thread(data.start_next_pending_job_execution, thingName=http_thing)
    assert started["execution"]["jobId"] == job
    await asyncio.to_thread(data.update_job_execution, thingName=http_thing, jobId=job, status="SUCCEEDED")

    control = await scrape(stack.control_url)
    dataplane = await scrape(stack.dataplane_url)

    # HTTP: by plane, operation, status and error code, each timed.
    requests, durations = "iotjobs_http_requests_total", "iotjobs_http_request_duration_seconds_count"
    ok = {"status": "200", "error": ""}
    assert moved(control_before, control, requests, plane="control", operation="CreateThing", **ok) == 2
    assert moved(control_before, control, requests, plane="control", operation="CreateJob", **ok) == 1
    not_found = {"status": "404", "error": "ResourceNotFoundException"}
    assert moved(control_before, control, requests, plane="control", operation="DescribeJob", **not_found) == 1
    assert moved(control_before, control, durations, plane="control", operation="CreateThing") == 2
    assert moved(control_before, control, durations, plane="control", operation="DescribeJob") == 1
    for operation in ("StartNextPendingJobExecution", "UpdateJobExecution"):
        assert moved(dataplane_before, dataplane, requests, plane="dataplane", operation=operation, **ok) == 1
        assert moved(dataplane_before, dataplane, durations, plane="dataplane", operation=operation) == 1
    assert value(control, "iotjobs_http_request_duration_seconds_sum", operation="CreateJob") > 0

    # MQTT: by operation and outcome (the rejected reply's code), each timed.
    mqtt_requests, mqtt_durations = "iotjobs_mqtt_requests_total", "iotjobs_mqtt_request_duration_seconds_count"
    assert moved(dataplane_before, dataplane, mqtt_requests, operation="GetPendingJobExecutions") == gets
    assert (
        moved(dataplane_before, dataplane, mqtt_requests, operation="StartNextPendingJobExecution", outcome="accepted")
        == 1
    )
    update = {"operation": "UpdateJobExecution"}
    assert moved(dataplane_before, dataplane, mqtt_requests, outcome="accepted", **update) == 1
    assert moved(dataplane_before, dataplane, mqtt_requests, outcome=refused["code"], **update) == 1
    assert moved(dataplane_before, dataplane, mqtt_durations, **update) == 2
    assert moved(dataplane_before, dataplane, mqtt_durations, operation="GetPendingJobExecutions") == gets
    assert value(dataplane, "iotjobs_mqtt_session_up") == 1
    connected = await until(
        lambda: _gauge(stack.dataplane_url, "iotjobs_mqtt_broker_connected_clients"),
        what="the broker's count of connected clients",
    )
    assert connected >= 1  # the dataplane itself, at least

    # Events appended, by type, on both deciding services: together, exactly what the log holds.
    async def appended_as_logged() -> Counter[str] | None:
        logged = Counter(type(event).__name__ for event, _envelope in await read_events(stack.settings))
        appended = Counter[str]()
        for url in (stack.control_url, stack.dataplane_url):
            for sample in await scrape(url):
                if sample.name == "iotjobs_events_appended_total":
                    appended[sample.labels["type"]] += int(sample.value)
        return logged if appended == logged else None

    logged = await until(appended_as_logged, what="the events appended to equal the events in the log")
    assert logged["JobCreated"] >= 1

    # Partitions and restores: every partition of the stack's topics is served and was restored once at least.
    for scraped, role in ((control, "control"), (dataplane, "dataplane")):
        assert value(scraped, "iotjobs_partitions_owned", role=role) == stack.settings.partitions
        assert value(scraped, "iotjobs_restore_duration_seconds_count", role=role) >= stack.settings.partitions

    # The projector: lag per partition back to 0 once it has applied the log, every event projected, and the
    # job's rollout progress from the read models.
    await projected_to_end(stack)

    async def caught_up() -> Scrape | None:
        scraped = await scrape(stack.projector_url)
        lags = [s for s in scraped if s.name == "iotjobs_projector_lag_offsets"]
        partitions = {s.labels["partition"] for s in lags}
        if partitions == {str(p) for p in range(stack.settings.partitions)} and all(s.value == 0 for s in lags):
            return scraped
        return None

    projector = await until(caught_up, what="projector lag of 0 on every partition")
    assert value(projector, "iotjobs_projector_lag_seconds") == 0
    assert value(projector, "iotjobs_partitions_owned", role="projector") == stack.settings.partitions
    assert value(projector, "iotjobs_projector_events_projected_total") == sum(logged.values())
    assert moved(projector_before, projector, "iotjobs_projector_batch_duration_seconds_count") >= 1

    async def rollout_done() -> Scrape | None:
        scraped = await scrape(stack.projector_url)
        return scraped if value(scraped, "iotjobs_job_status", job_id=job, status="COMPLETED") == 1 else None

    projector = await until(rollout_done, what="the job's rollout gauges to show it completed")
    assert value(projector, "iotjobs_job_executions", job_id=job, status="SUCCEEDED") == 2
    assert value(projector, "iotjobs_job_executions", job_id=job, status="QUEUED") == 0
    assert value(projector, "iotjobs_job_things_notified", job_id=job) == 2
    assert value(projector, "iotjobs_job_rollout_maximum_per_minute", job_id=job) == 120

    # The Grafana dashboard reads nothing the services do not export.
    exported = {sample.name for scraped in (control, dataplane, projector) for sample in scraped}
    exported |= {sample.name for sample in await scrape(stack.dataplane_url)}  # the broker's count, now set
    used = set().union(*(metric_names(e) for e in expressions(dashboard.load())))
    assert used - exported == set()

    async with aiohttp.ClientSession() as http, http.get(f"{stack.projector_url}/health") as resp:
        body = await resp.json()
        assert resp.status == 200, body
        assert body["checks"] == {"projecting": True, "lag_measured": True, "not_stalled": True}


async def test_a_deleted_job_leaves_the_rollout_gauges(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, job = unique("metrics-gone"), unique("metrics-gone-job")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")

    async def shown() -> bool:
        return present(await scrape(stack.projector_url), "iotjobs_job_things_notified", job_id=job)

    await until(shown, what="the new job's rollout gauges")
    await asyncio.to_thread(iot.delete_job, jobId=job, force=True)

    async def gone() -> bool:
        scraped = await scrape(stack.projector_url)
        return not any(s.labels.get("job_id") == job for s in scraped)

    await until(gone, what="the deleted job's rollout gauges to go")


async def _gauge(url: str, name: str) -> float | None:
    scraped = await scrape(url)
    return value(scraped, name) if present(scraped, name) else None


async def test_a_stalled_projector_is_unhealthy_and_its_lag_grows(servers: Servers) -> None:
    """Hold the projector's checkpoint table locked: batches wait, the log moves on without it. Past the stall
    time its /health says 503 and names the partition; let go, and it catches up and is healthy again."""
    async with running(servers, projector_stall_seconds=2.0, consistency="eventual") as own:
        iot = iot_client(own)
        blocker = await pg.connect(own.settings.pg_dsn)
        try:
            transaction = blocker.transaction()
            await transaction.start()
            await blocker.execute("LOCK TABLE projector_offsets IN ACCESS EXCLUSIVE MODE")
            # Decided and logged at once (eventual consistency), but not projected while the lock is held.
            await asyncio.to_thread(iot.create_thing, thingName=unique("stalled"))

            async def stalled() -> dict[str, Any] | None:
                status, body = await probe(own.projector_url)
                return body if status == 503 and body["stalled_partitions"] else None

            body = await until(stalled, timeout=30, what="the projector's health to report the stall")
            assert body["checks"]["not_stalled"] is False and body["checks"]["projecting"] is True
            partition = str(body["stalled_partitions"][0])

            async def lagging() -> Scrape | None:  # the gauges are sampled every second
                scraped = await scrape(own.projector_url)
                return scraped if value(scraped, "iotjobs_projector_lag_seconds", partition=partition) >= 2 else None

            scraped = await until(lagging, what="the stalled partition's lag in seconds to grow")
            assert value(scraped, "iotjobs_projector_lag_offsets", partition=partition) >= 1
            await transaction.rollback()
        finally:
            await blocker.close()

        async def healthy() -> bool:
            status, _ = await probe(own.projector_url)
            return status == 200

        await until(healthy, timeout=30, what="the projector to catch up and be healthy again")

        async def caught_up() -> bool:
            scraped = await scrape(own.projector_url)
            lags = ("iotjobs_projector_lag_offsets", "iotjobs_projector_lag_seconds")
            return all(value(scraped, name) == 0 for name in lags)

        await until(caught_up, what="the lag gauges back to 0")
