"""Device requests from MQTT onto the thing command topic, and replies and notifications back out.

Requests are handed to Kafka in arrival order and acknowledged (PUBACK) only once Kafka has them, so
with the persistent session the broker redelivers whatever a crash left unacknowledged.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import orjson
from gmqtt import Client
from gmqtt.mqtt.constants import MQTTv311

from iotjobs.domain import thing
from iotjobs.domain.errors import DomainError, ErrorKind
from iotjobs.domain.throttle import Throttle
from iotjobs.runtime import clock, logs
from iotjobs.runtime.bus import CommandBus
from iotjobs.runtime.deciders import Committed
from iotjobs.runtime.settings import Settings
from iotjobs.wire import mqtt

log = logs.get("iotjobs.mqtt")

QOS = 1
CONNECT_TIMEOUT = 30.0


class MqttIngress:
    def __init__(self, settings: Settings, bus: CommandBus) -> None:
        self.settings = settings
        self.bus = bus
        group = f"{settings.topic_prefix}-dataplane"
        self.filters = mqtt.ingress_filters(settings.mqtt_ingress, group)
        # direct: one ingress per deployment, whose persistent session the broker keeps across restarts.
        # Shared modes: one session per instance, so each keeps what was in flight to it.
        client_id = group if settings.mqtt_ingress == "direct" else f"{group}-{settings.instance_id}"
        self.client = Client(client_id, clean_session=False, session_expiry_interval=3600)
        self.client.on_message = self._on_message
        self.throttle = Throttle(settings.device_requests_per_second, settings.device_request_burst)
        self._queue: asyncio.Queue[tuple[bytes, str, asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._forward(), name="mqtt-forward")
        await asyncio.wait_for(
            self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, version=MQTTv311, keepalive=30),
            CONNECT_TIMEOUT,
        )
        for topic_filter in self.filters:
            self.client.subscribe(topic_filter, qos=QOS)

    async def stop(self) -> None:
        await self.client.disconnect()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _on_message(self, _client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        handed_over: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Before any await, which keeps arrival order.
        self._queue.put_nowait((payload, mqtt.device_topic(topic), handed_over))
        await handed_over
        return 0

    async def _forward(self) -> None:
        while True:
            payload, topic, handed_over = await self._queue.get()
            try:
                request = mqtt.parse_request(topic, payload)
            except mqtt.MqttRejected as rejected:
                self.publish_reply(rejected.topic, rejected.client_token, rejected.rejection)
                handed_over.set_result(None)
                continue
            except Exception:
                log.exception("request dropped", topic=topic)
                handed_over.set_result(None)
                continue
            if not self.throttle.allow(request.thing_name, clock.now()):
                throttled = DomainError(ErrorKind.THROTTLED, f"too many requests for thing {request.thing_name}")
                self.publish_reply(request.topic, request.client_token, throttled.rejection())
                handed_over.set_result(None)
                continue
            reply_to = {
                "kind": "mqtt",
                "topic": request.topic,
                "token": request.client_token,
                "via": self.settings.instance_id,
            }
            try:
                delivery = await self.bus.enqueue(thing.key_for(request.thing_name), request.command, reply_to)
            except Exception as exc:
                log.exception("cannot hand request to Kafka", topic=topic)
                handed_over.set_exception(exc)
                continue
            delivery.add_done_callback(functools.partial(_settle, handed_over))

    def publish_reply(self, topic: str, client_token: str | None, reply: Any) -> None:
        outcome, body = mqtt.reply_payload(reply, client_token, clock.now())
        self.client.publish(f"{topic}/{outcome}", orjson.dumps(body), qos=QOS)

    async def on_committed(self, committed: Committed) -> None:
        for reply_to, reply in committed.replies:
            if reply_to.get("kind") == "mqtt":
                self.publish_reply(reply_to["topic"], reply_to.get("token"), reply)
        now = clock.now()
        for effect in committed.effects:
            topic, body = mqtt.notification(effect, now)
            self.client.publish(topic, orjson.dumps(body), qos=QOS)


def _settle(handed_over: asyncio.Future[None], delivery: asyncio.Future[Any]) -> None:
    if handed_over.done():
        return
    if delivery.cancelled():
        handed_over.cancel()
    elif delivery.exception() is not None:
        handed_over.set_exception(delivery.exception())  # type: ignore[arg-type]
    else:
        handed_over.set_result(None)
