"""Writes over HTTP, answered as the consistency setting says: once every effect is readable, or once decided."""

from __future__ import annotations

import asyncio
from typing import Any

from iotjobs.domain.errors import Rejection
from iotjobs.runtime.bus import CommandBus, ReplyTimeout
from iotjobs.runtime.projection import ProjectionTimeout, ProjectionWaiter
from iotjobs.runtime.settings import Settings
from iotjobs.wire.http_errors import from_rejection, unavailable


async def consistent_write(
    bus: CommandBus,
    projection: ProjectionWaiter | None,
    settings: Settings,
    key: str,
    command: Any,
    errors: dict[str, tuple[str, int]],
) -> Any:
    """A write through the bus, answered as the consistency setting says, within one request timeout."""
    strict = settings.consistency == "strict" and projection is not None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.request_timeout_seconds
    try:
        reply, positions = await bus.request(key, command, effects=strict)
    except ReplyTimeout as exc:
        raise unavailable(f"{exc}; try again") from None
    if isinstance(reply, Rejection):
        raise from_rejection(reply, errors)
    if strict and projection is not None:
        try:
            await projection.wait(positions, max(0.0, deadline - loop.time()))
        except ProjectionTimeout as exc:
            raise unavailable(f"the write succeeded but is not readable yet: {exc}") from None
    return reply
