"""What every control-plane handler uses: the bus, the read models and read-your-writes."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from iotjobs.domain.arns import Arns
from iotjobs.domain.errors import Rejection
from iotjobs.runtime.bus import CommandBus, ReplyTimeout
from iotjobs.runtime.projection import ProjectionTimeout, ProjectionWaiter
from iotjobs.runtime.settings import Settings
from iotjobs.wire.http_errors import CONTROL, from_rejection, unavailable


@dataclass
class Control:
    settings: Settings
    bus: CommandBus
    pool: asyncpg.Pool
    projection: ProjectionWaiter
    arns: Arns

    async def write(self, key: str, command: Any) -> Any:
        """Send a command, raise its rejection, and return its reply once the read models show it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.request_timeout_seconds
        try:
            reply, positions = await self.bus.request(key, command)
        except ReplyTimeout as exc:
            raise unavailable(f"{exc}; try again") from None
        if isinstance(reply, Rejection):
            raise from_rejection(reply, CONTROL)
        try:
            await self.projection.wait(positions, max(0.0, deadline - loop.time()))
        except ProjectionTimeout as exc:
            raise unavailable(f"the write succeeded but is not readable yet: {exc}") from None
        return reply


CONTROL_KEY = web.AppKey("control", Control)


def control(request: web.Request) -> Control:
    return request.app[CONTROL_KEY]
