"""Two dataplane instances serve one fleet through Mosquitto's loopback bridge: every request is
handled exactly once, by whichever instance, with the owner of the thing deciding."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from gmqtt import Client

from iotjobs.domain.thing import ExecutionUpdated
from tests.support.clients import group_arn, iot_client, unique
from tests.support.events import read_events
from tests.support.servers import Servers
from tests.support.stack import Stack, stack_with_two_dataplanes
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

DEVICES = 200


@pytest.fixture
async def two_dataplanes(servers: Servers) -> AsyncIterator[tuple[Stack, str]]:
    async with stack_with_two_dataplanes(servers) as running:
        yield running


class Fleet:
    """Many devices on one MQTT connection, each request matched to its replies by clientToken."""

    def __init__(self, stack: Stack) -> None:
        self.client = Client(f"fleet-{uuid.uuid4().hex[:6]}")
        self.client.on_message = self._on_message
        self.host, self.port = stack.settings.mqtt_host, stack.settings.mqtt_port
        self.replies: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        self.arrived = asyncio.Event()

    async def start(self) -> None:
        await self.client.connect(self.host, self.port)
        for suffix in ("start-next/+", "+/update/+"):
            self.client.subscribe(f"$aws/things/+/jobs/{suffix}", qos=1)

    def _on_message(self, _client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        body = orjson.loads(payload)
        self.replies[body.get("clientToken", "")].append((topic.rsplit("/", 1)[1], body))
        self.arrived.set()
        return 0

    async def request(self, thing: str, suffix: str, body: dict[str, Any]) -> dict[str, Any]:
        token = uuid.uuid4().hex
        self.client.publish(f"$aws/things/{thing}/jobs/{suffix}", orjson.dumps({**body, "clientToken": token}), qos=1)

        async def answered() -> list[tuple[str, dict[str, Any]]]:
            return self.replies.get(token, [])

        (outcome, reply), *more = await until(answered, timeout=30, what=f"a reply to {suffix} of {thing}")
        assert not more, f"{thing} {suffix} answered twice"
        assert outcome == "accepted", reply
        return reply


async def test_two_instances_handle_every_request_exactly_once(two_dataplanes: tuple[Stack, str]) -> None:
    stack, _second = two_dataplanes
    iot = iot_client(stack)
    group = unique("fleet")
    await asyncio.to_thread(iot.create_thing_group, thingGroupName=group)
    things = [unique("d") for _ in range(DEVICES)]
    for thing in things:
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        await asyncio.to_thread(iot.add_thing_to_thing_group, thingGroupName=group, thingName=thing)
    job = unique("fleet-job")
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[group_arn(group)], document="{}")

    async def all_queued() -> bool:
        pages = iot.get_paginator("list_job_executions_for_job").paginate(jobId=job)
        count = sum(len(p["executionSummaries"]) for p in await asyncio.to_thread(list, pages))
        return count == DEVICES

    await until(all_queued, timeout=60, what="every execution queued")

    fleet = Fleet(stack)
    await fleet.start()

    async def run(thing: str) -> None:
        started = await fleet.request(thing, "start-next", {})
        version = started["execution"]["versionNumber"]
        for status in ("IN_PROGRESS", "SUCCEEDED"):
            await fleet.request(thing, f"{job}/update", {"status": status, "expectedVersion": version})
            version += 1

    await asyncio.gather(*(run(thing) for thing in things))
    await fleet.client.disconnect()

    async def completed() -> bool:
        return (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["status"] == "COMPLETED"

    await until(completed, timeout=60, what="the job to complete")
    versions: dict[str, Counter[int]] = defaultdict(Counter)
    deciders: set[str] = set()
    for event, envelope in await read_events(stack.settings):
        if isinstance(event, ExecutionUpdated) and event.job_id == job:
            versions[event.thing_name][event.version_number] += 1
            deciders.add(envelope["owner"].rsplit("-", 1)[0])  # an owner token is <instance id>-<random>
    assert all(versions[t] == Counter({2: 1, 3: 1, 4: 1}) for t in things), "an update was applied twice or lost"
    assert deciders == {stack.settings.instance_id, "second"}, "one instance decided no device update"
