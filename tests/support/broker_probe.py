"""A paho MQTT 5 client that shows what a broker decides: its CONNACK and PUBACK reason codes, what it delivers."""

from __future__ import annotations

import ssl
import threading
from typing import Any

import orjson
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from tests.support.clients import unique
from tests.support.waiting import until_sync

TIMEOUT = 15
NOT_AUTHORIZED = 0x87


class Probe:
    """A paho MQTT 5 client: the broker's answer to its CONNECT and to each QoS 1 PUBLISH, and what it got."""

    def __init__(self, port: int, username: str | None = None, password: str | None = None, **tls: Any) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique("probe"), protocol=paho.MQTTv5)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls:
            self.client.tls_set(**tls)
        self.port = port
        self.connack: ReasonCode | None = None
        self.acks: dict[int, ReasonCode] = {}
        self.received: list[str] = []
        self.answered = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *_args: self.answered.set()
        self.client.on_publish = lambda _c, _u, mid, code, _p: self.acks.__setitem__(mid, code)
        self.client.on_message = lambda _c, _u, message: self.received.append(message.topic)
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_args: self.subscribed.set()

    def _on_connect(self, _c: Any, _u: Any, _flags: Any, code: ReasonCode, _props: Any) -> None:
        self.connack = code
        self.answered.set()

    def __enter__(self) -> Probe:
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self.answered.wait(TIMEOUT), "CONNACK"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, body: dict[str, Any]) -> int:
        """The PUBACK reason code of a QoS 1 publish."""
        mid = self.client.publish(topic, orjson.dumps(body), qos=1).mid
        return int(until_sync(lambda: self.acks.get(mid), TIMEOUT, f"PUBACK of {topic}").value)

    def subscribe(self, topic_filter: str) -> None:
        self.subscribed.clear()
        self.client.subscribe(topic_filter, qos=1)
        assert self.subscribed.wait(TIMEOUT), f"SUBACK of {topic_filter}"


def connack(port: int, username: str | None = None, password: str | None = None, **tls: Any) -> int | None:
    """The CONNACK reason code, or None when the broker closed the connection without one (a TLS client
    it does not accept)."""
    try:
        with Probe(port, username, password, **tls) as probe:
            return None if probe.connack is None else int(probe.connack.value)
    except (ssl.SSLError, ConnectionError):
        return None
