"""Read-your-writes: wait until the projector has applied the events a write produced."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from iotjobs.runtime import codec, logs, pg
from iotjobs.runtime.envelope import Positions

NOTIFY_CHANNEL = "iotjobs_projected"
APPLICATION_NAME = "iotjobs-control-waiter"
log = logs.get("iotjobs.projection")


class ProjectionTimeout(Exception):
    pass


class ProjectionWaiter:
    """Follows the projector's progress on its own connection, reconnecting if Postgres drops it."""

    def __init__(self, dsn: str, topic: str, application_name: str = APPLICATION_NAME) -> None:
        self.dsn = dsn
        self.topic = topic
        self.application_name = application_name
        self.conn: asyncpg.Connection | None = None
        self._applied: dict[str, int] = {}
        self._changed = asyncio.Condition()
        self._reconnecting: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        conn = await pg.connect(self.dsn, server_settings={"application_name": self.application_name})
        conn.add_termination_listener(self._on_terminated)
        await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
        # Offsets are read after listening starts, so no notification falls in between.
        rows = await conn.fetch("SELECT partition, next_offset FROM projector_offsets WHERE topic = $1", self.topic)
        for row in rows:
            self._note(str(row["partition"]), row["next_offset"])
        self.conn = conn
        await self._wake()

    async def stop(self) -> None:
        self._stopped = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            await asyncio.gather(self._reconnecting, return_exceptions=True)
        if self.conn is not None and not self.conn.is_closed():
            await self.conn.close()

    def _on_terminated(self, _conn: Any) -> None:
        if not self._stopped:
            self._reconnecting = asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        while not self._stopped:
            await asyncio.sleep(0.5)
            try:
                await self.start()
                return
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
                log.warning("waiting for PostgreSQL to follow the projector", error=repr(err))

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
