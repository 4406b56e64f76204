"""Folds iotjobs.events into the Postgres read models, storing Kafka offsets in the same transaction."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from iotjobs.domain.catalog import from_message
from iotjobs.runtime import codec, logs, metrics, pg
from iotjobs.runtime.eventlog import Counting, is_event
from iotjobs.runtime.projection import NOTIFY_CHANNEL
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partitions_of
from services.projector import folds, job_events
from services.projector.job_events import Happened, JobEvents
from services.projector.observed import Progress

log = logs.get("iotjobs.projector")

READ_MODEL_TABLES = (
    "things",
    "thing_groups",
    "thing_group_members",
    "jobs",
    "job_executions",
    "job_execution_counts",
    "job_templates",
    "resource_tags",
    "execution_history",
)
DATABASE_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError, asyncpg.InternalClientError, OSError)
"""What a dying connection can raise, a protocol state error included: recovered with a fresh connection."""
APPLICATION_NAME = "iotjobs-projector"


async def connect(settings: Settings) -> asyncpg.Connection:
    """The projector's connection, named so operators (and tests) can tell it apart."""
    return await pg.connect(settings.pg_dsn, server_settings={"application_name": APPLICATION_NAME})


# Projectors hold this lock shared while they run; a rebuild takes it exclusively.
PROJECTION_LOCK = 7_001_002


