"""The single-writer decider runtime: partition-owned state in memory, the events topic as its changelog.

A consumer group over a command topic assigns partitions; the member that holds partition *p* owns every
key of *p* (`topics.partition_for`). Taking a partition, the owner appends a marker with a fresh token to
partition *p* of the events topic, restores from the latest snapshot and the events after it up to its own
marker, and only then serves. A request that reaches the owner is decided in memory at once; its events
are appended by one idempotent producer (acks=all), pipelined: the next request is decided while earlier
appends are in flight. A decision is released (reply, notifications, commands for other aggregates) only
once its records are acknowledged and read back from the partition with no newer marker before them, so a
stalled former owner never acknowledges what will not count (docs/adr/0007-owner-runtime.md). A failed or
late append drops the partition's memory and takes the partition again from the log.

Requests taken by an instance that does not own the key come through the command topic; so do commands
between aggregates, which carry their source position and are applied at most once per key.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import itertools
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from iotjobs.domain.catalog import aggregate_for, from_message, serialisable_message
from iotjobs.domain.decision import Context, Decision
from iotjobs.domain.errors import ErrorKind, Rejection
from iotjobs.runtime import clock, logs, memory, metrics
from iotjobs.runtime.envelope import Positions, merge_positions
from iotjobs.runtime.eventlog import (
    MARKER_KEY,
    OUTBOX_KEY,
    Counting,
    KeyImage,
    Position,
    Replay,
    is_marker,
    marker,
)
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.snapshots import (
    CHECKPOINT_KEY,
    Restart,
    SnapshotFold,
    checkpoint,
    image_records,
    part_key,
)
from iotjobs.runtime.topics import RECORD_MAX_BYTES, STATE_MAX_BYTES, Topics, partition_for

PRODUCER_BATCH_BYTES = 1024 * 1024

log = logs.get("iotjobs.runtime")

RESTORE_TIMEOUT = 120.0
MAX_BATCH = 500
MAX_INBOX = 20_000
MAX_TIMER_SLEEP = 1.0
COMMIT_INTERVAL = 0.5
HANDOVER_TIMEOUT = 3.0
IDLE_CATCH_UP = 1.0
SMALL_OUTBOX = 64
OUTBOX_CHUNK_BYTES = 256 * 1024


class NotOwner(Exception):
    """This instance does not own the key's partition: forward the request through the command topic."""


class Unavailable(Exception):
    """The request could not be made durable (Kafka unwell, ownership lost); the caller may retry."""


@dataclass
class Released:
    """What a confirmed decision lets out of the system."""

    replies: list[tuple[dict[str, Any], Any]] = field(default_factory=list)
    effects: list[Any] = field(default_factory=list)


OnReleased = Callable[[Released], Awaitable[None]]


class ReplyRouter(Protocol):
    """Where replies for HTTP callers go: this process's waiters, or the replies topic."""

    instance: str

    def resolve(self, correlation: str, reply: Any, positions: Positions) -> None: ...

    def progress(self, trace: str, positions: Positions, caused: int, step: str = "") -> None: ...

    def fail(self, correlation: str, error: Exception) -> None: ...


@dataclass
class _Request:
    key: str
    command: Any
    command_id: str = ""
    reply_to: dict[str, Any] | None = None
    positions: Positions = field(default_factory=dict)
    trace: dict[str, Any] | None = None
    """Whom to tell, once this is released, where its events are and how many commands it caused: a
    strict-consistency write waits until every effect it caused is in the log."""
    cause: tuple[str, Position] | None = None
    command_offset: int | None = None
    done: asyncio.Future[None] | None = None
    """Settles once the request is durable: its decision confirmed, or it was handed on."""


@dataclass
class _Step:
    """One decision, appended (or nothing to append), waiting to be released in order."""

    request: _Request
    decision: Decision
    deliveries: list[asyncio.Future[Any]] = field(default_factory=list)
    touched: tuple[str, KeyImage] | None = None
    records: list[tuple[bytes, bytes]] = field(default_factory=list)
    outboxes: list[tuple[int, list[dict[str, Any]]]] = field(default_factory=list)
    """(index in `records`, the outbox entries that record carries): a large fan-out spans several records."""
    deadline: float = 0.0


