"""The device plane: MQTT ingress and the thing deciders (the `iot-jobs-data` HTTPS API comes later)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from iotjobs.runtime.bus import CommandBus
from iotjobs.runtime.deciders import DeciderRuntime
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, ensure_topics
from iotjobs.wire.http_app import error_middleware
from iotjobs.wire.http_errors import DATA
from services.dataplane.mqtt_ingress import MqttIngress

SETTINGS_KEY = web.AppKey("settings", Settings)
RUNTIME_KEY = web.AppKey("runtime", DeciderRuntime)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    topics = Topics.of(settings)
    await ensure_topics(settings)
    bus = CommandBus(settings, want_replies=False)
    await bus.start()
    ingress = MqttIngress(settings, bus, client_id=f"{settings.topic_prefix}-dataplane-ingress")
    runtime = DeciderRuntime(
        settings,
        role="dataplane",
        command_topic=topics.thing_commands,
        state_topic=topics.thing_state,
        on_committed=ingress.on_committed,
    )
    await ingress.start()
    await runtime.start()
    app[RUNTIME_KEY] = runtime
    try:
        yield
    finally:
        await runtime.stop()
        await ingress.stop()
        await bus.stop()


async def health(request: web.Request) -> web.Response:
    """200 once every assigned partition is owned: the readiness probe of compose and Kubernetes."""
    runtime = request.app[RUNTIME_KEY]
    body = {"ready": runtime.ready, "partitions": runtime.owned_partitions}
    return web.json_response(body, status=200 if runtime.ready else 503)


def create_app(settings: Settings) -> web.Application:
    app = web.Application(middlewares=[error_middleware(DATA)])
    app[SETTINGS_KEY] = settings
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/health", health)
    return app
