"""How requests enter the log: commands keyed by aggregate, and replies back to HTTP callers."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from iotjobs.runtime import codec, logs
from iotjobs.runtime.envelope import Positions, command_envelope
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, partitions_of

log = logs.get("iotjobs.bus")


class ReplyTimeout(Exception):
    """The owner of the key did not answer in time (it may be restarting)."""


class CommandBus:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.topics = Topics.of(settings)
        self.instance = f"{settings.instance_id}-{uuid.uuid4().hex[:8]}"
        self._producer = AIOKafkaProducer(
            bootstrap_servers=settings.kafka_bootstrap, enable_idempotence=True, acks="all", linger_ms=0
        )
        self._replies: AIOKafkaConsumer | None = None
        self._waiting: dict[str, asyncio.Future[tuple[Any, Positions]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._producer.start()
        self._replies = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            isolation_level="read_committed",
            fetch_max_wait_ms=20,
        )
        await self._replies.start()
        tps = await partitions_of(self._replies, self.topics.replies)
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
        await self._producer.stop()
        for future in self._waiting.values():
            future.cancel()

    async def send(self, key: str, command: Any, reply_to: dict[str, Any] | None = None) -> None:
        envelope = command_envelope(key, str(uuid.uuid4()), reply_to)
        await self._producer.send_and_wait(
            self.topics.commands_for(key), key=key.encode(), value=codec.encode_message(command, **envelope)
        )

    async def enqueue(self, key: str, command: Any, reply_to: dict[str, Any] | None = None) -> asyncio.Future[Any]:
        """Append a command in call order without waiting for Kafka; the future settles on delivery."""
        envelope = command_envelope(key, str(uuid.uuid4()), reply_to)
        delivery: asyncio.Future[Any] = await self._producer.send(
            self.topics.commands_for(key), key=key.encode(), value=codec.encode_message(command, **envelope)
        )
        return delivery

    async def request(self, key: str, command: Any, timeout: float | None = None) -> tuple[Any, Positions]:
        """Send a command and wait for its decider's reply (and the event positions behind it)."""
        correlation = uuid.uuid4().hex
        future: asyncio.Future[tuple[Any, Positions]] = asyncio.get_running_loop().create_future()
        self._waiting[correlation] = future
        try:
            await self.send(key, command, {"kind": "kafka", "instance": self.instance, "id": correlation})
            return await asyncio.wait_for(future, timeout or self.settings.request_timeout_seconds)
        except TimeoutError:
            raise ReplyTimeout(f"no reply for {type(command).__name__} on {key}") from None
        finally:
            self._waiting.pop(correlation, None)

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
                    reply, envelope = codec.decode_message(record.value)
                    future = self._waiting.get(envelope["correlation"])
                    if future is not None and not future.done():
                        future.set_result((reply, envelope.get("positions") or {}))
