"""The Kafka topics of iotjobs and their creation at start-up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaConnectionError, TopicAlreadyExistsError
from aiokafka.partitioner import murmur2

from iotjobs.runtime.settings import Settings

STATE_MAX_BYTES = 16 * 1024 * 1024
STATE_SEGMENT_BYTES = 32 * 1024 * 1024
RECORD_MAX_BYTES = 1_000_000
"""The largest record on the events and command topics (Kafka's default `max.message.bytes` is just above)."""


def partition_for(key: str, partitions: int) -> int:
    """The partition of a key on every topic: Kafka's default partitioner, so keyed writes agree with it."""
    hashed: int = murmur2(key.encode())
    return (hashed & 0x7FFFFFFF) % partitions


@dataclass(frozen=True)
class Topics:
    events: str
    thing_commands: str
    thing_state: str
    control_commands: str
    control_state: str
    replies: str
    dead_letters: str

    @staticmethod
    def of(settings: Settings) -> Topics:
        return Topics(
            events=settings.topic("events"),
            thing_commands=settings.topic("commands.thing"),
            thing_state=settings.topic("state.thing"),
            control_commands=settings.topic("commands.control"),
            control_state=settings.topic("state.control"),
            replies=settings.topic("replies"),
            dead_letters=settings.topic("dead-letters"),
        )

    def commands_for(self, key: str) -> str:
        return self.thing_commands if key.startswith("thing/") else self.control_commands


def topic_specs(settings: Settings) -> list[NewTopic]:
    t = Topics.of(settings)
    n = settings.partitions
    # Segments roll often and are cleaned early: a restore reads each key's latest image, not every image
    # each snapshot round wrote since the last cleaning.
    compacted = {
        "cleanup.policy": "compact",
        "max.message.bytes": str(STATE_MAX_BYTES),
        "segment.bytes": str(STATE_SEGMENT_BYTES),
        "segment.ms": "60000",
        "min.cleanable.dirty.ratio": "0.1",
    }
    # The test clock's offset (iotjobs/runtime/test_clock.py): one record, one partition, only when enabled.
    clock_topic = (
        [NewTopic(settings.topic("clock"), 1, 1, topic_configs=compacted)] if settings.test_clock == "on" else []
    )
    return [
        # The events are the system of record: kept for ever.
        NewTopic(t.events, n, 1, topic_configs={"retention.ms": "-1", "retention.bytes": "-1"}),
        NewTopic(t.thing_commands, n, 1),
        # A state topic has as many partitions as its command topic: partition p of one holds the
        # state of the keys whose commands arrive on partition p of the other.
        NewTopic(t.thing_state, n, 1, topic_configs=compacted),
        NewTopic(t.control_commands, n, 1),
        NewTopic(t.control_state, n, 1, topic_configs=compacted),
        NewTopic(t.replies, n, 1, topic_configs={"retention.ms": str(3600 * 1000)}),
        # Commands no owner could decide, kept until an operator has looked (`iotjobs-admin dead-letters`).
        NewTopic(t.dead_letters, n, 1, topic_configs={"retention.ms": "-1", "max.message.bytes": str(STATE_MAX_BYTES)}),
        *clock_topic,
    ]


async def ensure_topics(settings: Settings, timeout: float = 60.0) -> None:
    """Create any missing topic; waits (bounded) for the broker to answer."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        try:
            await admin.start()
            break
        except KafkaConnectionError:
            await admin.close()
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings) if spec.name not in existing]
        if missing:
            response = await admin.create_topics(missing)
            for topic, code, *message in response.topic_errors:
                # another instance may have created it first
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise RuntimeError(f"cannot create topic {topic}: error {code} {message}")
    finally:
        await admin.close()


async def partitions_of(bootstrap: str, topic: str, timeout: float = 30.0) -> list[TopicPartition]:
    """The partitions of a topic, waiting (bounded) until the cluster lists them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        while True:
            for description in await admin.describe_topics([topic]):
                if description.get("error_code") == 0 and description.get("partitions"):
                    numbers = sorted(p["partition"] for p in description["partitions"])
                    return [TopicPartition(topic, p) for p in numbers]
            if loop.time() > deadline:
                raise TimeoutError(f"topic {topic} has no partitions in the cluster metadata")
            await asyncio.sleep(0.05)
    finally:
        await admin.close()
