"""Publishing at QoS 1 through gmqtt without losing what the broker's receive window cannot take yet."""

from __future__ import annotations

import asyncio
from collections import deque

from gmqtt import Client

from iotjobs.runtime import logs, metrics

log = logs.get("iotjobs.mqtt")

QOS = 1
WINDOW_RETRY_SECONDS = 0.005
"""How soon a publish the broker's receive window refused is tried again."""


class Outgoing:
    """Replies and notifications, published at QoS 1 in the order they are released.

    The broker's Receive Maximum bounds our unacknowledged publishes, and gmqtt refuses one past it
    (OverflowError) rather than wait: a job released to a thousand things at once would lose notifications.
    What does not fit waits here, in order, and goes out as acknowledgements free the window.
    """

    def __init__(self, client: Client, role: str) -> None:
        self.client = client
        self.waiting: deque[tuple[str, bytes]] = deque()
        self._retry: asyncio.TimerHandle | None = None
        metrics.mqtt_outgoing_waiting.labels(role).set_function(lambda: len(self.waiting))

    def publish(self, topic: str, payload: bytes) -> None:
        self.waiting.append((topic, payload))
        if self._retry is None:
            self._drain()

    def _drain(self) -> None:
        self._retry = None
        while self.waiting:
            topic, payload = self.waiting[0]
            try:
                self.client.publish(topic, payload, qos=QOS)
            except OverflowError:
                self._retry = asyncio.get_running_loop().call_later(WINDOW_RETRY_SECONDS, self._drain)
                return
            except Exception:
                log.exception("publishing to the broker failed; the message is dropped", topic=topic)
            self.waiting.popleft()
