"""UpdateEventConfigurations and DescribeEventConfigurations: which event types `$aws/events/...` carries."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from iotjobs.domain import event_config
from iotjobs.domain.errors import invalid
from iotjobs.wire.http_request import json_body, json_response
from services.control.context import control


def parse_update(body: dict[str, Any]) -> event_config.UpdateEventConfigurations:
    configurations = body.get("eventConfigurations")
    if not isinstance(configurations, dict):
        raise invalid('eventConfigurations must be an object of event types, each {"Enabled": true|false}')
    enabled: dict[str, bool] = {}
    for event_type, configuration in configurations.items():
        if event_type not in event_config.EVENT_TYPES:
            raise invalid(
                f"eventConfigurations names unknown event type '{event_type}'; "
                f"known: {', '.join(event_config.EVENT_TYPES)}"
            )
        value = configuration.get("Enabled") if isinstance(configuration, dict) else None
        if not isinstance(value, bool):
            raise invalid(f"eventConfigurations.{event_type}.Enabled must be true or false")
        enabled[event_type] = value
    return event_config.UpdateEventConfigurations(enabled)


async def update_event_configurations(request: web.Request) -> web.Response:
    ctl = control(request)
    command = parse_update(await json_body(request))
    if command.enabled:
        await ctl.write(event_config.KEY, command)
    return json_response({})


async def describe_event_configurations(request: web.Request) -> web.Response:
    ctl = control(request)
    rows = await ctl.pool.fetch("SELECT event_type, enabled, created_at, updated_at FROM event_configurations")
    enabled = {row["event_type"]: row["enabled"] for row in rows}
    result: dict[str, Any] = {
        "eventConfigurations": {name: {"Enabled": enabled.get(name, False)} for name in event_config.EVENT_TYPES}
    }
    if rows:
        result["creationDate"] = min(row["created_at"] for row in rows)
        result["lastModifiedDate"] = max(row["updated_at"] for row in rows)
    return json_response(result)
