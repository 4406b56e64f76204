"""A fleet of a few thousand things in one group: one CreateJob reaches every device, no Kafka record
grows with the fleet (a job's commands to its things span as many records as they need), and the owners hold
no more decisions awaiting confirmation than IOTJOBS_MAX_UNCONFIRMED allows.

The 100,000-thing runs are `bench/fleet.py`; this is the same path, scaled to the test suite."""

from __future__ import annotations

import asyncio
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
from aiokafka import ConsumerRecord

from iotjobs.runtime.topics import RECORD_MAX_BYTES, Topics
from tests.support.clients import TopicWatch, group_arn, iot_client, unique
from tests.support.events import largest_records, scan_topics
from tests.support.metrics import scrape, value
from tests.support.servers import Servers
from tests.support.stack import Stack, running
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

FLEET = 4000
"""Enough things that one record holding a command for each (about 350 bytes apiece) would pass Kafka's
1 MB record limit."""
CLIENTS = 16
PART_BYTES = 16 * 1024
UNCONFIRMED = 25
"""Far below what the release to FLEET things would otherwise hold in flight on the dataplane."""


def _register(stack: Stack, group: str, things: list[str]) -> None:
    clients = [iot_client(stack) for _ in range(CLIENTS)]
    clients[0].create_thing_group(thingGroupName=group)

    def one(index: int, thing: str) -> None:
        iot = clients[index % CLIENTS]
        iot.create_thing(thingName=thing)
        iot.add_thing_to_thing_group(thingGroupName=group, thingName=thing)

    with ThreadPoolExecutor(CLIENTS) as pool:
        for future in [pool.submit(one, i, t) for i, t in enumerate(things)]:
            future.result()


async def test_one_create_job_reaches_a_fleet_of_thousands_and_no_record_grows_with_it(servers: Servers) -> None:
    # Its own log, so the largest record is this test's; snapshot parts small enough that the job's image
    # (an execution per thing) is stored in parts, as a 100,000-thing job's is with the default size.
    async with running(servers, snapshot_part_bytes=PART_BYTES, max_unconfirmed=UNCONFIRMED) as stack:
        job = await _fan_out(stack)
        await _restart_from_parted_snapshots(stack, job)


async def _registered_group(stack: Stack, prefix: str, size: int) -> tuple[str, list[str]]:
    """A new group of `size` new things, registered through boto3."""
    group = unique(prefix)
    things = [f"{group}-{i:05d}" for i in range(size)]
    await asyncio.to_thread(_register, stack, group, things)
    return group, things


async def _until_all_queued(stack: Stack, job: str, size: int) -> None:
    iot = iot_client(stack)

    async def all_queued() -> bool:
        described = await asyncio.to_thread(iot.describe_job, jobId=job)
        return bool(described["job"]["jobProcessDetails"]["numberOfQueuedThings"] == size)

    await until(all_queued, 60, f"DescribeJob to count {size} QUEUED executions")


def _notified(watch: TopicWatch, job: str) -> set[str]:
    """The things whose notify-next has named `job`."""
    return {t.split("/")[2] for t, body, _at in watch.seen if (body.get("execution") or {}).get("jobId") == job}


async def _fan_out(stack: Stack) -> str:
    group, things = await _registered_group(stack, "fleet", FLEET)
    job = unique("fleet-job")

    async with TopicWatch(stack, "$aws/things/+/jobs/notify-next") as watch:

        def notified() -> set[str]:
            return _notified(watch, job)

        iot = iot_client(stack)
        began = time.monotonic()
        in_flight: list[float] = []
        sampling = asyncio.create_task(_sample_unconfirmed(stack, in_flight))
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[group_arn(group)], document='{"fleet": true}')

        async def every_device_notified() -> bool:
            return len(notified()) == FLEET

        try:
            await until(every_device_notified, 120, f"all {FLEET} devices to get notify-next for {job}")
        finally:
            sampling.cancel()
        print(f"{FLEET} devices notified {time.monotonic() - began:.1f}s after CreateJob was sent")
        seen = notified()
    assert seen == set(things)
    bound = UNCONFIRMED * stack.settings.partitions
    assert max(in_flight, default=0) > 0, "no decision of the release was seen awaiting confirmation"
    assert max(in_flight) <= bound, f"{max(in_flight)} decisions awaited confirmation at once, more than {bound}"

    await _until_all_queued(stack, job, FLEET)
    topics = Topics.of(stack.settings)
    watched = [topics.events, topics.thing_commands, topics.control_commands, topics.thing_state, topics.control_state]
    sizes = await largest_records(stack.settings, watched)
    largest = max(sizes.values())
    assert largest <= RECORD_MAX_BYTES // 2, f"a record of {largest} bytes: records grow with the fleet"
    return job


