"""Device requests from MQTT to the thing's owner, and replies and notifications back out.

The ingress speaks MQTT 5 to the broker so that a QoS 1 request is acknowledged (PUBACK) only once it is
durable: decided and confirmed in the log by this instance, or handed to the owner's command topic. A
crash before that leaves the request unacknowledged, and the broker redelivers it from the persistent
session. Receive Maximum bounds how many requests the broker has in flight to us, which is the back
pressure: nothing queues without bound. Every (re)connect subscribes again, and readiness reports
whether the session is up.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import time
import uuid
from typing import Any

import orjson
import structlog
from gmqtt import Client
from gmqtt.mqtt.constants import UNLIMITED_RECONNECTS, MQTTv50, PubAckReasonCode

from iotjobs.domain import thing
from iotjobs.domain.errors import DomainError, ErrorKind
from iotjobs.domain.throttle import Throttle
from iotjobs.runtime import clock, logs, metrics
from iotjobs.runtime.bus import CommandBus
from iotjobs.runtime.deciders import DeciderRuntime, NotOwner, Released, Unavailable
from iotjobs.runtime.settings import Settings
from iotjobs.wire import mqtt
from iotjobs.wire.broker_connection import authenticated
from iotjobs.wire.outgoing import Outgoing
from services.dataplane.documents import DeviceDocuments

log = logs.get("iotjobs.mqtt")
access = logs.get("iotjobs.access")

QOS = 1
CONNECT_TIMEOUT = 30.0
RECEIVE_MAXIMUM = 2000
RECONNECT_DELAY = 1
PUBACK_SUCCESS = int(PubAckReasonCode.SUCCESS.value)
PUBACK_FAILED = int(PubAckReasonCode.UNSPECIFIED_ERROR.value)
CONNECTED_CLIENTS_TOPIC = "$SYS/broker/clients/connected"
"""Mosquitto's count of connected clients, for the metrics; a broker without it (or an ACL that refuses it)
leaves the gauge unset and changes nothing else."""


class MqttIngress:
    def __init__(self, settings: Settings, bus: CommandBus, documents: DeviceDocuments) -> None:
        self.settings = settings
        self.bus = bus
        self.documents = documents
        self.runtime: DeciderRuntime | None = None
        group = f"{settings.topic_prefix}-dataplane"
        self.filters = mqtt.ingress_filters(settings.mqtt_ingress, group)
        # direct: one ingress per deployment, whose persistent session the broker keeps across restarts.
        # Shared modes: one session per instance, so each keeps what was in flight to it.
        client_id = group if settings.mqtt_ingress == "direct" else f"{group}-{settings.instance_id}"
        self.client = Client(
            client_id,
            clean_session=False,
            optimistic_acknowledgement=False,
            session_expiry_interval=3600,
            receive_maximum=RECEIVE_MAXIMUM,
        )
        self.client.set_config({"reconnect_retries": UNLIMITED_RECONNECTS, "reconnect_delay": RECONNECT_DELAY})
        self._connection = authenticated(self.client, settings)
        self.client.on_message = self._on_message
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = self._on_subscribe
        self.outgoing = Outgoing(self.client, "dataplane")
        self.throttle = Throttle(settings.device_requests_per_second, settings.device_request_burst)
        self._connected = False
        self._subscribed = False
        self._stopping = False
        self._forwarding: asyncio.Queue[tuple[str, Any, dict[str, Any], asyncio.Future[None]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._access_log = settings.access_log == "on"
        self._request_ids = f"mqtt-{uuid.uuid4().hex[:12]}-"
        self._request_numbers = itertools.count(1)
        self._broker_stats_mid: int | None = None
        metrics.mqtt_session_up.set_function(lambda: 1.0 if self.ready else 0.0)

    @property
    def ready(self) -> bool:
        """The session is up and subscribed, and forwarding to other owners runs."""
        return self._connected and self._subscribed and self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._forward(), name="mqtt-forward")
        await asyncio.wait_for(
            self.client.connect(
                self.settings.mqtt_host, self.settings.mqtt_port, version=MQTTv50, keepalive=30, **self._connection
            ),
            CONNECT_TIMEOUT,
        )

    async def stop(self) -> None:
        self._stopping = True
        await self.client.disconnect()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _on_connect(self, _client: Any, _flags: Any, _rc: Any, _properties: Any) -> None:
        # A broker that restarted without our session, or a client that took our id, left us without
        # subscriptions: subscribing on every connect is what keeps the plane alive.
        self._connected = True
        self._subscribed = False
        for topic_filter in self.filters:
            self.client.subscribe(topic_filter, qos=QOS)
        self._broker_stats_mid = self.client.subscribe(CONNECTED_CLIENTS_TOPIC, qos=0)
        log.info("MQTT session up; subscribing", filters=self.filters)

    def _on_disconnect(self, _client: Any, _packet: Any, _exc: Any = None) -> None:
        self._connected = False
        self._subscribed = False
        if not self._stopping:
            log.warning("MQTT session lost; reconnecting")

    def _on_subscribe(self, _client: Any, mid: Any, granted: Any, _properties: Any) -> None:
        if mid == self._broker_stats_mid:
            if any(code >= 0x80 for code in granted):
                log.info("the broker does not share its client count; the gauge stays unset", granted=granted)
            return
        if all(code < 0x80 for code in granted):
            self._subscribed = True
        else:
            log.error("the broker refused a subscription", granted=granted)

    async def _on_message(self, _client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        """Returns the PUBACK reason code: success only once the request is durable."""
        if topic == CONNECTED_CLIENTS_TOPIC:
            with contextlib.suppress(ValueError):
                metrics.mqtt_connected_clients.set(float(payload))
            return PUBACK_SUCCESS
        began = time.perf_counter()
        topic = mqtt.device_topic(topic)
        done = self._take(topic, payload)
        if done is None:
            self._log_access(topic, began, durable=True)
            return PUBACK_SUCCESS
        try:
            await asyncio.wait_for(done, self.settings.request_timeout_seconds)
        except (Unavailable, TimeoutError) as err:
            # No reply: the device's retry (same clientToken) finds out what happened.
            log.warning("device request not made durable", topic=topic, error=str(err))
            metrics.child(metrics.mqtt_requests, mqtt.operation_of(topic), "unacknowledged").inc()
            self._log_access(topic, began, durable=False)
            return PUBACK_FAILED
        self._log_access(topic, began, durable=True)
        return PUBACK_SUCCESS

    def _log_access(self, topic: str, began: float, *, durable: bool) -> None:
        if self._access_log:
            elapsed_ms = round((time.perf_counter() - began) * 1000, 3)
            operation = mqtt.operation_of(topic)
            access.info("mqtt request", topic=topic, operation=operation, durable=durable, duration_ms=elapsed_ms)

    def _take(self, topic: str, payload: bytes) -> asyncio.Future[None] | None:
        """Hand the request on before any await, which keeps each thing's requests in arrival order."""
        received = time.time()
        # gmqtt runs each message's callback in a task of its own: what is bound here is this request's. A
        # counter names the request: a uuid4 would cost more than the rest of the binding.
        request_id = f"{self._request_ids}{next(self._request_numbers)}"
        try:
            request = mqtt.parse_request(topic, payload)
        except mqtt.MqttRejected as rejected:
            structlog.contextvars.bind_contextvars(request_id=request_id, client_token=rejected.client_token)
            self.publish_reply(rejected.topic, rejected.client_token, rejected.rejection, received)
            return None
        structlog.contextvars.bind_contextvars(
            request_id=request_id,
            thing_name=request.thing_name,
            job_id=getattr(request.command, "job_id", None),
            client_token=request.client_token,
        )
        if not self.throttle.allow(request.thing_name, clock.now()):
            throttled = DomainError(ErrorKind.THROTTLED, f"too many requests for thing {request.thing_name}")
            self.publish_reply(request.topic, request.client_token, throttled.rejection(), received)
            return None
        reply_to = {
            "kind": "mqtt",
            "topic": request.topic,
            "token": request.client_token,
            "via": self.settings.instance_id,
            "at": received,  # the request's arrival: the owner that replies, here or elsewhere, times it
        }
        key = thing.key_for(request.thing_name)
        try:
            if self.runtime is None:
                raise NotOwner(key)
            return self.runtime.submit(key, request.command, reply_to)
        except NotOwner:
            handed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._forwarding.put_nowait((key, request.command, reply_to, handed))
            return handed
        except Unavailable as err:
            busy = DomainError(ErrorKind.THROTTLED, f"{err}; retry later")
            self.publish_reply(request.topic, request.client_token, busy.rejection(), received)
            return None

    async def _forward(self) -> None:
        """Requests for things another instance owns go to the command topic, in arrival order."""
        while True:
            key, command, reply_to, handed = await self._forwarding.get()
            try:
                delivery = await self.bus.enqueue(key, command, reply_to)
            except Exception as err:
                # The device's wait may have timed out already (its future is then cancelled).
                if not handed.done():
                    handed.set_exception(Unavailable(f"cannot hand the request to Kafka: {err!r}"))
                continue
            delivery.add_done_callback(functools.partial(_settle, handed))

    def publish_reply(self, topic: str, client_token: str | None, reply: Any, received: float | None) -> None:
        outcome, body = mqtt.reply_payload(self.documents.for_device(reply), client_token, clock.now())
        self.outgoing.publish(f"{topic}/{outcome}", orjson.dumps(body))
        operation = mqtt.operation_of(topic)
        metrics.child(metrics.mqtt_requests, operation, body["code"] if outcome == "rejected" else outcome).inc()
        if received is not None:
            # Wall clock: a forwarded request arrived at another instance.
            metrics.child(metrics.mqtt_duration, operation).observe(max(0.0, time.time() - received))

    async def on_released(self, released: Released) -> None:
        for reply_to, reply in released.replies:
            if reply_to.get("kind") == "mqtt":
                self.publish_reply(reply_to["topic"], reply_to.get("token"), reply, reply_to.get("at"))
        now = clock.now()
        for effect in released.effects:
            topic, body = mqtt.notification(self.documents.for_device(effect), now)
            self.outgoing.publish(topic, orjson.dumps(body))


def _settle(handed: asyncio.Future[None], delivery: asyncio.Future[Any]) -> None:
    if handed.done():
        return
    if delivery.cancelled():
        handed.set_exception(Unavailable("handing the request to Kafka was cancelled"))
    elif delivery.exception() is not None:
        handed.set_exception(Unavailable(f"Kafka did not take the request: {delivery.exception()!r}"))
    else:
        handed.set_result(None)
