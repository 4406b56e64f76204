"""Read the event log back from Kafka, as committed."""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka import AIOKafkaConsumer

from iotjobs.runtime import codec
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partitions_of


async def _read_log(settings: Settings, timeout: float) -> list[tuple[int, int, Any, dict[str, Any]]]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, isolation_level="read_committed", enable_auto_commit=False
    )
    await consumer.start()
    try:
        tps = await partitions_of(consumer, Topics.of(settings).events)
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found: list[tuple[int, int, Any, dict[str, Any]]] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            assert loop.time() < deadline, "could not read the event log to its end"
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                found.extend((tp.partition, r.offset, *codec.decode_message(r.value)) for r in records)
        return found
    finally:
        await consumer.stop()


async def read_events(settings: Settings, timeout: float = 30.0) -> list[tuple[Any, dict[str, Any]]]:
    """Every committed event, as (event, envelope), in partition order."""
    return [(event, envelope) for _p, _o, event, envelope in await _read_log(settings, timeout)]


async def next_offsets(settings: Settings, timeout: float = 30.0) -> dict[int, int]:
    """Per partition, one past the offset of the last committed event (transaction markers excluded)."""
    last: dict[int, int] = {}
    for partition, offset, _event, _envelope in await _read_log(settings, timeout):
        last[partition] = max(last.get(partition, 0), offset + 1)
    return last
