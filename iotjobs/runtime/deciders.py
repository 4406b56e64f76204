"""The single-writer decider runtime.

A consumer group owns the partitions of a command topic. For each owned partition this process runs
one transactional producer (`transactional_id = <group>-<partition>`), so a new owner fences a
stalled old one. Per batch of commands one transaction holds the events, the aggregates' new state
(compacted state topic, same partition number), commands for other aggregates, replies for HTTP
callers and the consumed offsets. What leaves the system (MQTT replies, notifications) is handed to
`on_committed` only after the commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.producer import sender as _aiokafka_sender
from aiokafka.structs import OffsetAndMetadata

from iotjobs.domain.catalog import aggregate_for
from iotjobs.domain.decision import Context, Decision
from iotjobs.domain.errors import ErrorKind, Rejection
from iotjobs.runtime import clock, codec, logs
from iotjobs.runtime.envelope import Inbound, Positions, command_envelope, inbound_from, merge_positions
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import STATE_MAX_BYTES, Topics

log = logs.get("iotjobs.runtime")

# A transaction that starts right after the previous commit meets CONCURRENT_TRANSACTIONS while the
# coordinator finishes writing markers; aiokafka retries after a fixed 20 ms, which dominated our
# device round trip (docs/adr/0001-decider-runtime.md). 2 ms was measured to be enough.
_aiokafka_sender.BACKOFF_OVERRIDE = 0.002

RESTORE_TIMEOUT = 60.0
MAX_BATCH = 500
TRANSACTION_TIMEOUT_MS = 10_000
MAX_BUFFERED = 5000
MAX_TIMER_SLEEP = 1.0


@dataclass
class Committed:
    """What a commit releases to the outside world."""

    replies: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    effects: list[Any] = field(default_factory=list)


OnCommitted = Callable[[Committed], Awaitable[None]]


@dataclass
class _Owned:
    partition: int
    producer: AIOKafkaProducer
    states: dict[str, tuple[int, Any]]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    timers: dict[str, list[Any]] = field(default_factory=dict)
    closed: bool = False
    pending: list[Any] = field(default_factory=list)
    """Fetched records not yet decided: they wait while the previous batch's transaction commits."""
    worker: asyncio.Task[None] | None = None


@dataclass
class _Outputs:
    events: list[tuple[str, int, Any, str]] = field(default_factory=list)
    sends: list[tuple[Any, Inbound | None]] = field(default_factory=list)
    kafka_replies: list[tuple[Inbound, Any]] = field(default_factory=list)
    committed: Committed = field(default_factory=Committed)

    def empty(self) -> bool:
        return not (self.events or self.sends or self.kafka_replies)


class DeciderRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        role: str,
        command_topic: str,
        state_topic: str,
        on_committed: OnCommitted | None = None,
    ) -> None:
        self.settings = settings
        self.topics = Topics.of(settings)
        self.group = f"{settings.topic_prefix}-{role}"
        self.command_topic = command_topic
        self.state_topic = state_topic
        self.on_committed = on_committed
        self._owned: dict[int, _Owned] = {}
        self._timer_heap: list[tuple[float, int, str]] = []
        self._timer_wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._acquiring = asyncio.Lock()
        self._running = False
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_interval_ms=300000,
        )
        self._restorer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=STATE_MAX_BYTES,
            fetch_max_bytes=STATE_MAX_BYTES * 2,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        await self._restorer.start()
        self._consumer.subscribe([self.command_topic], listener=_Listener(self))
        await self._consumer.start()
        self._tasks = [
            asyncio.create_task(self._consume_loop(), name=f"{self.group}-consume"),
            asyncio.create_task(self._timer_loop(), name=f"{self.group}-timers"),
        ]

    async def stop(self) -> None:
        self._running = False
        self._timer_wakeup.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for partition in list(self._owned):
            await self._release(partition)
        await self._consumer.stop()
        await self._restorer.stop()

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(self._owned)

    @property
    def ready(self) -> bool:
        """Every assigned partition is owned and being processed."""
        assigned = {tp.partition for tp in self._consumer.assignment()}
        return bool(assigned) and assigned <= set(self._owned)

    # --- ownership -----------------------------------------------------------------------------

    async def _acquire_until_done(self, partitions: list[int]) -> None:
        """Acquire, retrying while the partitions are still assigned to us (Kafka may be briefly unwell)."""
        while True:
            try:
                await self._acquire(partitions)
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("acquiring partitions failed; retrying", partitions=partitions)
                await asyncio.sleep(1.0)
            assigned = {tp.partition for tp in self._consumer.assignment()}
            partitions = [p for p in partitions if p in assigned and p not in self._owned]
            if not partitions:
                return

    async def _acquire(self, partitions: list[int]) -> None:
        """Take ownership: fence former owners, restore state, re-arm timers, rewind to the committed
        offset while still paused; then resume fetching."""
        async with self._acquiring:  # one at a time: they share the restore consumer
            partitions = [p for p in partitions if p not in self._owned]
            if partitions:
                await self._take(partitions)

    async def _take(self, partitions: list[int]) -> None:
        producers = {p: self._producer(p) for p in partitions}
        try:
            # Starting a producer initialises its transactional id: any former owner is fenced and its
            # open transaction aborted before we read the state it may have been writing.
            await asyncio.gather(*(producer.start() for producer in producers.values()))
            states = await self._restore(partitions)
        except BaseException:
            await asyncio.gather(*(producer.stop() for producer in producers.values()), return_exceptions=True)
            raise
        for partition, producer in producers.items():
            owned = _Owned(partition, producer, states[partition])
            self._owned[partition] = owned
            for key, (_seq, state) in owned.states.items():
                self._arm(owned, key, state)
            log.info("partition acquired", group=self.group, partition=partition, keys=len(owned.states))
        taken = [tp for tp in self._consumer.assignment() if tp.partition in producers]
        for tp in taken:
            # Whatever was fetched before is discarded: processing restarts at the last committed batch.
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
        self._consumer.resume(*taken)

    def _producer(self, partition: int) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            transactional_id=f"{self.group}-{partition}",
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            retry_backoff_ms=10,
            max_request_size=STATE_MAX_BYTES,
            # A killed owner's open transaction holds back every read_committed reader of the partitions it
            # wrote to, until a new owner fences it or the broker aborts it after this long.
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        )

    async def _release(self, partition: int) -> None:
        owned = self._owned.pop(partition, None)
        if owned is None:
            return
        owned.closed = True
        if owned.worker is not None and owned.worker is not asyncio.current_task():
            await asyncio.gather(owned.worker, return_exceptions=True)
        async with owned.lock:
            await owned.producer.stop()
        log.info("partition released", group=self.group, partition=partition)

    async def _restore(self, partitions: list[int]) -> dict[int, dict[str, tuple[int, Any]]]:
        """Read the state partitions to their end (read_committed): the state as last committed."""
        tps = [TopicPartition(self.state_topic, p) for p in partitions]
        states: dict[int, dict[str, tuple[int, Any]]] = {p: {} for p in partitions}
        self._restorer.assign(tps)
        await self._restorer.seek_to_beginning(*tps)
        end = await self._restorer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RESTORE_TIMEOUT
        while any([await self._restorer.position(tp) < end[tp] for tp in tps]):
            if loop.time() > deadline:
                raise TimeoutError(f"restoring {self.state_topic} did not reach offsets {end}")
            batches = await self._restorer.getmany(*tps, timeout_ms=200)
            for tp, records in batches.items():
                for record in records:
                    key = record.key.decode()
                    if record.value is None:
                        states[tp.partition].pop(key, None)
                        continue
                    stored = codec.loads(record.value)
                    states[tp.partition][key] = (stored["seq"], aggregate_for(key).from_dict(stored["state"]))
        return states

    # --- processing ----------------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        """Fetch continuously; each partition decides and commits on its own worker, so a slow
        transaction on one partition neither holds up the others nor the next fetch, and records that
        arrive meanwhile form the next, larger batch."""
        while self._running:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            except KafkaError as err:
                log.warning("fetch failed", group=self.group, error=str(err))
                await asyncio.sleep(0.2)
                continue
            for tp, records in batches.items():
                owned = self._owned.get(tp.partition)
                if owned is None or owned.closed:
                    # Not ours (yet): fetch these again once the partition is owned.
                    self._consumer.seek(tp, records[0].offset)
                    continue
                owned.pending.extend(records)
                if len(owned.pending) >= MAX_BUFFERED:
                    self._consumer.pause(tp)
                if owned.worker is None or owned.worker.done():
                    owned.worker = asyncio.create_task(self._drain(owned, tp), name=f"{self.group}-{tp.partition}")

    async def _drain(self, owned: _Owned, tp: TopicPartition) -> None:
        while owned.pending and not owned.closed:
            records, owned.pending = owned.pending[:MAX_BATCH], owned.pending[MAX_BATCH:]
            inbound = []
            for record in records:
                try:
                    command, envelope = codec.decode_message(record.value)
                    inbound.append(inbound_from(command, envelope))
                except Exception:  # a record we cannot read must not stop the partition
                    log.exception("undecodable command skipped", topic=tp.topic, offset=record.offset)
            await self._run(owned, inbound, commit_offset=(tp, records[-1].offset + 1))
        if not owned.closed and tp in self._consumer.paused():
            self._consumer.resume(tp)

    async def _run(
        self, owned: _Owned, inbound: list[Inbound], commit_offset: tuple[TopicPartition, int] | None
    ) -> None:
        async with owned.lock:
            if owned.closed:
                return
            ctx = Context(
                now=clock.now(),
                seconds_per_minute=self.settings.seconds_per_minute,
                per_namespace_queues=self.settings.namespace_queues == "per-namespace",
            )
            overlay: dict[str, tuple[int, Any]] = {}
            out = _Outputs()
            for item in inbound:
                self._decide(owned, overlay, out, item, ctx)
            if not out.empty() or commit_offset is not None:
                try:
                    await self._commit(owned, overlay, out, commit_offset)
                except ProducerFenced:
                    log.warning("fenced: another owner took the partition", partition=owned.partition)
                    owned.closed = True
                    return
                except Exception:
                    log.exception("transaction failed; partition will be reloaded", partition=owned.partition)
                    owned.closed = True
                    self._background.add(task := asyncio.create_task(self._reload(owned.partition)))
                    task.add_done_callback(self._background.discard)
                    return
            owned.states.update(overlay)
            for key, (_seq, state) in overlay.items():
                self._arm(owned, key, state)
        if self.on_committed and (out.committed.replies or out.committed.effects):
            try:
                await self.on_committed(out.committed)
            except Exception:
                log.exception("post-commit side effects failed")

    def _decide(
        self, owned: _Owned, overlay: dict[str, tuple[int, Any]], out: _Outputs, item: Inbound, ctx: Context
    ) -> None:
        try:
            aggregate = aggregate_for(item.key)
            seq, state = overlay.get(item.key) or owned.states.get(item.key) or (0, aggregate.initial(item.key))
            decision = aggregate.decide(state, item.command, ctx)
            numbered = []
            for event in decision.events:  # all of a decision's events, or none of them
                state = aggregate.evolve(state, event)
                seq += 1
                numbered.append((item.key, seq, event, item.command_id))
            out.events.extend(numbered)
        except Exception:
            log.exception("decider failed", key=item.key, command=type(item.command).__name__)
            decision = Decision(reply=Rejection(ErrorKind.INTERNAL.value, "internal error"))
        else:
            if decision.events:
                overlay[item.key] = (seq, state)
        for send in decision.sends:
            out.sends.append((send, item if send.forward_reply else None))
        if decision.reply is not None and item.reply_to is not None:
            if item.reply_to.get("kind") == "kafka":
                out.kafka_replies.append((item, decision.reply))
            else:
                out.committed.replies.append((item.reply_to, decision.reply))
        out.committed.effects.extend(decision.effects)

    async def _commit(
        self,
        owned: _Owned,
        overlay: dict[str, tuple[int, Any]],
        out: _Outputs,
        commit_offset: tuple[TopicPartition, int] | None,
    ) -> None:
        producer = owned.producer
        await producer.begin_transaction()
        try:
            pending = []
            for key, seq, event, command_id in out.events:
                value = codec.encode_message(event, key=key, seq=seq, command_id=command_id)
                pending.append(await producer.send(self.topics.events, key=key.encode(), value=value))
            written: Positions = {}
            if pending and (out.kafka_replies or any(item for _s, item in out.sends)):
                for meta in await asyncio.gather(*pending):
                    written = merge_positions(written, {str(meta.partition): meta.offset})
            for key, (seq, state) in overlay.items():
                stored = codec.dumps({"seq": seq, "state": aggregate_for(key).to_dict(state)})
                await producer.send(self.state_topic, key=key.encode(), value=stored, partition=owned.partition)
            for send, origin in out.sends:
                envelope = command_envelope(
                    send.key,
                    origin.command_id if origin else str(uuid.uuid4()),
                    origin.reply_to if origin else None,
                    merge_positions(origin.positions, written) if origin else None,
                )
                await producer.send(
                    self.topics.commands_for(send.key),
                    key=send.key.encode(),
                    value=codec.encode_message(send.command, **envelope),
                )
            for item, reply in out.kafka_replies:
                assert item.reply_to is not None
                value = codec.encode_message(
                    reply,
                    to=item.reply_to["instance"],
                    correlation=item.reply_to["id"],
                    positions=merge_positions(item.positions, written),
                )
                await producer.send(self.topics.replies, key=item.reply_to["instance"].encode(), value=value)
            if commit_offset is not None:
                tp, offset = commit_offset
                await producer.send_offsets_to_transaction({tp: OffsetAndMetadata(offset, "")}, self.group)
            await producer.commit_transaction()
        except BaseException:
            try:
                await producer.abort_transaction()
            except Exception as err:
                log.warning("abort failed", partition=owned.partition, error=repr(err))
            raise

    async def _reload(self, partition: int) -> None:
        """After a failed transaction: drop what we hold and take the partition again from the log."""
        tp = TopicPartition(self.command_topic, partition)
        await self._release(partition)
        if tp in self._consumer.assignment():
            self._consumer.pause(tp)
            await self._acquire_until_done([partition])

    # --- timers --------------------------------------------------------------------------------

    def _arm(self, owned: _Owned, key: str, state: Any) -> None:
        timers = aggregate_for(key).timers(state)
        known = {timer.due for timer in owned.timers.get(key, [])}
        if timers:
            owned.timers[key] = timers
            # Only new due times go on the heap: a device that updates often does not grow it.
            for due in {timer.due for timer in timers} - known:
                heapq.heappush(self._timer_heap, (due, owned.partition, key))
            self._timer_wakeup.set()
        else:
            owned.timers.pop(key, None)

    async def _timer_loop(self) -> None:
        while self._running:
            now = clock.now()
            due: dict[int, set[str]] = {}
            while self._timer_heap and self._timer_heap[0][0] <= now:
                _due, partition, key = heapq.heappop(self._timer_heap)
                due.setdefault(partition, set()).add(key)
            for partition, keys in due.items():
                owned = self._owned.get(partition)
                if owned is None:
                    continue
                inbound = [
                    Inbound(key, timer.command, command_id=f"timer-{uuid.uuid4()}")
                    for key in sorted(keys)
                    for timer in owned.timers.get(key, [])
                    if timer.due <= now
                ]
                if inbound:
                    await self._run(owned, inbound, commit_offset=None)
            self._timer_wakeup.clear()
            sleep = MAX_TIMER_SLEEP
            if self._timer_heap:
                sleep = min(sleep, max(0.0, self._timer_heap[0][0] - clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout=sleep)


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps rebalances short: newly assigned partitions stay paused until acquired in the background."""

    def __init__(self, runtime: DeciderRuntime) -> None:
        self.runtime = runtime
        self.acquiring: asyncio.Task[None] | None = None

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        pending = [self.acquiring] if self.acquiring is not None else []
        pending += list(self.runtime._background)  # reloads after failed transactions
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for tp in revoked:
            await self.runtime._release(tp.partition)

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        new = [tp for tp in assigned if tp.partition not in self.runtime._owned]
        if not new:
            return
        self.runtime._consumer.pause(*new)
        self.acquiring = asyncio.create_task(self.runtime._acquire_until_done([tp.partition for tp in new]))