async def _sample_unconfirmed(stack: Stack, samples: list[float]) -> None:
    """The dataplane's decisions awaiting confirmation, read from its /metrics until cancelled."""
    while True:
        scraped = await scrape(stack.dataplane_url)
        samples.append(value(scraped, "iotjobs_decisions_unconfirmed", role="dataplane"))
        await asyncio.sleep(0.01)  # the sampling interval


async def _restart_from_parted_snapshots(stack: Stack, job: str) -> None:
    """Control restores the job from its parted image and a checkpoint, then cancels it on every thing."""
    topics = Topics.of(stack.settings)
    job_key = f"job/{job}".encode()

    async def job_image_in_parts() -> bool:
        heads: list[dict[str, object]] = []

        def visit(_topic: str, record: ConsumerRecord[bytes, bytes]) -> None:
            if record.key == job_key and record.value is not None:
                heads.append(orjson.loads(record.value))

        await scan_topics(stack.settings, [topics.control_state], visit, 30)
        return bool(heads) and "parts" in heads[-1]

    await until(job_image_in_parts, 60, f"a snapshot of job {job} in parts")
    log = stack.logs / "control.log"
    restarted_at = log.stat().st_size
    stack.restart("control")
    await stack.wait_ready(stack.control_url, timeout=60)
    iot = iot_client(stack)
    await asyncio.to_thread(iot.cancel_job, jobId=job)

    async def all_canceled() -> bool:
        described = await asyncio.to_thread(iot.describe_job, jobId=job)
        return bool(described["job"]["jobProcessDetails"]["numberOfCanceledThings"] == FLEET)

    await until(all_canceled, 120, f"DescribeJob to count {FLEET} CANCELED executions after the restart")
    with open(log, "rb") as lines:
        lines.seek(restarted_at)
        restored = [orjson.loads(line) for line in lines if line.startswith(b"{")]
    assert not [r for r in restored if "from the start" in r.get("event", "")], "a snapshot was not used"
    assert any(r.get("event") == "partition taken" and r.get("replayed_from", 0) > 0 for r in restored)


HANDED_OVER = 3000
"""A release long enough, with one decision in flight per partition, for SIGTERM to land in the middle of it."""
GRACEFUL_EXIT_SECONDS = 10.0
"""Well inside the 30 s a container runtime gives a stopping process before it kills it."""


async def test_a_dataplane_stopped_in_the_middle_of_a_release_hands_it_over_and_loses_nothing(
    servers: Servers,
) -> None:
    # One decision awaiting confirmation per partition: the release crawls, and whatever SIGTERM finds is
    # either decided and awaiting confirmation, or queued, on every partition.
    async with running(servers, max_unconfirmed=1) as stack:
        group, _things = await _registered_group(stack, "handover", HANDED_OVER)
        job = unique("handover-job")
        async with TopicWatch(stack, "$aws/things/+/jobs/notify-next") as watch:

            def notified() -> set[str]:
                return _notified(watch, job)

            iot = iot_client(stack)
            await asyncio.to_thread(iot.create_job, jobId=job, targets=[group_arn(group)], document='{"a": 1}')

            async def release_under_way() -> bool:
                return bool(notified())

            await until(release_under_way, 60, f"the first notify-next of {job}")
            dataplane = stack.processes["dataplane"]
            dataplane.terminate()
            at_stop = len(notified())
            stopping = time.monotonic()
            try:
                await asyncio.to_thread(dataplane.wait, GRACEFUL_EXIT_SECONDS)
            except subprocess.TimeoutExpired:
                late = f"the dataplane still runs {GRACEFUL_EXIT_SECONDS:g}s after SIGTERM"
                raise AssertionError(f"{late}:\n{stack.log_tail('dataplane')}") from None
            print(f"dataplane exited {time.monotonic() - stopping:.1f}s after SIGTERM, {at_stop} devices notified")
            assert dataplane.returncode == 0, stack.log_tail("dataplane")
            assert at_stop < HANDED_OVER, "the release ended before SIGTERM: nothing was handed over"

            stack.spawn("dataplane")
            await stack.wait_ready()

            async def every_device_notified() -> bool:
                return len(notified()) == HANDED_OVER

            await until(every_device_notified, 120, f"all {HANDED_OVER} devices to get notify-next after the restart")

        await _until_all_queued(stack, job, HANDED_OVER)
