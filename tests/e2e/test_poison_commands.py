"""A command no owner can decide never blocks its partition: it is answered (when someone waits) and parked
on the dead-letter topic, where `iotjobs-admin dead-letters` shows it, and the partition goes on.

The poisons are written straight to the thing command topic, as a buggy or mismatched producer would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from iotjobs.domain.thing import key_for as thing_key
from iotjobs.runtime.topics import Topics, partition_for
from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.servers import Servers
from tests.support.stack import Stack, admin, running
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


@pytest.fixture
async def stack(servers: Servers) -> AsyncIterator[Stack]:
    async with running(servers) as stack:
        yield stack


def _poisons(key: str) -> list[tuple[bytes, str]]:
    """(record value, what the dead letter's reason must say) for three kinds of poison."""
    misrouted = {"key": key, "id": "poison-3", "reply_to": None, "type": "DeleteThingGroup",
                 "data": {"group_name": "g", "expected_version": None}}  # fmt: skip
    unknown_field = {"key": key, "id": "poison-2", "type": "UpdateExecution", "data": {"bogus": 1}}
    return [
        (b"\x00 not a command", "undecodable"),
        (orjson.dumps(unknown_field), "undecodable"),
        (orjson.dumps(misrouted), "decider failed"),
    ]


async def _dead_letters(stack: Stack) -> list[dict[str, Any]]:
    done = await admin(stack, "dead-letters", timeout=60)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


async def test_poison_commands_are_parked_and_the_partition_goes_on(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, job = unique("poisoned"), unique("after-poison")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    key = thing_key(thing)
    topic = Topics.of(stack.settings).thing_commands
    partition = partition_for(key, stack.settings.partitions)
    poisons = _poisons(key)

    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
    await producer.start()
    try:
        offsets = [
            (await producer.send_and_wait(topic, value, key=key.encode(), partition=partition)).offset
            for value, _reason in poisons
        ]
    finally:
        await producer.stop()

    # CreateJob queues the execution through the same command partition, after the poisons.
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document='{"after": "poison"}')
    async with MqttDevice(stack, thing) as device:

        async def queued() -> bool:
            outcome, body = await device.request("get")
            return outcome == "accepted" and [j["jobId"] for j in body["queuedJobs"]] == [job]

        await until(queued, 30, f"{job}, queued after the poisons, to reach {thing}")
        outcome, reply = await device.request(f"{job}/update", {"status": "IN_PROGRESS", "expectedVersion": 1})
        assert outcome == "accepted", reply

    async def parked() -> list[dict[str, Any]] | None:
        letters = [d for d in await _dead_letters(stack) if d.get("key") == key]
        return letters if len(letters) >= len(poisons) else None

    letters = await until(parked, 30, "the poisons on the dead-letter topic")
    by_source = {letter["source"]: letter for letter in letters}
    for offset, (value, reason) in zip(offsets, poisons, strict=True):
        letter = by_source.get(f"{topic}/{partition}/{offset}")
        assert letter is not None, f"the poison at offset {offset} was not parked: {letters}"
        assert reason in letter["reason"] and letter["scope"] == "dataplane", letter
        if reason == "undecodable":  # kept byte for byte
            shown = letter["record"]
            assert shown == orjson.loads(value) if value.startswith(b"{") else "base64" in shown, letter
