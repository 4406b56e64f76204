"""How requests reach the owner of their key, and how replies come back to HTTP callers.

A request for a key this process owns goes straight to the local runtime; any other is appended to the
key's command topic, and its owner answers on the replies topic, keyed by the waiting instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from iotjobs.domain.catalog import from_message, serialisable_message
from iotjobs.runtime import logs
from iotjobs.runtime.deciders import DeciderRuntime, NotOwner, Unavailable
from iotjobs.runtime.envelope import Positions, merge_positions
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partition_for, partitions_of

log = logs.get("iotjobs.bus")


class ReplyTimeout(Exception):
    """The owner of the key did not answer in time (Kafka or the owner may be unwell, or restarting)."""


@dataclass
class Effects:
    """What a traced write has caused so far: decisions still to report, and where their events are.

    Every decision reports its step of the trace (the write itself is "", the i-th command a step caused
    is `{step}.{i}`) and how many commands it caused. A report can overtake its cause's (a command and a
    report travel different ways: a topic, or memory): it waits until that one is counted, so the count
    of decisions outstanding never reaches zero while one is still on its way. A step reported again
    (a command sent again after an owner's restart) counts once."""

    outstanding: int = 1
    reports: int = 0
    positions: Positions = field(default_factory=dict)
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    counted: set[str] = field(default_factory=set)
    early: dict[str, list[tuple[str, Positions, int]]] = field(default_factory=dict)
    """Reports that came before their cause's, by the step they wait for."""

    def report(self, step: str, positions: Positions, caused: int) -> None:
        cause = step.rpartition(".")[0]
        if step and cause not in self.counted:
            self.early.setdefault(cause, []).append((step, positions, caused))
            return
        ready = [(step, positions, caused)]
        while ready:
            step, positions, caused = ready.pop()
            if step in self.counted:
                continue
            self.counted.add(step)
            self.outstanding += caused - 1
            self.reports += 1
            self.positions = merge_positions(self.positions, positions)
            ready.extend(self.early.pop(step, []))


class CommandBus:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics.of(settings)
        self.instance = f"{settings.instance_id}-{uuid.uuid4().hex[:8]}"
        self.local: DeciderRuntime | None = None
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            request_timeout_ms=int(settings.request_timeout_seconds * 1000),
        )
        self._replies: AIOKafkaConsumer | None = None
        self._waiting: dict[str, asyncio.Future[tuple[Any, Positions]]] = {}
        self._effects: dict[str, Effects] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()
        self._replies = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20
        )
        await self._replies.start()
        # Replies are keyed by the instance they are for and land where the default partitioner puts that
        # key: only that partition holds ours, and following the others would wake this consumer for
        # every reply to every other instance.
        everyone = await partitions_of(self.settings.kafka_bootstrap, self.topics.replies)
        tps = [TopicPartition(self.topics.replies, partition_for(self.instance, len(everyone)))]
        self._replies.assign(tps)
        await self._replies.seek_to_end(*tps)
        for tp in tps:
            await self._replies.position(tp)  # resolve now, so no reply after this moment is missed
        self._task = asyncio.create_task(self._read_replies(), name="replies")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._replies:
            await self._replies.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._producer.stop(), 5.0)
        for future in self._waiting.values():
            future.cancel()

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def enqueue(
        self, key: str, command: Any, reply_to: dict[str, Any] | None = None, trace: dict[str, Any] | None = None
    ) -> asyncio.Future[Any]:
        """Append a command in call order without waiting for Kafka; the future settles on delivery."""
        envelope = {"key": key, "id": uuid.uuid4().hex, "reply_to": reply_to, "positions": {}, "trace": trace}
        delivery: asyncio.Future[Any] = await self._producer.send(
            self.topics.commands_for(key),
            orjson.dumps({**envelope, **serialisable_message(command)}),
            key=key.encode(),
            partition=partition_for(key, self.settings.partitions),
        )
        return delivery

    async def request(
        self, key: str, command: Any, timeout: float | None = None, *, effects: bool = False
    ) -> tuple[Any, Positions]:
        """The decider's reply to a command and the event positions behind it, within the timeout.

        With `effects`, the positions are those of every decision the command caused, across aggregates,
        once they are all in the log (or `consistency_max_things` of them, or at the timeout).
        """
        loop = asyncio.get_running_loop()
        budget = timeout or self.settings.request_timeout_seconds
        deadline = loop.time() + budget
        correlation = uuid.uuid4().hex
        future: asyncio.Future[tuple[Any, Positions]] = loop.create_future()
        self._waiting[correlation] = future
        reply_to = {"kind": "kafka", "instance": self.instance, "id": correlation}
        trace = None
        if effects:
            trace = {"instance": self.instance, "id": correlation}
            self._effects[correlation] = Effects()
        try:
            async with asyncio.timeout_at(deadline):
                try:
                    if self.local is None:
                        raise NotOwner(key)
                    durable = self.local.submit(key, command, reply_to, trace)
                    # The reply (or its failure) comes through `future`; this one only says it is durable.
                    durable.add_done_callback(_settled_quietly)
                except NotOwner:
                    await (await self.enqueue(key, command, reply_to, trace))
                reply, positions = await future
        except TimeoutError:
            raise ReplyTimeout(f"no reply for {type(command).__name__} on {key} in time") from None
        except (Unavailable, KafkaError) as err:
            raise ReplyTimeout(f"{type(command).__name__} on {key} could not be made durable: {err}") from None
        finally:
            self._waiting.pop(correlation, None)
        if trace is not None:
            # Effects are waited for two thirds of the budget at most: the rest is left for projection.
            effects_deadline = deadline - budget / 3
            positions = merge_positions(positions, await self._effects_of(correlation, effects_deadline))
        return reply, positions

    async def _effects_of(self, correlation: str, deadline: float) -> Positions:
        effects = self._effects[correlation]
        try:
            async with asyncio.timeout_at(deadline):
                await effects.settled.wait()
        except TimeoutError:
            # The write itself is done; what it caused is still on its way (Kafka slow, an owner moving).
            log.warning("effects of a write not all in the log in time", outstanding=effects.outstanding)
        finally:
            self._effects.pop(correlation, None)
        return effects.positions

    def progress(self, trace: str, positions: Positions, caused: int, step: str = "") -> None:
        effects = self._effects.get(trace)
        if effects is None:
            return
        effects.report(step, positions, caused)
        if effects.outstanding <= 0 or effects.reports >= self.settings.consistency_max_things:
            effects.settled.set()

    def resolve(self, correlation: str, reply: Any, positions: Positions) -> None:
        future = self._waiting.get(correlation)
        if future is not None and not future.done():
            future.set_result((reply, positions))

    def fail(self, correlation: str, error: Exception) -> None:
        future = self._waiting.get(correlation)
        if future is not None and not future.done():
            future.set_exception(error)

    async def _read_replies(self) -> None:
        assert self._replies is not None
        while True:
            try:
                batches = await self._replies.getmany(timeout_ms=500)
            except KafkaError as err:
                log.warning("reply fetch failed", error=str(err))
                await asyncio.sleep(0.2)
                continue
            for records in batches.values():
                for record in records:
                    if record.key is None or record.key.decode() != self.instance:
                        continue
                    try:
                        envelope = orjson.loads(record.value)
                        if "progress" in envelope:  # alone, or riding with the reply to the same write
                            step = envelope.get("step", "")
                            self.progress(envelope["progress"], envelope["positions"], envelope["caused"], step)
                        if "correlation" in envelope:
                            positions = envelope.get("positions") or {}
                            self.resolve(envelope["correlation"], from_message(envelope), positions)
                    except Exception:
                        log.exception("unreadable reply skipped", offset=record.offset)


def _settled_quietly(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so an unavailable partition is not reported twice
