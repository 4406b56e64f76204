"""Folds iotjobs.events into the Postgres read models, storing Kafka offsets in the same transaction."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from iotjobs.runtime import codec, logs, pg
from iotjobs.runtime.projection import NOTIFY_CHANNEL
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partitions_of
from services.projector import folds

log = logs.get("iotjobs.projector")

READ_MODEL_TABLES = (
    "things",
    "thing_groups",
    "thing_group_members",
    "jobs",
    "job_executions",
    "job_templates",
    "resource_tags",
)
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
APPLICATION_NAME = "iotjobs-projector"


async def connect(settings: Settings) -> asyncpg.Connection:
    """The projector's connection, named so operators (and tests) can tell it apart."""
    return await pg.connect(settings.pg_dsn, server_settings={"application_name": APPLICATION_NAME})
# Projectors hold this lock shared while they run; a rebuild takes it exclusively.
PROJECTION_LOCK = 7_001_002


async def apply_batch(conn: asyncpg.Connection, topic: str, batches: dict[TopicPartition, list[Any]]) -> None:
    """One Postgres transaction: the rows, the offsets, and a notification for read-your-writes waiters."""
    offsets: dict[str, int] = {}
    async with conn.transaction():
        for tp, records in batches.items():
            for record in records:
                event, envelope = codec.decode_message(record.value)
                await folds.apply(conn, event, envelope["seq"])
            next_offset = records[-1].offset + 1
            offsets[str(tp.partition)] = next_offset
            await conn.execute(
                """INSERT INTO projector_offsets (topic, partition, next_offset) VALUES ($1, $2, $3)
                   ON CONFLICT (topic, partition) DO UPDATE SET next_offset = $3""",
                topic,
                tp.partition,
                next_offset,
            )
        await conn.execute(
            "SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, codec.dumps({"topic": topic, "offsets": offsets}).decode()
        )


async def stored_offsets(conn: asyncpg.Connection, topic: str) -> dict[int, int]:
    rows = await conn.fetch("SELECT partition, next_offset FROM projector_offsets WHERE topic = $1", topic)
    return {r["partition"]: r["next_offset"] for r in rows}


def _consumer(settings: Settings, **kwargs: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
        **kwargs,
    )


class Projector:
    def __init__(self, settings: Settings, conn: asyncpg.Connection) -> None:
        self.settings = settings
        self.topic = Topics.of(settings).events
        self.conn = conn
        self.consumer = _consumer(
            settings,
            group_id=f"{settings.topic_prefix}-projector",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
        )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.conn.execute("SELECT pg_advisory_lock_shared($1)", PROJECTION_LOCK)
        self.consumer.subscribe([self.topic], listener=_SeekToStored(self))
        await self.consumer.start()
        self._task = asyncio.create_task(self._loop(), name="projector")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()

    async def _loop(self) -> None:
        while True:
            try:
                batches = await self.consumer.getmany(timeout_ms=200, max_records=1000)
            except KafkaError as err:
                log.warning("fetch failed", error=str(err))
                await asyncio.sleep(0.2)
                continue
            if not batches:
                continue
            try:
                await apply_batch(self.conn, self.topic, batches)
            except DATABASE_ERRORS as err:
                log.warning("projecting a batch failed; retrying from the stored offsets", error=repr(err))
                await self._recover()

    async def _recover(self) -> None:
        """Nothing of the failed batch was stored: reconnect if needed and go back to the stored offsets."""
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.conn.is_closed():
                    self.conn = await connect(self.settings)
                    await self.conn.execute("SELECT pg_advisory_lock_shared($1)", PROJECTION_LOCK)
                stored = await stored_offsets(self.conn, self.topic)
                break
            except DATABASE_ERRORS as err:
                log.warning("waiting for PostgreSQL", error=repr(err))
        for tp in self.consumer.assignment():
            if tp.partition in stored:
                self.consumer.seek(tp, stored[tp.partition])
            else:
                await self.consumer.seek_to_beginning(tp)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        stored = await stored_offsets(self.projector.conn, self.projector.topic)
        for tp in assigned:
            if tp.partition in stored:
                self.projector.consumer.seek(tp, stored[tp.partition])
            else:
                await self.projector.consumer.seek_to_beginning(tp)


async def rebuild(settings: Settings, conn: asyncpg.Connection, timeout: float = 300.0) -> int:
    """Empty the read models and replay the event log from offset 0 to its current end."""
    topic = Topics.of(settings).events
    got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", PROJECTION_LOCK)
    if not got:
        raise RuntimeError("a projector is running: stop it before rebuilding the read models")
    try:
        async with conn.transaction():
            await conn.execute(f"TRUNCATE {', '.join(READ_MODEL_TABLES)}")
            await conn.execute("DELETE FROM projector_offsets WHERE topic = $1", topic)
        consumer = _consumer(settings)
        await consumer.start()
        applied = 0
        try:
            tps = await partitions_of(consumer, topic)
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            end = await consumer.end_offsets(tps)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while any([await consumer.position(tp) < end[tp] for tp in tps]):
                if loop.time() > deadline:
                    raise TimeoutError("rebuild did not reach the end of the event log in time")
                batches = await consumer.getmany(timeout_ms=200, max_records=1000)
                if batches:
                    await apply_batch(conn, topic, batches)
                    applied += sum(len(r) for r in batches.values())
        finally:
            await consumer.stop()
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", PROJECTION_LOCK)
