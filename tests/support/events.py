"""Read the event log back from Kafka, as committed."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from iotjobs.runtime import codec
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partitions_of


async def read_events(settings: Settings, timeout: float = 30.0) -> list[tuple[Any, dict[str, Any]]]:
    """Every committed event, as (event, envelope), in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await partitions_of(consumer, Topics.of(settings).events)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found: list[tuple[Any, dict[str, Any]]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            assert loop.time() < deadline, "could not read the event log to its end"
            for records in (await consumer.getmany(timeout_ms=200)).values():
                found.extend(codec.decode_message(r.value) for r in records)
        return found
    finally:
        await consumer.stop()


async def next_offsets(settings: Settings) -> dict[int, int]:
    """Per partition, one past the offset of the last committed event (transaction markers excluded)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await partitions_of(consumer, Topics.of(settings).events)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        last: dict[int, int] = {}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            assert loop.time() < deadline, "could not read the event log to its end"
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                last[tp.partition] = records[-1].offset + 1
        return last
    finally:
        await consumer.stop()
