"""The device plane: MQTT ingress, the `iot-jobs-data` HTTP API and the thing deciders."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from iotjobs.domain.throttle import Throttle
from iotjobs.runtime.bus import CommandBus
from iotjobs.runtime.deciders import DeciderRuntime
from iotjobs.runtime.projection import ProjectionWaiter
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, ensure_topics
from iotjobs.wire.http_app import CHECKS_KEY, RUNTIME_KEY, SETTINGS_KEY, service_app
from iotjobs.wire.http_errors import DATA
from iotjobs.wire.sigv4 import DATA_SIGNING_NAMES
from services.dataplane import jobs_data_api
from services.dataplane.documents import DeviceDocuments
from services.dataplane.mqtt_ingress import MqttIngress


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    topics = Topics.of(settings)
    await ensure_topics(settings)
    bus = CommandBus(settings)
    await bus.start()
    documents = DeviceDocuments(settings)
    ingress = MqttIngress(settings, bus, documents)
    runtime = DeciderRuntime(
        settings,
        role="dataplane",
        command_topic=topics.thing_commands,
        state_topic=topics.thing_state,
        replies=bus,
        on_released=ingress.on_released,
    )
    bus.local = runtime
    ingress.runtime = runtime
    projection = None
    if settings.consistency == "strict":
        # HTTP device writes answer once their effects (the job's counters, its completion) are readable.
        projection = ProjectionWaiter(settings.pg_dsn, topics.events, "iotjobs-dataplane-waiter")
        await projection.start()
    await ingress.start()
    await runtime.start()
    app[RUNTIME_KEY] = runtime
    app[jobs_data_api.PROJECTION_KEY] = jobs_data_api.Projection(projection)
    app[CHECKS_KEY].update(mqtt=lambda: ingress.ready, replies=lambda: bus.alive)
    app[jobs_data_api.BUS_KEY] = bus
    app[jobs_data_api.DOCUMENTS_KEY] = documents
    app[jobs_data_api.THROTTLE_KEY] = Throttle(settings.device_requests_per_second, settings.device_request_burst)
    try:
        yield
    finally:
        await runtime.stop()
        await ingress.stop()
        await bus.stop()
        if projection is not None:
            await projection.stop()


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, DATA, _resources, DATA_SIGNING_NAMES, plane="dataplane")
    jobs_data_api.add_routes(app)
    return app