@dataclass
class _Partition:
    number: int
    scope: str
    token: str
    epoch: int
    counting: Counting = field(default_factory=Counting)
    """The markers of every scope as of `marker_offset`; `later_markers` are the ones after it."""
    later_markers: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    keys: dict[str, KeyImage] = field(default_factory=dict)
    confirmed: dict[str, KeyImage] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    image_parts: dict[str, int] = field(default_factory=dict)
    """Parts of the last snapshot image written of each key stored in parts."""
    inbox: deque[_Request] = field(default_factory=deque)
    has_work: asyncio.Event = field(default_factory=asyncio.Event)
    steps: deque[_Step] = field(default_factory=deque)
    has_steps: asyncio.Event = field(default_factory=asyncio.Event)
    has_room: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the decisions awaiting confirmation fall to half of `Settings.max_unconfirmed`."""
    read_to: int = 0
    progress: asyncio.Event = field(default_factory=asyncio.Event)
    marker_offset: int = -1
    snapshots_seen: int = 0
    """How far into the partition's snapshots the restore read: what this owner's checkpoints vouch for."""
    replay: Replay | None = None
    replayed: asyncio.Event = field(default_factory=asyncio.Event)
    released_to: int = 0
    outstanding_sends: list[asyncio.Future[Any]] = field(default_factory=list)
    commit_to: int | None = None
    committed_to: int | None = None
    timers: dict[str, list[Any]] = field(default_factory=dict)
    ready: bool = False
    failed: bool = False
    superseded: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def note_marker(self, offset: int, record: dict[str, Any]) -> None:
        """A marker after our own (another scope's owner took the partition): a checkpoint past it must
        carry its token. Kept as a change, since it may be read before the restore's counting is ours."""
        if is_marker(record):
            self.later_markers.append((offset, {record["scope"]: record["marker"]}))

    def counting_at(self, offset: int) -> dict[str, str]:
        """The marker tokens in force at an events offset past our own marker."""
        tokens = dict(self.counting.tokens)
        for at, change in self.later_markers:
            if at < offset:
                tokens.update(change)
        return tokens


class DeciderRuntime:
    def __init__(
        self,
        settings: Settings,
        *,
        role: str,
        command_topic: str,
        state_topic: str,
        replies: ReplyRouter | None = None,
        on_released: OnReleased | None = None,
        serves_reads: bool = True,
    ) -> None:
        """`serves_reads`: requests read the owner's memory (the device plane), so it follows the events it
        owns all the time and notices a newer owner at once. Without it (control, whose reads come from the
        read models) the events are read back only while appends await confirmation, and otherwise caught
        up every `IDLE_CATCH_UP` seconds: reading back every device event costs a fetch each."""
        self.settings = settings
        self.topics = Topics.of(settings)
        self.group = f"{settings.topic_prefix}-{role}"
        self.scope = role
        self.command_topic = command_topic
        self.state_topic = state_topic
        self.replies = replies
        self.on_released = on_released
        self.append_timeout = max(1.0, settings.request_timeout_seconds / 3)
        self._parts: dict[int, _Partition] = {}
        self._acquiring: dict[int, asyncio.Task[None]] = {}
        self._chores: set[asyncio.Future[None]] = set()
        self._ids = f"{uuid.uuid4().hex[:12]}-"
        self._counter = itertools.count()
        self._restore_lock = asyncio.Lock()
        self._timer_heap: list[tuple[float, int, str]] = []
        self._timer_wakeup = asyncio.Event()
        self._forget_clock: Callable[[], None] = lambda: None
        self._tasks: list[asyncio.Task[None]] = []
        self._unserved_since: dict[int, float] = {}
        """Since when (monotonic) each partition assigned here has not been served: the liveness measure."""
        self._running = False
        self._follow_always = serves_reads
        self._read_back_wanted = asyncio.Event()
        self._producer = self._new_producer()
        metrics.partitions_owned.labels(role).set_function(lambda: len(self.owned_partitions))
        metrics.requests_queued.labels(role).set_function(lambda: sum(len(p.inbox) for p in self._parts.values()))
        metrics.decisions_unconfirmed.labels(role).set_function(lambda: sum(len(p.steps) for p in self._parts.values()))
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            group_id=self.group,
            group_instance_id=settings.group_instance_id or None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            max_poll_interval_ms=300000,
        )
        # Reads back the owned partitions of the events topic: restores them, and confirms appends.
        self._tail = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=100,
            max_partition_fetch_bytes=RECORD_MAX_BYTES * 2,
        )
        self._snapshots = AIOKafkaConsumer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_partition_fetch_bytes=STATE_MAX_BYTES,
            fetch_max_bytes=STATE_MAX_BYTES * 2,
        )

    def _new_producer(self) -> AIOKafkaProducer:
        return AIOKafkaProducer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            # Large batches when records queue up (a snapshot round writes thousands of images to one
            # partition): a partition has one request in flight at a time, so small batches cost round trips.
            max_batch_size=PRODUCER_BATCH_BYTES,
            retry_backoff_ms=20,
            request_timeout_ms=int(self.append_timeout * 1000) + 1000,
            max_request_size=STATE_MAX_BYTES,
        )

    # --- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._running = True
        self._forget_clock = clock.on_change(self._timer_wakeup.set)  # the test clock jumped: timers may be due
        await self._producer.start()
        await self._snapshots.start()
        await self._tail.start()
        events = [TopicPartition(self.topics.events, p) for p in range(self.settings.partitions)]
        self._tail.assign(events)
        self._tail.pause(*events)
        states = [TopicPartition(self.state_topic, p) for p in range(self.settings.partitions)]
        self._snapshots.assign(states)
        self._snapshots.pause(*states)
        self._consumer.subscribe([self.command_topic], listener=_Listener(self))
        await self._consumer.start()
        self._tasks = [
            asyncio.create_task(self._consume_loop(), name=f"{self.group}-consume"),
            asyncio.create_task(self._tail_loop(), name=f"{self.group}-tail"),
            asyncio.create_task(self._timer_loop(), name=f"{self.group}-timers"),
            asyncio.create_task(self._commit_loop(), name=f"{self.group}-commits"),
            asyncio.create_task(self._snapshot_loop(), name=f"{self.group}-snapshots"),
        ]

    async def stop(self) -> None:
        self._running = False
        self._forget_clock()
        self._timer_wakeup.set()
        for task in self._acquiring.values():
            task.cancel()
        await asyncio.gather(*self._acquiring.values(), return_exceptions=True)
        for number in list(self._parts):
            await self._release(number, handover=True)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._consumer.stop()
        for client in (self._tail, self._snapshots):
            with contextlib.suppress(Exception):
                await client.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._producer.stop(), 5.0)

    @property
    def owned_partitions(self) -> list[int]:
        return sorted(n for n, part in self._parts.items() if part.ready)

    @property
    def ready(self) -> bool:
        """Every assigned partition is restored and served, and every background task is alive."""
        if not self._running or any(task.done() for task in self._tasks):
            return False
        assigned = {tp.partition for tp in self._consumer.assignment()}
        return bool(assigned) and assigned <= set(self.owned_partitions)

    def stalled(self, threshold: float) -> dict[str, Any]:
        """Why this process is wedged, if it is; empty while it is alive. A partition assigned but unserved
        for longer than `threshold` seconds (its restore stalled, or its retake keeps failing), or a
        background loop that ended: neither comes back without a restart. A member with no partition (more
        members than partitions, or a rebalance) is idle, not wedged."""
        if not self._running:
            return {"stopped": True}
        ended = sorted(task.get_name() for task in self._tasks if task.done())
        now = time.monotonic()
        assigned = {tp.partition for tp in self._consumer.assignment()}
        unserved = {
            str(number): round(now - since, 1)
            for number, since in sorted(self._unserved_since.items())
            if number in assigned and now - since > threshold
        }
        return {key: value for key, value in (("ended", ended), ("unserved", unserved)) if value}

    def partition_of(self, key: str) -> int:
        return partition_for(key, self.settings.partitions)

    def _in_scope(self, key: str) -> bool:
        return self.topics.commands_for(key) == self.command_topic

    def _part_for(self, key: str) -> _Partition | None:
        if not self._in_scope(key):
            return None  # another role's key
        return self._parts.get(self.partition_of(key))

    def owns(self, key: str) -> bool:
        part = self._part_for(key)
        return part is not None and not part.failed

    # --- requests ------------------------------------------------------------------------------

    def submit(
        self,
        key: str,
        command: Any,
        reply_to: dict[str, Any] | None = None,
        trace: dict[str, Any] | None = None,
    ) -> asyncio.Future[None]:
        """Queue a request for the key's owner (this instance) without yielding, so arrival order is kept.

        The returned future settles once the request is durable; the reply travels to `reply_to`.
        """
        part = self._part_for(key)
        if part is None or part.failed:
            raise NotOwner(key)
        if len(part.inbox) >= MAX_INBOX:
            raise Unavailable(f"the owner of {key} has {len(part.inbox)} requests queued")
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        command_id = f"{self._ids}{next(self._counter)}"
        request = _Request(key, command, command_id=command_id, reply_to=reply_to, trace=trace, done=done)
        self._enqueue(part, request)
        return done

    def _task_ended(self, part: _Partition, task: asyncio.Task[None]) -> None:
        """A partition's worker or confirmer must never die quietly: that would stall its keys."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("partition task failed", partition=part.number, task=task.get_name(), exc_info=task.exception())
        self._fail(part, f"{task.get_name()} failed: {task.exception()!r}", producer_broken=False)

    def _enqueue(self, part: _Partition, request: _Request) -> None:
        part.inbox.append(request)
        part.has_work.set()

    # --- ownership -----------------------------------------------------------------------------

    def _assigned(self, numbers: list[int]) -> None:
        for number in numbers:
            if number not in self._parts and number not in self._acquiring:
                self._start_acquiring(number)

    def _start_acquiring(self, number: int) -> None:
        self._unserved_since.setdefault(number, time.monotonic())
        task = asyncio.create_task(self._acquire_until_done(number), name=f"{self.group}-acquire-{number}")
        self._acquiring[number] = task
        task.add_done_callback(lambda _t: self._acquiring.pop(number, None))

    def _context(self) -> Context:
        return Context(
            now=clock.now(),
            seconds_per_minute=self.settings.seconds_per_minute,
            per_namespace_queues=self.settings.namespace_queues == "per-namespace",
            max_concurrent_jobs=self.settings.max_concurrent_jobs,
        )

    def _republish(self, part: _Partition, keys: set[str]) -> None:
        """Publish again what a former owner may have decided but not published: the notifications of the
        keys a restore moved past their snapshots (at least once, so a device may hear one twice)."""
        if self.on_released is None:
            return
        ctx = self._context()
        effects: list[Any] = []
        for key in sorted(keys):
            image = part.keys.get(key)
            if image is None:
                continue
            try:
                effects.extend(aggregate_for(key).restored(image.state, ctx))
            except Exception:  # one key must not keep the others' notifications back
                log.exception("computing a restored key's notifications failed", key=key)
        if effects:
            self._background(self.on_released(Released(effects=effects)))

    def _background(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)

    def _is_assigned(self, number: int) -> bool:
        return TopicPartition(self.command_topic, number) in self._consumer.assignment()

    async def _acquire_until_done(self, number: int) -> None:
        while self._running and self._is_assigned(number):
            try:
                await self._acquire(number)
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:
                log.warning("taking a partition failed; retrying", partition=number, error=repr(err))
                part = await self._drop(number)
                if part is not None:
                    await self._hand_on_all(part)
                await asyncio.sleep(1.0)

    async def _acquire(self, number: int) -> None:
        """Mark, restore up to the mark, re-send what may not have been sent, then serve."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        token = f"{self.settings.instance_id}-{uuid.uuid4().hex[:12]}"
        part = _Partition(number, self.scope, token, epoch=time.time_ns())
        self._parts[number] = part  # requests queue in its inbox while it restores
        mark = orjson.dumps(marker(token, self.scope, part.epoch))
        meta = await asyncio.wait_for(
            await self._producer.send(self.topics.events, mark, key=MARKER_KEY, partition=number), RESTORE_TIMEOUT
        )
        part.marker_offset = meta.offset
        marked = loop.time()
        async with self._restore_lock:
            restart, part.snapshots_seen = await self._read_snapshots(number)
        snapshots_read = loop.time()
        if restart.untrusted:
            log.warning(
                "snapshots written after the checkpoint's owner took the partition; replaying it from the start",
                partition=number,
                keys=restart.untrusted[:5],
            )
        # Snapshots written before restores kept to their own scope may hold the other role's keys.
        images = {key: image for key, image in restart.images.items() if self._in_scope(key)}
        replay = await self._replay(part, Replay(self.scope, images, Counting(restart.tokens)), restart.offset)
        if replay.gap:
            log.warning("snapshot older than the log; replaying the partition from the start", partition=number)
            replay = await self._replay(part, Replay(self.scope, {}, Counting()), 0)
        part.counting = replay.counting
        if part.superseded:
            raise RuntimeError("another owner marked the partition while it was being restored")
        part.keys = replay.keys
        part.confirmed = {key: _copy(image) for key, image in replay.keys.items()}
        part.dirty = set(replay.changed)  # a checkpoint past the replayed events must cover them
        part.released_to = part.marker_offset + 1
        for key, image in part.keys.items():
            try:
                timers = aggregate_for(key).timers(image.state)
            except Exception:  # one key's timers must not keep the partition from being served
                log.exception("computing a restored key's timers failed", key=key)
                continue
            self._arm(part, key, timers)
        for offset, record in replay.resend:
            await self._send_outbox(part, offset, record)
        self._republish(part, replay.changed)
        part.tasks = [
            loop.create_task(self._work(part), name=f"{self.group}-work-{number}"),
            loop.create_task(self._confirm(part), name=f"{self.group}-confirm-{number}"),
        ]
        for task in part.tasks:
            task.add_done_callback(functools.partial(self._task_ended, part))
        part.ready = True
        self._unserved_since.pop(number, None)
        tp = TopicPartition(self.command_topic, number)
        if self._is_assigned(number):
            committed = await self._consumer.committed(tp)
            if committed is None:
                await self._consumer.seek_to_beginning(tp)
            else:
                self._consumer.seek(tp, committed)
            self._consumer.resume(tp)
        log.info(
            "partition taken",
            group=self.group,
            partition=number,
            keys=len(part.keys),
            replayed_from=restart.offset,
            marker=part.marker_offset,
            resent=len(replay.resend),
            seconds={
                "mark": round(marked - began, 3),
                "snapshots": round(snapshots_read - marked, 3),
                "replay": round(loop.time() - snapshots_read, 3),
            },
        )
        metrics.child(metrics.restore_duration, self.scope).observe(loop.time() - began)
        memory.give_back()  # what reading the snapshots and replaying the log allocated

    async def _replay(self, part: _Partition, replay: Replay, start: int) -> Replay:
        tp = TopicPartition(self.topics.events, part.number)
        part.replay = replay
        part.replayed.clear()
        part.read_to = start
        self._tail.seek(tp, start)
        self._tail.resume(tp)
        self._read_back_wanted.set()
        try:
            await asyncio.wait_for(part.replayed.wait(), RESTORE_TIMEOUT)
        finally:
            part.replay = None
        return replay

    async def _read_snapshots(self, number: int) -> tuple[Restart, int]:
        """Where a restore of one partition starts (`snapshots.SnapshotFold`), and how far into the
        partition's snapshots it read: the checkpoints this owner writes vouch for what it read."""
        tp = TopicPartition(self.state_topic, number)
        await self._snapshots.seek_to_beginning(tp)
        end = (await self._snapshots.end_offsets([tp]))[tp]
        self._snapshots.resume(tp)
        fold = SnapshotFold()
        deadline = asyncio.get_running_loop().time() + RESTORE_TIMEOUT
        try:
            while await self._snapshots.position(tp) < end:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"reading snapshots of partition {number} did not finish")
                for records in (await self._snapshots.getmany(tp, timeout_ms=200)).values():
                    for record in records:
                        fold.feed(record.offset, record.key, record.value)
        finally:
            self._snapshots.pause(tp)
        return fold.restart(), end

    async def _release(self, number: int, *, handover: bool) -> None:
        """Stop serving a partition. On a handover, what was decided is confirmed first and what was not
        yet decided goes to the command topic for the next owner."""
        part = self._parts.get(number)
        if part is None:
            return
        if handover and part.ready and not part.failed:
            part.ready = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained(part), HANDOVER_TIMEOUT)
            with contextlib.suppress(TimeoutError):  # a commit during a rebalance may wait for it to end
                await asyncio.wait_for(self._commit(part), HANDOVER_TIMEOUT)
        await self._drop(number)
        await self._hand_on_all(part)

    async def _hand_on_all(self, part: _Partition) -> None:
        requests, part.inbox = list(part.inbox), deque()
        for request in requests:
            await self._hand_on(request)

    async def _drained(self, part: _Partition) -> None:
        part.has_work.set()
        while part.steps or part.inbox:
            if part.failed:
                return
            await asyncio.sleep(0.005)

    async def _drop(self, number: int) -> _Partition | None:
        """Stop a partition's tasks and fail what it decided but did not confirm; its inbox is the caller's."""
        part = self._parts.pop(number, None)
        if part is None:
            return None
        part.ready = False
        part.failed = True
        current = asyncio.current_task()
        for task in part.tasks:
            if task is not current:
                task.cancel()
        await asyncio.gather(*(t for t in part.tasks if t is not current), return_exceptions=True)
        for step in part.steps:
            self._fail_request(step.request, "the partition changed hands before the request was confirmed")
        part.steps.clear()
        tp = TopicPartition(self.topics.events, number)
        with contextlib.suppress(Exception):
            self._tail.pause(tp)
        part.timers.clear()
        log.info("partition released", group=self.group, partition=number)
        return part

    async def _hand_on(self, request: _Request) -> None:
        """Send a request this instance will not decide to the command topic, for the key's owner."""
        try:
            delivery = await asyncio.wait_for(
                self._produce_command(
                    request.key, request.command, request.command_id, request.reply_to, {}, trace=request.trace
                ),
                self.append_timeout,
            )
            await asyncio.wait_for(asyncio.shield(delivery), self.append_timeout)
        except Exception as err:
            self._fail_request(request, f"cannot hand the request on: {err!r}")
            return
        if request.done is not None and not request.done.done():
            request.done.set_result(None)

    def _fail_request(self, request: _Request, why: str) -> None:
        if request.done is not None and not request.done.done():
            request.done.set_exception(Unavailable(why))
        reply_to = request.reply_to
        replies = self.replies
        if reply_to and reply_to.get("kind") == "kafka" and replies and reply_to.get("instance") == replies.instance:
            replies.fail(reply_to["id"], Unavailable(why))

    def _fail(self, part: _Partition, why: str, *, producer_broken: bool) -> None:
        """Memory may be ahead of the log: drop the partition and take it again from the log."""
        if part.failed:
            return
        log.warning("partition failed; taking it again from the log", partition=part.number, reason=why)
        part.failed = True
        self._unserved_since.setdefault(part.number, time.monotonic())
        for request in part.inbox:
            self._fail_request(request, why)
        part.inbox.clear()
        self._background(self._retake(part.number, producer_broken))

    async def _retake(self, number: int, producer_broken: bool) -> None:
        await self._drop(number)
        if producer_broken:
            await self._renew_producer()
        if self._running and self._is_assigned(number) and number not in self._acquiring:
            self._consumer.pause(TopicPartition(self.command_topic, number))
            self._start_acquiring(number)

    async def _renew_producer(self) -> None:
        """A producer whose appends failed may hold batches in an unknown state: start a fresh one."""
        old, self._producer = self._producer, self._new_producer()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 2.0)
        while self._running:
            try:
                await self._producer.start()
                return
            except Exception as err:
                log.warning("Kafka producer cannot start; retrying", error=repr(err))
                await asyncio.sleep(1.0)

    # --- deciding ------------------------------------------------------------------------------

    async def _work(self, part: _Partition) -> None:
        """Decide queued requests in order and append their records without waiting for the acks."""
        while True:
            if not part.inbox:
                part.has_work.clear()
                await part.has_work.wait()
                continue
            room = self.settings.max_unconfirmed - len(part.steps)
            if room <= 0:
                # A burst (a release to 100,000 things) waits here rather than in memory as decisions.
                part.has_room.clear()
                await part.has_room.wait()
                continue
            ctx = self._context()
            for _ in range(min(MAX_BATCH, len(part.inbox), room)):
                request = part.inbox.popleft()
                step = self._decide(part, request, ctx)
                try:
                    for key, value in step.records:
                        step.deliveries.append(
                            await self._producer.send(self.topics.events, value, key=key, partition=part.number)
                        )
                except Exception as err:
                    part.steps.append(step)
                    self._fail(part, f"append failed: {err!r}", producer_broken=True)
                    return
                step.deadline = asyncio.get_running_loop().time() + self.append_timeout
                part.steps.append(step)
                part.has_steps.set()
                if step.deliveries:
                    self._read_back_wanted.set()
            # Appends rarely suspend: without this, a long inbox would be decided in one go while the
            # confirmer, the read-back and the command consumer wait.
            await asyncio.sleep(0)

    def _decide(self, part: _Partition, request: _Request, ctx: Context) -> _Step:
        aggregate = aggregate_for(request.key)
        image = part.keys.get(request.key) or KeyImage(0, aggregate.initial(request.key))
        if request.cause is not None:
            stream, position = request.cause
            if position <= image.applied.get(stream, (-1, -1)):
                # Applied before: a re-sent or redelivered command. Released in order, with no effect.
                return _Step(request, Decision())
        try:
            step, timers = self._outcome(part, request, image, ctx)
        except Exception as err:
            # A command no decider can take must not take its partition down (and, re-read after a
            # restore, take it down again): it is answered, parked for an operator, and the partition goes on.
            log.exception("decider failed", key=request.key, command=type(request.command).__name__)
            self._park(request, f"the {aggregate.name} decider failed on it: {err!r}")
            return _Step(request, Decision(reply=Rejection(ErrorKind.INTERNAL.value, "internal error")))
        if step.touched is not None:
            part.keys[request.key] = step.touched[1]
            self._arm(part, request.key, timers)
        elif request.cause is not None:
            image.note_applied(*request.cause)
        return step

    def _outcome(self, part: _Partition, request: _Request, image: KeyImage, ctx: Context) -> tuple[_Step, list[Any]]:
        """The decision on a request, its records and the key's timers after it; changes nothing."""
        aggregate = aggregate_for(request.key)
        decision = aggregate.decide(image.state, request.command, ctx)
        step = _Step(request, decision)
        if not (decision.events or decision.sends) or _passes_on(request, decision):
            return step, []
        state, seq = image.state, image.seq
        for event in decision.events:  # all of a decision's events, or none of them
            state = aggregate.evolve(state, event)
            seq += 1
        after = KeyImage(seq, state, dict(image.applied))
        if request.cause is not None:
            after.note_applied(*request.cause)
        step.touched = (request.key, after)
        step.records, step.outboxes = _records(part, step)
        if any(len(value) > RECORD_MAX_BYTES for _key, value in step.records):
            too_large = f"the request's outcome exceeds the {RECORD_MAX_BYTES} byte record limit"
            return _Step(request, Decision(reply=Rejection(ErrorKind.INVALID_REQUEST.value, too_large))), []
        return step, aggregate.timers(state)

    # --- dead letters --------------------------------------------------------------------------

    def _park(self, request: _Request, reason: str) -> None:
        value = orjson.dumps({"key": request.key, "id": request.command_id, **serialisable_message(request.command)})
        source = (
            "timer"
            if request.command_offset is None
            else f"{self.command_topic}/{self.partition_of(request.key)}/{request.command_offset}"
        )
        self._background(self._dead_letter(request.key.encode(), value, reason, source))

    async def _dead_letter(self, key: bytes | None, value: bytes | None, reason: str, source: str) -> None:
        """Keep what could not be decided on the dead-letter topic, with why and where it came from."""
        headers = [("reason", reason.encode()), ("source", source.encode()), ("scope", self.scope.encode())]
        try:
            delivery = await self._producer.send(self.topics.dead_letters, value, key=key, headers=headers)
            await asyncio.wait_for(delivery, self.append_timeout)
            log.warning("command parked on the dead-letter topic", source=source, reason=reason)
        except Exception as err:
            log.error("parking a command failed; it is only in this log", source=source, reason=reason, error=repr(err))

    # --- confirming ----------------------------------------------------------------------------

    async def _confirm(self, part: _Partition) -> None:
        """Release decisions in order, each once its records are acknowledged and read back as counting."""
        loop = asyncio.get_running_loop()
        while True:
            if not part.steps:
                part.has_steps.clear()
                await part.has_steps.wait()
                continue
            step = part.steps[0]
            offsets: list[int] = []
            if step.deliveries:
                try:
                    if not all(delivery.done() for delivery in step.deliveries):
                        # asyncio.wait, unlike wait_for, leaves the producer's futures alone on a timeout
                        _done, late = await asyncio.wait(step.deliveries, timeout=max(0.0, step.deadline - loop.time()))
                        if late:
                            raise TimeoutError(f"no acknowledgement in {self.append_timeout:.1f}s")
                    offsets = [delivery.result().offset for delivery in step.deliveries]
                except Exception as err:
                    self._fail(part, f"append not acknowledged: {err!r}", producer_broken=True)
                    return
                last = max(offsets)
                while part.read_to <= last and not part.failed:
                    part.progress.clear()
                    try:
                        # A stall, not a backlog, fails the partition: each read-back step renews the wait.
                        # Under a burst (a release to 100,000 things) the tail is busy but moving.
                        await asyncio.wait_for(part.progress.wait(), self.append_timeout)
                    except TimeoutError:
                        self._fail(part, "append not read back in time", producer_broken=False)
                        return
                if part.failed or part.superseded:
                    # A newer marker came first: these records do not count, nor does anything decided after.
                    self._fail(part, "another owner marked the partition", producer_broken=False)
                    return
            part.steps.popleft()
            if len(part.steps) <= self.settings.max_unconfirmed // 2:
                part.has_room.set()
            await self._let_out(part, step, offsets)
            if offsets:
                part.released_to = max(offsets) + 1

    async def _let_out(self, part: _Partition, step: _Step, offsets: list[int]) -> None:
        request, decision = step.request, step.decision
        if step.touched is not None:
            key, image = step.touched
            part.confirmed[key] = image
            part.dirty.add(key)
            metrics.count_appended(decision.events)
        # A decision with no events (an idempotent repeat, a read) stands on what the partition released
        # before it, the key's earlier events among them: a strict write waits for those to be readable too.
        last = max(offsets) if offsets else part.released_to - 1
        positions = merge_positions(request.positions, {str(part.number): last} if last >= 0 else {})
        if _passes_on(request, decision):
            await self._pass_on(part, step, positions)
        elif decision.sends:
            for index, entries in step.outboxes:
                await self._send_outbox(part, offsets[index], {"outbox": entries}, positions)
        if request.command_offset is not None:
            part.commit_to = request.command_offset + 1
        released = Released(effects=list(decision.effects))
        report = None if request.trace is None else self._report(request.trace, positions, len(decision.sends))
        if decision.reply is not None and request.reply_to is not None:
            report = await self._reply(request.reply_to, decision.reply, positions, released, report)
        if report is not None:
            await self._send_reply(report["to"], report)
        if request.done is not None and not request.done.done():
            request.done.set_result(None)
        if self.on_released is not None and (released.replies or released.effects):
            try:
                await self.on_released(released)
            except Exception:
                log.exception("publishing replies and notifications failed")

    async def _reply(
        self,
        reply_to: dict[str, Any],
        reply: Any,
        positions: Positions,
        released: Released,
        report: dict[str, Any] | None,
    ) -> dict[str, Any] | None:
        """Route a reply; a progress report for the same instance rides in the reply's record. Returns the
        report still to send (None once it went with the reply)."""
        if reply_to.get("kind") != "kafka":
            released.replies.append((reply_to, reply))
            return report
        if self.replies is not None and reply_to.get("instance") == self.replies.instance:
            self.replies.resolve(reply_to["id"], reply, positions)
            return report
        message = {
            **serialisable_message(reply),
            "to": reply_to["instance"],
            "correlation": reply_to["id"],
            "positions": positions,
        }
        if report is not None and report["to"] == reply_to["instance"]:
            message.update(report)
            report = None
        await self._send_reply(reply_to["instance"], message)
        return report

    def _report(self, trace: dict[str, Any], positions: Positions, caused: int) -> dict[str, Any] | None:
        """Tell a strict write where this decision's events are and how many commands it caused: at once if
        the writer is in this process, else the report to send through the replies topic."""
        step = trace.get("step", "")
        if self.replies is not None and trace.get("instance") == self.replies.instance:
            self.replies.progress(trace["id"], positions, caused, step)
            return None
        return {
            "to": trace["instance"],
            "progress": trace["id"],
            "positions": positions,
            "caused": caused,
            "step": step,
        }

    async def _send_reply(self, instance: str, message: dict[str, Any]) -> None:
        with contextlib.suppress(Exception):  # the caller times out and retries
            await self._producer.send(self.topics.replies, orjson.dumps(message), key=instance.encode())

    async def _send_outbox(
        self, part: _Partition, offset: int, record: dict[str, Any], positions: Positions | None = None
    ) -> None:
        """Commands for other aggregates, each with the position that lets its receiver apply it once."""
        positions = positions or {str(part.number): offset}
        for index, entry in enumerate(record["outbox"]):
            message = entry["command"]
            # Live entries hold the command itself; entries read back from the log hold its JSON form.
            command = from_message(message) if isinstance(message["data"], dict) else message["data"]
            cause = (f"{self.scope}:{part.number}", (offset, index))
            try:
                delivery = await self._produce_command(
                    entry["key"],
                    command,
                    f"{part.number}:{offset}:{index}",
                    entry.get("reply_to"),
                    positions,
                    cause,
                    entry.get("trace"),
                )
            except Exception as err:
                self._fail(part, f"sending a command failed: {err!r}", producer_broken=True)
                return
            part.outstanding_sends.append(delivery)

    async def _pass_on(self, part: _Partition, step: _Step, positions: Positions) -> None:
        """A request this key only checks and hands on (`_passes_on`) goes to the next key unrecorded: its
        caller, who awaits the reply, is what makes it at least once (a lost hand-on times out and is
        retried), and the receiver applies it once by its command-topic offset."""
        request = step.request
        for index, send in enumerate(step.decision.sends):
            command_id = f"{request.command_id}.{index}"
            trace = _caused_step(request.trace, index)
            try:
                delivery = await self._produce_command(
                    send.key, send.command, command_id, request.reply_to, positions, trace=trace
                )
            except Exception as err:
                self._fail(part, f"handing a request on failed: {err!r}", producer_broken=True)
                return
            delivery.add_done_callback(_ignore_failure)

    async def _produce_command(
        self,
        key: str,
        command: Any,
        command_id: str,
        reply_to: dict[str, Any] | None,
        positions: Positions,
        cause: tuple[str, Position] | None = None,
        trace: dict[str, Any] | None = None,
    ) -> asyncio.Future[Any]:
        envelope: dict[str, Any] = {"key": key, "id": command_id, "reply_to": reply_to, "positions": positions}
        if cause is not None:
            envelope["cause"] = [cause[0], *cause[1]]
        if trace is not None:
            envelope["trace"] = trace
        value = orjson.dumps({**envelope, **serialisable_message(command)})
        delivery: asyncio.Future[Any] = await self._producer.send(
            self.topics.commands_for(key), value, key=key.encode(), partition=self.partition_of(key)
        )
        return delivery

    # --- the command topic ---------------------------------------------------------------------

    async def _consume_loop(self) -> None:
        while self._running:
            try:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=MAX_BATCH)
            except KafkaError as err:
                log.warning("fetch failed", group=self.group, error=str(err))
                await asyncio.sleep(0.2)
                continue
            for tp, records in batches.items():
                part = self._parts.get(tp.partition)
                if part is None or not part.ready or part.failed:
                    # Not served (yet): fetch these again once the partition is taken.
                    self._consumer.seek(tp, records[0].offset)
                    self._consumer.pause(tp)
                    continue
                for record in records:
                    try:
                        request = _command_request(record)
                    except Exception as err:  # a record we cannot read must not stop the partition
                        source = f"{record.topic}/{record.partition}/{record.offset}"
                        self._background(self._dead_letter(record.key, record.value, f"undecodable: {err!r}", source))
                        continue
                    self._enqueue(part, request)
                if len(part.inbox) > MAX_INBOX // 2:
                    self._consumer.pause(tp)
            for tp in self._consumer.paused():
                part = self._parts.get(tp.partition)
                if part is not None and part.ready and len(part.inbox) < MAX_INBOX // 4:
                    self._consumer.resume(tp)

    async def _commit_loop(self) -> None:
        while self._running:
            await asyncio.sleep(COMMIT_INTERVAL)
            for part in list(self._parts.values()):
                if part.ready:
                    await self._commit(part)

    async def _commit(self, part: _Partition) -> None:
        if part.commit_to is None or part.commit_to == part.committed_to:
            return
        tp = TopicPartition(self.command_topic, part.number)
        try:
            await self._consumer.commit({tp: part.commit_to})
            part.committed_to = part.commit_to
        except Exception as err:  # a later commit or a re-decided (and de-duplicated) command covers it
            log.debug("committing the command offset failed", partition=part.number, error=repr(err))

    # --- reading the events back ---------------------------------------------------------------

    async def _tail_loop(self) -> None:
        # Also after `stop` began: the partitions it hands over confirm what they decided by reading it back.
        while self._running or self._parts:
            try:
                batches = await self._tail.getmany(timeout_ms=200, max_records=5000)
            except KafkaError as err:
                log.warning("reading the events back failed", error=str(err))
                await asyncio.sleep(0.2)
                continue
            for tp, records in batches.items():
                part = self._parts.get(tp.partition)
                if part is None:
                    continue
                for record in records:
                    self._read_back(part, record)
                part.progress.set()
            if not self._follow_always and self._read_to_end() and not self._awaiting_read_back():
                await self._idle()

    def _awaiting_read_back(self) -> bool:
        return any(part.steps or part.replay is not None for part in self._parts.values())

    def _read_to_end(self) -> bool:
        """Every served partition is read up to the end its last fetch reported."""
        for number, part in self._parts.items():
            end = self._tail.highwater(TopicPartition(self.topics.events, number))
            if part.ready and (end is None or part.read_to < end):
                return False
        return True

    async def _idle(self) -> None:
        """Nothing awaits confirmation and the partitions are read to their end: stop fetching until an
        append or a restore needs the read-back, or the catch-up interval passes."""
        idle = [TopicPartition(self.topics.events, n) for n, part in self._parts.items() if part.ready]
        self._read_back_wanted.clear()
        self._tail.pause(*idle)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._read_back_wanted.wait(), IDLE_CATCH_UP)
        finally:
            # A partition dropped meanwhile stays paused; one taken meanwhile was resumed by its restore. One
            # being handed over is still read: draining it confirms what it decides until it goes.
            following = [tp for tp in idle if tp.partition in self._parts]
            self._tail.resume(*following)

    def _read_back(self, part: _Partition, record: Any) -> None:
        offset = record.offset
        if offset < part.read_to:
            return
        part.read_to = offset + 1
        if part.replay is not None and offset <= part.marker_offset:
            part.replay.feed(offset, orjson.loads(record.value))
            if offset == part.marker_offset:
                part.replayed.set()
            return
        if record.key == MARKER_KEY and offset > part.marker_offset:
            value = orjson.loads(record.value)
            part.note_marker(offset, value)
            if is_marker(value) and value["scope"] == self.scope and value["marker"] != part.token:
                # Checked in the same fetch as the restore's last records too: a partition marked by
                # another owner after our own marker is never served. Once its worker runs (serving, or
                # draining for a handover) nothing it decided may be released any more.
                part.superseded = True
                if part.tasks:
                    self._fail(part, "another owner marked the partition", producer_broken=False)

    # --- snapshots -----------------------------------------------------------------------------

    async def _snapshot_loop(self) -> None:
        while self._running:
            await asyncio.sleep(self.settings.snapshot_interval_seconds)
            wrote = False
            for part in list(self._parts.values()):
                if part.ready and not part.failed and part.dirty:
                    try:
                        await self._snapshot(part)
                        wrote = True
                    except Exception as err:
                        log.warning("writing a snapshot failed", partition=part.number, error=repr(err))
            if wrote:
                memory.give_back()  # after busy spells only: an idle owner has nothing to give back

    async def _snapshot(self, part: _Partition) -> None:
        """Write the confirmed state of the keys changed since the last snapshot, then a checkpoint: the
        events offset from which a restore replays, reached only once every command caused before it
        was appended."""
        covered = part.released_to
        sends, part.outstanding_sends = part.outstanding_sends, []
        if sends:
            _done, pending = await asyncio.wait(sends, timeout=self.append_timeout)
            if pending:
                part.outstanding_sends[:0] = sends  # the next round waits for them again
                raise TimeoutError("commands for other aggregates not acknowledged in time")
        if any(send.exception() is not None for send in sends):
            # A command for another aggregate was lost: a restore from the last checkpoint sends it again.
            self._fail(part, "a command for another aggregate was not appended", producer_broken=True)
            return
        dirty, part.dirty = part.dirty, set()
        try:
            deliveries = []
            for key in dirty:
                image = part.confirmed.get(key)
                if image is None:
                    continue
                value = orjson.dumps({**image.to_dict(key), "token": part.token})
                records: list[tuple[bytes, bytes | None]] = list(
                    image_records(key.encode(), value, self.settings.snapshot_part_bytes)
                )
                # Parts a larger image of the key left behind go too, so compaction can drop them.
                parts = len(records) - 1  # a head follows parts; an image in one record has none
                stale = range(parts, part.image_parts.get(key, 0))
                part.image_parts[key] = parts
                records += [(part_key(key.encode(), i), None) for i in stale]
                for record_key, record_value in records:
                    deliveries.append(
                        await self._producer.send(self.state_topic, record_value, key=record_key, partition=part.number)
                    )
            if part.failed:
                return
            # Past our own marker, and no newer one of our scope (we would have failed): our token is in force.
            tokens = {**part.counting_at(covered), self.scope: part.token}
            mark = orjson.dumps(checkpoint(covered, part.token, tokens, part.snapshots_seen))
            deliveries.append(
                await self._producer.send(self.state_topic, mark, key=CHECKPOINT_KEY, partition=part.number)
            )
            _done, pending = await asyncio.wait(deliveries, timeout=self.append_timeout)
            if pending or any(delivery.exception() is not None for delivery in deliveries):
                raise RuntimeError("the snapshot was not acknowledged")
            log.debug("snapshot written", partition=part.number, keys=len(dirty), covered=covered)
        except BaseException:
            part.dirty |= dirty
            raise

    # --- timers --------------------------------------------------------------------------------

    def _arm(self, part: _Partition, key: str, timers: list[Any]) -> None:
        known = {timer.due for timer in part.timers.get(key, [])}
        if timers:
            part.timers[key] = timers
            # Only new due times go on the heap: a device that updates often does not grow it.
            for due in {timer.due for timer in timers} - known:
                heapq.heappush(self._timer_heap, (due, part.number, key))
            self._timer_wakeup.set()
        else:
            part.timers.pop(key, None)

    async def _timer_loop(self) -> None:
        while self._running:
            now = clock.now()
            while self._timer_heap and self._timer_heap[0][0] <= now:
                _due, number, key = heapq.heappop(self._timer_heap)
                part = self._parts.get(number)
                if part is None or part.failed:
                    continue
                for timer in part.timers.get(key, []):
                    if timer.due <= now:
                        self._enqueue(part, _Request(key, timer.command, command_id=f"timer-{uuid.uuid4().hex}"))
            self._timer_wakeup.clear()
            sleep = MAX_TIMER_SLEEP
            if self._timer_heap:
                sleep = min(sleep, max(0.0, self._timer_heap[0][0] - clock.now()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._timer_wakeup.wait(), timeout=sleep)


def _copy(image: KeyImage) -> KeyImage:
    return KeyImage(image.seq, image.state, dict(image.applied))


def _outbox(step: _Step) -> list[dict[str, Any]]:
    request = step.request
    return [
        {
            "key": send.key,
            "command": serialisable_message(send.command),
            "reply_to": request.reply_to if send.forward_reply else None,
            "trace": _caused_step(request.trace, index),
        }
        for index, send in enumerate(step.decision.sends)
    ]


def _passes_on(request: _Request, decision: Decision) -> bool:
    """A decision that records nothing and hands the request itself on, reply and all, to other keys (a
    group checking that it exists and passing a join to the thing): there is nothing to append for it."""
    return (
        request.reply_to is not None
        and not decision.events
        and bool(decision.sends)
        and all(send.forward_reply for send in decision.sends)
    )


def _ignore_failure(delivery: asyncio.Future[Any]) -> None:
    if not delivery.cancelled():
        delivery.exception()  # retrieved: the caller of a lost hand-on times out and retries


def _caused_step(trace: dict[str, Any] | None, index: int) -> dict[str, Any] | None:
    """The trace a caused command carries on: its own step, so that its report names its cause (bus.Effects)."""
    if trace is None:
        return None
    return {**trace, "step": f"{trace.get('step', '')}.{index}"}


def _outbox_chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The outbox in pieces of at most OUTBOX_CHUNK_BYTES: a job released to thousands of things sends a
    command to each, and no single record may grow with the fleet."""
    if len(entries) <= SMALL_OUTBOX:
        return [entries]
    chunks: list[list[dict[str, Any]]] = [[]]
    size = 0
    for entry in entries:
        entry_size = len(orjson.dumps(entry))
        if chunks[-1] and size + entry_size > OUTBOX_CHUNK_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += entry_size
    return chunks


def _records(part: _Partition, step: _Step) -> tuple[list[tuple[bytes, bytes]], list[tuple[int, list[dict[str, Any]]]]]:
    """The events topic records of a decision (one per event, the outbox on the last and, when it is large,
    on outbox records after it), and which record carries which part of the outbox."""
    request, decision = step.request, step.decision
    if step.touched is None:
        return [], []
    key, after = step.touched
    first_seq = after.seq - len(decision.events) + 1
    common: dict[str, Any] = {"key": key, "id": request.command_id, "scope": part.scope, "owner": part.token}
    if request.cause is not None:
        common["cause"] = [request.cause[0], *request.cause[1]]
    records = [
        {**serialisable_message(event), **common, "seq": first_seq + i} for i, event in enumerate(decision.events)
    ]
    outboxes: list[tuple[int, list[dict[str, Any]]]] = []
    if decision.sends:
        chunks = _outbox_chunks(_outbox(step))
        if records:
            records[-1]["outbox"] = chunks[0]
            outboxes.append((len(records) - 1, chunks[0]))
            chunks = chunks[1:]
        for chunk in chunks:
            records.append({"outbox": chunk, "key": key, "scope": part.scope, "owner": part.token})
            outboxes.append((len(records) - 1, chunk))
    serialised = [(key.encode() if "type" in r else OUTBOX_KEY, orjson.dumps(r)) for r in records]
    return serialised, outboxes


def _command_request(record: Any) -> _Request:
    envelope = orjson.loads(record.value)
    command = from_message(envelope)
    if not isinstance(envelope.get("key"), str):
        raise ValueError("the envelope names no key")
    aggregate_for(envelope["key"])  # raises for a key no aggregate owns
    cause = envelope.get("cause")
    return _Request(
        key=envelope["key"],
        command=command,
        command_id=envelope.get("id", ""),
        reply_to=envelope.get("reply_to"),
        trace=envelope.get("trace"),
        positions=envelope.get("positions") or {},
        cause=(cause[0], (cause[1], cause[2])) if cause else ("c", (record.offset, 0)),
        command_offset=record.offset,
    )


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps rebalances short: newly assigned partitions stay paused until taken in the background."""

    def __init__(self, runtime: DeciderRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # Partitions are kept until the new assignment is known: most come back to the same member. One
        # that goes elsewhere is served until then at no risk, since its new owner's marker fences us.
        return None

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        runtime = self.runtime
        numbers = {tp.partition for tp in assigned}
        for number in [n for n in runtime._unserved_since if n not in numbers]:
            del runtime._unserved_since[number]  # another member's to serve now
        for number, task in list(runtime._acquiring.items()):
            if number not in numbers:
                task.cancel()
        for number in [n for n in runtime._parts if n not in numbers]:
            runtime._background(runtime._release(number, handover=True))
        new = [tp for tp in assigned if tp.partition not in runtime._parts and tp.partition not in runtime._acquiring]
        if new:
            runtime._consumer.pause(*new)
            runtime._assigned([tp.partition for tp in new])
