"""Real clients pointed at a stack: boto3 with dummy credentials, and a plain MQTT device."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import boto3
import orjson
from botocore.config import Config
from gmqtt import Client
from gmqtt.mqtt.constants import MQTTv311

from tests.support.stack import Stack

ACCOUNT = "123456789012"
REGION = "us-east-1"


def iot_client(
    stack: Stack, endpoint_url: str | None = None, key: tuple[str, str] = ("x", "y"), config: Config | None = None
) -> Any:
    """The control plane (`iot`), signed with `key` (access key id, secret); `config` adds to the client's."""
    return _client("iot", endpoint_url or stack.control_url, key, config, stack.https_ca)


def data_client(stack: Stack, key: tuple[str, str] = ("x", "y"), config: Config | None = None) -> Any:
    """The device HTTP API (`iot-jobs-data`), as a device using an AWS SDK would call it."""
    return _client("iot-jobs-data", stack.dataplane_url, key, config, stack.https_ca)


def _client(service: str, endpoint_url: str, key: tuple[str, str], config: Config | None, https_ca: str | None) -> Any:
    base = Config(retries={"max_attempts": 1})
    return boto3.client(
        service,
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=key[0],
        aws_secret_access_key=key[1],
        config=base.merge(config) if config is not None else base,
        verify=https_ca,
    )


def thing_arn(name: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/{name}"


def group_arn(name: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:thinggroup/{name}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class MqttDevice:
    """A device speaking the jobs MQTT API with a plain MQTT client (gmqtt)."""

    def __init__(self, stack: Stack, thing_name: str, persistent: bool = False, *, password: str | None = None) -> None:
        """`persistent`: a session the broker keeps (clean session off), as a device that must not miss what
        arrives while it reconnects; the client reconnects by itself after a second. `password`: connect with
        the thing name as username, on a broker that requires it."""
        self.thing = thing_name
        self.host = stack.settings.mqtt_host
        self.port = stack.settings.mqtt_port
        self.client = Client(f"{thing_name}-{uuid.uuid4().hex[:6]}", clean_session=not persistent)
        if persistent:
            self.client.reconnect_delay = 1
        if password is not None:
            self.client.set_auth_credentials(thing_name, password)
        self.client.on_message = self._on_message
        self._replies: dict[str, asyncio.Future[tuple[str, dict[str, Any]]]] = {}
        self.notify: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.notify_next: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.untokened: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.other: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self._subscribed = asyncio.Event()
        self.client.on_subscribe = lambda *_args: self._subscribed.set()

    async def __aenter__(self) -> MqttDevice:
        await self.client.connect(self.host, self.port, version=MQTTv311)
        self.client.subscribe(f"$aws/things/{self.thing}/jobs/#", qos=1)
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.disconnect()

    def _on_message(self, _client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        base = f"$aws/things/{self.thing}/jobs/"
        rest = topic[len(base) :]
        if rest == "notify":
            self.notify.put_nowait(orjson.loads(payload))
        elif rest == "notify-next":
            self.notify_next.put_nowait(orjson.loads(payload))
        elif rest.endswith("/accepted") or rest.endswith("/rejected"):
            body = orjson.loads(payload)
            outcome = rest.rsplit("/", 1)[1]
            future = self._replies.get(body.get("clientToken", ""))
            if future is not None and not future.done():
                future.set_result((outcome, body))
            else:
                self.untokened.put_nowait((topic, body))
        elif not rest.endswith(("/get", "/update", "start-next")) and rest != "get":
            self.other.put_nowait((rest, orjson.loads(payload)))  # e.g. namespaced notifications
        return 0

    def publish_raw(self, suffix: str, payload: bytes) -> None:
        self.client.publish(f"$aws/things/{self.thing}/jobs/{suffix}", payload, qos=1)

    async def request(
        self, suffix: str, body: dict[str, Any] | None = None, timeout: float = 10.0, token: str | None = None
    ) -> tuple[str, dict[str, Any]]:
        """Publish a request and return ('accepted' | 'rejected', payload) of its reply. The same `token` again
        sends the same request again, as a device does that heard nothing back."""
        token = token or uuid.uuid4().hex
        future: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
        self._replies[token] = future
        self.publish_raw(suffix, orjson.dumps({**(body or {}), "clientToken": token}))
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._replies.pop(token, None)

    async def next_notify_next(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.notify_next.get(), timeout)

    async def next_notify(self, timeout: float = 10.0) -> dict[str, Any]:
        return await asyncio.wait_for(self.notify.get(), timeout)


class TopicWatch:
    """A plain MQTT client subscribed (QoS 1) to one topic filter for the length of a block: what arrives, in
    order, as (topic, JSON payload, time.monotonic() of arrival)."""

    def __init__(self, stack: Stack, topic_filter: str) -> None:
        self.host = stack.settings.mqtt_host
        self.port = stack.settings.mqtt_port
        self.topic_filter = topic_filter
        self.seen: list[tuple[str, dict[str, Any], float]] = []
        self.client = Client(f"watch-{uuid.uuid4().hex[:8]}")
        self.client.on_message = self._on_message
        self._subscribed = asyncio.Event()
        self.client.on_subscribe = lambda *_args: self._subscribed.set()

    def _on_message(self, _client: Any, topic: str, payload: bytes, _qos: int, _props: Any) -> int:
        self.seen.append((topic, orjson.loads(payload), time.monotonic()))
        return 0

    async def __aenter__(self) -> TopicWatch:
        await self.client.connect(self.host, self.port)
        self.client.subscribe(self.topic_filter, qos=1)
        await asyncio.wait_for(self._subscribed.wait(), 10)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.client.disconnect()
