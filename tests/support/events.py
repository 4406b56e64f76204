"""Read the event log back from Kafka, with the counting rule every reader applies."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord

from iotjobs.domain.catalog import from_message
from iotjobs.runtime.eventlog import Counting, is_event
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partitions_of


async def _read_log(settings: Settings, timeout: float) -> tuple[list[tuple[int, dict[str, Any]]], dict[int, int]]:
    """Every record of the events topic as (partition, value), and each partition's end offset."""
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(settings.kafka_bootstrap, Topics.of(settings).events)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found: list[tuple[int, dict[str, Any]]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            assert loop.time() < deadline, "could not read the event log to its end"
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                found.extend((tp.partition, orjson.loads(r.value)) for r in records)
        return found, {tp.partition: offset for tp, offset in end.items()}
    finally:
        await consumer.stop()


async def read_events(settings: Settings, timeout: float = 30.0) -> list[tuple[Any, dict[str, Any]]]:
    """Every event that counts, as (event, envelope), in partition order."""
    records, _end = await _read_log(settings, timeout)
    rules: dict[int, Counting] = {}
    return [
        (from_message(value), value)
        for partition, value in records
        if rules.setdefault(partition, Counting()).counts(value) and is_event(value)
    ]


async def read_records(settings: Settings, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every record of the events topic, counted or not, event or not (markers, outbox records)."""
    records, _end = await _read_log(settings, timeout)
    return [value for _partition, value in records]


async def next_offsets(settings: Settings, timeout: float = 30.0) -> dict[int, int]:
    """Per partition that has records, the offset one past its last record."""
    _records, end = await _read_log(settings, timeout)
    return {partition: offset for partition, offset in end.items() if offset > 0}


async def scan_topics(
    settings: Settings, topics: list[str], visit: Callable[[str, ConsumerRecord[bytes, bytes]], None], timeout: float
) -> None:
    """Every record of the topics, from the start to the end they had when the scan began, to `visit`."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=1 << 24
    )
    await consumer.start()
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for topic in topics:
            tps = await partitions_of(settings.kafka_bootstrap, topic)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            while any([await consumer.position(tp) < end[tp] for tp in tps]):
                assert loop.time() < deadline, f"could not read {topic} to its end"
                for records in (await consumer.getmany(timeout_ms=500, max_records=10000)).values():
                    for record in records:
                        visit(topic, record)
    finally:
        await consumer.stop()


async def largest_records(settings: Settings, topics: list[str], timeout: float = 120.0) -> dict[str, int]:
    """Per topic, the size in bytes of its largest record value: what shows a record growing with the fleet."""
    largest = dict.fromkeys(topics, 0)

    def visit(topic: str, record: ConsumerRecord[bytes, bytes]) -> None:
        largest[topic] = max(largest[topic], len(record.value or b""))

    await scan_topics(settings, topics, visit, timeout)
    return largest
