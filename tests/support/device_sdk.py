"""The AWS IoT Device SDK v2 as a device: IotJobsClientV2 over MQTT 5, with its notify-next stream."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable
from typing import Any

from awscrt import mqtt5, mqtt_request_response
from awsiot import ServiceStreamOptions, iotjobs

from tests.support.stack import Stack

TIMEOUT = 15


Connected = Callable[[Any], None]


class V2Device:
    """A device on the SDK's IotJobsClientV2. `connect_with(on_connected)` builds its MQTT 5 client (e.g.
    `mqtt5_client_builder.mtls_from_path`); by default a plain connection to the stack's broker."""

    def __init__(
        self, stack: Stack, thing: str, connect_with: Callable[[Connected], mqtt5.Client] | None = None
    ) -> None:
        self.thing = thing
        self.connected = threading.Event()
        on_connected: Connected = lambda _event: self.connected.set()  # noqa: E731
        self.client = (connect_with or functools.partial(_plain, stack, thing))(on_connected)
        self.next_events: list[Any] = []
        self.lock = threading.Lock()

    def __enter__(self) -> V2Device:
        self.client.start()
        assert self.connected.wait(TIMEOUT), "MQTT 5 connection"
        self.jobs = iotjobs.IotJobsClientV2(
            self.client,
            mqtt_request_response.ClientOptions(
                max_request_response_subscriptions=4,
                max_streaming_subscriptions=2,
                operation_timeout_in_seconds=TIMEOUT,
            ),
        )
        opened = threading.Event()
        self.stream = self.jobs.create_next_job_execution_changed_stream(
            iotjobs.NextJobExecutionChangedSubscriptionRequest(thing_name=self.thing),
            ServiceStreamOptions(
                incoming_event_listener=self._on_next,
                subscription_status_listener=lambda _event: opened.set(),
            ),
        )
        self.stream.open()
        assert opened.wait(TIMEOUT), "notify-next stream"
        return self

    def __exit__(self, *_exc: object) -> None:
        self.client.stop()

    def _on_next(self, event: iotjobs.NextJobExecutionChangedEvent) -> None:
        with self.lock:
            self.next_events.append(event)

    def nexts(self) -> list[Any]:
        with self.lock:
            return list(self.next_events)


def _plain(stack: Stack, thing: str, on_connected: Connected) -> mqtt5.Client:
    return mqtt5.Client(
        mqtt5.ClientOptions(
            host_name=stack.settings.mqtt_host,
            port=stack.settings.mqtt_port,
            connect_options=mqtt5.ConnectPacket(
                client_id=f"{thing}-{uuid.uuid4().hex[:6]}", keep_alive_interval_sec=30
            ),
            on_lifecycle_event_connection_success_fn=on_connected,
        )
    )
