"""What the dashboard's event stream pushes: one poll of the read models per interval, shared by every open
stream, and each change fanned out to them.

The poll runs only while a stream is open, and a subscriber hears a snapshot only when it differs from the
last one, so an idle dashboard costs nothing and a busy one costs one query per interval however many
browsers watch.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from iotjobs.runtime import logs

log = logs.get("iotjobs.dashboard")

Snapshot = Callable[[], Awaitable[bytes]]
"""Reads the read models and answers the serialised state the stream pushes."""

QUEUE_DEPTH = 2
"""Snapshots a slow subscriber may have waiting; past that it skips to the newest (each one is whole)."""


class Feed:
    def __init__(self, snapshot: Snapshot, interval_seconds: float) -> None:
        self._snapshot = snapshot
        self._interval = interval_seconds
        self._subscribers: set[asyncio.Queue[bytes | None]] = set()
        self._latest: bytes | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[asyncio.Queue[bytes | None]]:
        """A queue of snapshots, the current one first; None when the service shuts down."""
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(QUEUE_DEPTH)
        if self._closed:
            queue.put_nowait(None)
            yield queue
            return
        self._subscribers.add(queue)
        if self._latest is not None:
            queue.put_nowait(self._latest)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._poll(), name="dashboard-feed")
        try:
            yield queue
        finally:
            self._subscribers.discard(queue)
            if not self._subscribers and self._task is not None:
                self._task.cancel()
                self._task = None
                self._latest = None  # nobody watched the changes since: the next subscriber reads afresh

    async def close(self) -> None:
        """End every stream: an open stream would otherwise hold the server's shutdown for its whole grace."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for queue in self._subscribers:
            _offer(queue, None)

    async def _poll(self) -> None:
        while True:
            try:
                current = await self._snapshot()
            except Exception as err:
                # The read models' database restarting must not end the streams: the browsers keep the last
                # picture and the next poll tries again.
                log.warning("dashboard poll failed", error=repr(err))
            else:
                if current != self._latest:
                    self._latest = current
                    for queue in self._subscribers:
                        _offer(queue, current)
            await asyncio.sleep(self._interval)


def _offer(queue: asyncio.Queue[bytes | None], item: bytes | None) -> None:
    if queue.full():
        queue.get_nowait()  # an older snapshot the newer one replaces
    queue.put_nowait(item)
