"""The test clock (IOTJOBS_TEST_CLOCK=on): an operator moves every service's clock forward at once.

The offset is a record on a compacted topic of its own; every service that decides or answers with `now`
follows it (ClockFollower) and applies the latest offset before it serves, so a restarted process keeps
the time the others have. Time only moves forward.
"""

from __future__ import annotations

import asyncio
import contextlib

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from iotjobs.runtime import clock, logs
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import partitions_of

KEY = b"offset"
log = logs.get("iotjobs.test_clock")


def enabled(settings: Settings) -> bool:
    return settings.test_clock == "on"


def topic(settings: Settings) -> str:
    return settings.topic("clock")


class ClockFollower:
    """Keeps this process's clock at the offset the clock topic holds."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        partitions = await partitions_of(self.settings.kafka_bootstrap, topic(self.settings))
        consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False)
        await consumer.start()
        self._consumer = consumer
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        end = await consumer.end_offsets(partitions)
        while any([await consumer.position(tp) < end[tp] for tp in partitions]):
            self._apply(await consumer.getmany(timeout_ms=200))
        log.warning("test clock enabled: an operator may move this service's clock forward", offset=clock.offset())
        self._task = asyncio.create_task(self._follow(), name="test-clock")

    async def _follow(self) -> None:
        assert self._consumer is not None
        while True:
            try:
                self._apply(await self._consumer.getmany(timeout_ms=1000))
            except KafkaError as err:  # the broker is away: the clock stays where it is until it is back
                log.warning("cannot read the clock topic", error=repr(err))
                await asyncio.sleep(1.0)

    def _apply(self, batches: dict[object, list[object]]) -> None:
        for records in batches.values():
            for record in records:
                value = getattr(record, "value", None)
                if value:
                    before = clock.offset()
                    clock.move_to(float(orjson.loads(value)["offset"]))
                    if clock.offset() != before:
                        log.info("clock moved forward", offset=clock.offset())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()


async def current_offset(settings: Settings, timeout: float = 30.0) -> float:
    """The offset the clock topic holds now (for a process that does not follow it)."""
    follower = ClockFollower(settings)
    before = clock.offset()
    await asyncio.wait_for(follower.start(), timeout)
    await follower.stop()
    return max(clock.offset(), before)


async def publish(settings: Settings, new_offset: float) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        await producer.send_and_wait(topic(settings), orjson.dumps({"offset": new_offset}), key=KEY)
    finally:
        await producer.stop()
