"""Read-your-writes: wait until the projector has applied the events a write produced."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from iotjobs.runtime import codec
from iotjobs.runtime.envelope import Positions

NOTIFY_CHANNEL = "iotjobs_projected"


class ProjectionTimeout(Exception):
    pass


class ProjectionWaiter:
    def __init__(self, conn: asyncpg.Connection, topic: str) -> None:
        self.conn = conn
        self.topic = topic
        self._applied: dict[str, int] = {}
        self._changed = asyncio.Condition()

    async def start(self) -> None:
        await self.conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        rows = await self.conn.fetch(
            "SELECT partition, next_offset FROM projector_offsets WHERE topic = $1", self.topic
        )
        for row in rows:
            self._note(str(row["partition"]), row["next_offset"])

    async def stop(self) -> None:
        await self.conn.remove_listener(NOTIFY_CHANNEL, self._on_notify)

    def _note(self, partition: str, next_offset: int) -> None:
        self._applied[partition] = max(next_offset, self._applied.get(partition, 0))

    def _on_notify(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        message = codec.loads(payload.encode())
        if message.get("topic") != self.topic:
            return
        for partition, next_offset in message["offsets"].items():
            self._note(partition, next_offset)
        asyncio.get_running_loop().create_task(self._wake())

    async def _wake(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _caught_up(self, positions: Positions) -> bool:
        return all(self._applied.get(p, 0) > offset for p, offset in positions.items())

    async def wait(self, positions: Positions, timeout: float) -> None:
        if self._caught_up(positions):
            return
        try:
            async with self._changed:
                await asyncio.wait_for(self._changed.wait_for(lambda: self._caught_up(positions)), timeout)
        except TimeoutError:
            raise ProjectionTimeout(f"read models did not reach {positions} in {timeout}s") from None
