"""A fleet of a few thousand things in one group: one CreateJob reaches every device, and no Kafka record
grows with the fleet (a job's commands to its things span as many records as they need).

The 100,000-thing runs are `bench/fleet.py`; this is the same path, scaled to the test suite."""

from __future__ import annotations

import asyncio
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from gmqtt import Client

from iotjobs.runtime.topics import RECORD_MAX_BYTES, Topics
from tests.support.clients import group_arn, iot_client, unique
from tests.support.events import largest_records
from tests.support.servers import Servers
from tests.support.stack import Stack, running
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

FLEET = 4000
"""Enough things that one record holding a command for each (about 350 bytes apiece) would pass Kafka's
1 MB record limit."""
CLIENTS = 16


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
    async with running(servers) as stack:  # its own log: the largest record is this test's
        await _fan_out(stack)


async def _fan_out(stack: Stack) -> None:
    group, job = unique("fleet"), unique("fleet-job")
    things = [f"{group}-{i:05d}" for i in range(FLEET)]
    await asyncio.to_thread(_register, stack, group, things)

    seen: set[str] = set()

    def on_message(_client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        if (orjson.loads(payload).get("execution") or {}).get("jobId") == job:
            seen.add(topic.split("/")[2])
        return 0

    subscriber = Client(f"fleet-watch-{uuid.uuid4().hex[:8]}")
    subscriber.on_message = on_message
    subscribed = asyncio.Event()
    subscriber.on_subscribe = lambda *_a: subscribed.set()
    await subscriber.connect(stack.settings.mqtt_host, stack.settings.mqtt_port)
    try:
        subscriber.subscribe("$aws/things/+/jobs/notify-next", qos=1)
        await asyncio.wait_for(subscribed.wait(), 10)
        iot = iot_client(stack)
        began = time.monotonic()
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[group_arn(group)], document='{"fleet": true}')

        async def every_device_notified() -> bool:
            return len(seen) == FLEET

        await until(every_device_notified, 120, f"all {FLEET} devices to get notify-next for {job}")
        print(f"{FLEET} devices notified {time.monotonic() - began:.1f}s after CreateJob was sent")
    finally:
        await subscriber.disconnect()
    assert seen == set(things)

    async def all_queued() -> bool:
        described = await asyncio.to_thread(iot.describe_job, jobId=job)
        return bool(described["job"]["jobProcessDetails"]["numberOfQueuedThings"] == FLEET)

    await until(all_queued, 60, f"DescribeJob to count {FLEET} QUEUED executions")
    topics = Topics.of(stack.settings)
    sizes = await largest_records(stack.settings, [topics.events, topics.thing_commands, topics.control_commands])
    largest = max(sizes.values())
    assert largest <= RECORD_MAX_BYTES // 2, f"a record of {largest} bytes: records grow with the fleet"