class _Statements:
    """Collects the folds' statements so a batch goes to PostgreSQL in a few round trips, not one per event."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, list[tuple[Any, ...]]]] = []

    async def execute(self, sql: str, *args: Any) -> None:
        if self.runs and self.runs[-1][0] == sql:
            self.runs[-1][1].append(args)
        else:
            self.runs.append((sql, [args]))


async def apply_batch(
    conn: asyncpg.Connection,
    topic: str,
    batches: dict[TopicPartition, list[Any]],
    markers: dict[int, dict[str, str]],
    events: JobEvents | None = None,
) -> int:
    """One Postgres transaction: the rows of the events that count, the offsets and the marker each
    partition is under, and a notification for read-your-writes waiters. `markers` is updated in place.
    With `events`, the JOB and JOB_EXECUTION events the batch causes are published before it commits.
    Returns how many events it applied."""
    applied = 0
    offsets: dict[str, int] = {}
    statements = _Statements()
    transitions = _Statements()
    moved = dict(markers)
    happened: list[Happened] = []
    for tp, records in batches.items():
        counting = Counting(dict(moved.get(tp.partition) or {}))
        for record in records:
            value = codec.loads(record.value)
            if counting.counts(value) and is_event(value):
                event = from_message(value)
                await folds.apply(statements, event, value["seq"])
                await folds.apply_history(transitions, event, value["seq"])
                applied += 1
                if events is not None and job_events.wanted(event):
                    happened.append(Happened(event, f"{topic}/{tp.partition}/{record.offset}"))
        moved[tp.partition] = counting.tokens
    async with conn.transaction():
        types = await events.enabled(conn) if events is not None and happened else set()
        before = await events.before(conn, happened) if events is not None and types else {}
        for sql, rows in (*statements.runs, *transitions.runs):
            if len(rows) == 1:
                await conn.execute(sql, *rows[0])
            else:
                await conn.executemany(sql, rows)
        partitions = [tp.partition for tp in batches]
        for tp, records in batches.items():
            offsets[str(tp.partition)] = records[-1].offset + 1
        # Every partition's checkpoint and the notification in one round trip (NOTIFY leaves at commit).
        await conn.execute(
            """WITH checkpoints AS (
                   INSERT INTO projector_offsets (topic, partition, next_offset, marker)
                   SELECT $1, * FROM unnest($2::int[], $3::bigint[], $4::text[])
                   ON CONFLICT (topic, partition)
                   DO UPDATE SET next_offset = EXCLUDED.next_offset, marker = EXCLUDED.marker
               )
               SELECT pg_notify($5, $6)""",
            topic,
            partitions,
            [offsets[str(p)] for p in partitions],
            [codec.dumps(moved[p]).decode() for p in partitions],
            NOTIFY_CHANNEL,
            codec.dumps({"topic": topic, "offsets": offsets}).decode(),
        )
        if events is not None and types:
            await events.publish(await events.messages(conn, happened, types, before))
    markers.update(moved)
    return applied


async def stored_offsets(conn: asyncpg.Connection, topic: str) -> dict[int, int]:
    return {p: offset for p, (offset, _marker) in (await stored_positions(conn, topic)).items()}


async def stored_positions(conn: asyncpg.Connection, topic: str) -> dict[int, tuple[int, dict[str, str]]]:
    """Per partition: the next offset to project, and the marker of each scope the events there are under."""
    rows = await conn.fetch("SELECT partition, next_offset, marker FROM projector_offsets WHERE topic = $1", topic)
    return {r["partition"]: (r["next_offset"], codec.loads(r["marker"]) if r["marker"] else {}) for r in rows}


def _consumer(settings: Settings, **kwargs: Any) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=20,
        max_partition_fetch_bytes=4 * 1024 * 1024,
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
        self.markers: dict[int, dict[str, str]] = {}
        self.events = JobEvents(settings)
        self.progress = Progress()
        metrics.partitions_owned.labels("projector").set_function(lambda: len(self.consumer.assignment()))

    async def start(self) -> None:
        await self.conn.execute("SELECT pg_advisory_lock_shared($1)", PROJECTION_LOCK)
        self.consumer.subscribe([self.topic], listener=_SeekToStored(self))
        await self.consumer.start()
        self._task = asyncio.create_task(self._loop(), name="projector")

    @property
    def running(self) -> asyncio.Task[None]:
        """The projecting loop; it only ends when stopped, or on an error no retry can mend."""
        assert self._task is not None, "start() first"
        return self._task

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self.consumer.stop()
        await self.events.stop()

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
            if self.settings.projection_delay_max_seconds > 0:
                # Opt-in rehearsal of eventual consistency: rows appear a random while after their events.
                await asyncio.sleep(random.uniform(0, self.settings.projection_delay_max_seconds))
            began = asyncio.get_running_loop().time()
            try:
                applied = await apply_batch(self.conn, self.topic, batches, self.markers, self.events)
            except DATABASE_ERRORS as err:
                log.warning("projecting a batch failed; retrying from the stored offsets", error=repr(err))
                await self._recover()
                continue
            metrics.projector_batch_duration.observe(asyncio.get_running_loop().time() - began)
            metrics.events_projected.inc(applied)
            for tp, records in batches.items():
                self.progress.applied(tp.partition, records)

    async def _recover(self) -> None:
        """Nothing of the failed batch was stored: reconnect if needed and go back to the stored offsets."""
        while True:
            await asyncio.sleep(1.0)
            try:
                # A fresh connection every time: a failed batch can leave the old one inside a broken
                # transaction (asyncpg would then issue every later one as a SAVEPOINT).
                self.conn.terminate()
                self.conn = await connect(self.settings)
                await self.conn.execute("SELECT pg_advisory_lock_shared($1)", PROJECTION_LOCK)
                stored = await stored_positions(self.conn, self.topic)
                break
            except DATABASE_ERRORS as err:
                log.warning("waiting for PostgreSQL", error=repr(err))
        await self.seek_to_stored(self.consumer.assignment(), stored)

    async def seek_to_stored(self, tps: Any, stored: dict[int, tuple[int, dict[str, str]]]) -> None:
        for tp in tps:
            offset, marker = stored.get(tp.partition, (0, {}))
            self.markers[tp.partition] = marker
            self.consumer.seek(tp, offset)
            self.progress.seeked(tp.partition, offset)


class _SeekToStored(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, projector: Projector) -> None:
        self.projector = projector

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        # Its own connection: the rebalance may run while the projecting loop uses the main one.
        conn = await connect(self.projector.settings)
        try:
            stored = await stored_positions(conn, self.projector.topic)
        finally:
            await conn.close()
        await self.projector.seek_to_stored(assigned, stored)


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
        markers: dict[int, dict[str, str]] = {}
        try:
            tps = await partitions_of(settings.kafka_bootstrap, topic)
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
                    await apply_batch(conn, topic, batches, markers)
                    applied += sum(len(r) for r in batches.values())
        finally:
            await consumer.stop()
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", PROJECTION_LOCK)
