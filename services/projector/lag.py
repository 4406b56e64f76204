"""How far the projector is behind the event log, per partition: what `iotjobs-admin lag` shows.

Offsets: the events topic's end offset against the projector's checkpoint (projector_offsets, written in the
same transaction as the rows). Seconds: the age of the oldest record not yet projected (its Kafka timestamp,
wall clock), 0 when there is none, so a quiet log never looks late.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition

from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partitions_of
from services.projector.projector import stored_offsets


@dataclass(frozen=True)
class PartitionLag:
    partition: int
    end_offset: int
    checkpoint: int
    """The next offset the projector will apply (projector_offsets.next_offset; the log's start if none)."""
    records_behind: int
    seconds_behind: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


async def projector_lag(settings: Settings, conn: asyncpg.Connection, timeout: float = 30.0) -> list[PartitionLag]:
    topic = Topics.of(settings).events
    checkpoints = await stored_offsets(conn, topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = await partitions_of(settings.kafka_bootstrap, topic, timeout)
        starts = await consumer.beginning_offsets(tps)
        ends = await consumer.end_offsets(tps)
        lags = []
        for tp in tps:
            checkpoint = max(checkpoints.get(tp.partition, 0), starts[tp])
            behind = max(0, ends[tp] - checkpoint)
            seconds = await _age_of(consumer, tp, checkpoint, timeout) if behind else 0.0
            lags.append(PartitionLag(tp.partition, ends[tp], checkpoint, behind, seconds))
        return lags
    finally:
        await consumer.stop()


async def _age_of(consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int, timeout: float) -> float:
    """Seconds since the record at `offset` was written."""
    consumer.assign([tp])
    consumer.seek(tp, offset)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        records = (await consumer.getmany(tp, timeout_ms=500, max_records=1)).get(tp, [])
        if records:
            written: float = records[0].timestamp / 1000
            return max(0.0, time.time() - written)
    raise TimeoutError(f"could not read offset {offset} of {tp.topic} partition {tp.partition} in {timeout:.0f}s")
