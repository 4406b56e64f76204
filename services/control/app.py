"""The control plane: the `iot` REST API, and the job and registry deciders."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from iotjobs.domain.arns import Arns
from iotjobs.runtime import pg, test_clock
from iotjobs.runtime.bus import CommandBus
from iotjobs.runtime.deciders import DeciderRuntime
from iotjobs.runtime.projection import ProjectionWaiter
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import Topics, ensure_topics
from iotjobs.wire.http_app import CHECKS_KEY, RUNTIME_KEY, SETTINGS_KEY, service_app
from iotjobs.wire.http_errors import CONTROL
from iotjobs.wire.sigv4 import CONTROL_SIGNING_NAMES
from services.control import clock_api, dashboard_api, history_api
from services.control.context import CONTROL_KEY, Control
from services.control.operations import add_routes


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    topics = Topics.of(settings)
    await ensure_topics(settings)
    bus = CommandBus(settings)
    runtime = DeciderRuntime(
        settings,
        role="control",
        command_topic=topics.control_commands,
        state_topic=topics.control_state,
        replies=bus,
        serves_reads=False,
    )
    bus.local = runtime
    pool = await pg.pool(settings.pg_dsn)
    projection = ProjectionWaiter(settings.pg_dsn, topics.events)
    await projection.start()
    await bus.start()
    await runtime.start()
    app[RUNTIME_KEY] = runtime
    app[CHECKS_KEY]["replies"] = lambda: bus.alive
    app[CONTROL_KEY] = Control(settings, bus, pool, projection, Arns(settings.region, settings.account_id))
    try:
        yield
    finally:
        await runtime.stop()
        await bus.stop()
        await projection.stop()
        await pool.close()


def create_app(settings: Settings) -> web.Application:
    app = service_app(settings, CONTROL, _resources, CONTROL_SIGNING_NAMES, plane="control")
    if test_clock.enabled(settings):
        clock_api.add_routes(app)
    add_routes(app)
    history_api.add_routes(app)
    dashboard_api.add_routes(app)
    return app
