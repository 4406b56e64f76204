"""What every control-plane handler uses: the bus, the read models and read-your-writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp import web

from iotjobs.domain.arns import Arns
from iotjobs.runtime.bus import CommandBus
from iotjobs.runtime.projection import ProjectionWaiter
from iotjobs.runtime.settings import Settings
from iotjobs.wire.http_errors import CONTROL
from iotjobs.wire.writes import consistent_write


@dataclass
class Control:
    settings: Settings
    bus: CommandBus
    pool: asyncpg.Pool
    projection: ProjectionWaiter
    arns: Arns

    async def write(self, key: str, command: Any) -> Any:
        """Send a command and raise its rejection. In strict consistency the reply waits until the read
        models show every effect of the write; in eventual consistency it comes once the write is decided."""
        return await consistent_write(self.bus, self.projection, self.settings, key, command, CONTROL)


CONTROL_KEY = web.AppKey("control", Control)


def control(request: web.Request) -> Control:
    return request.app[CONTROL_KEY]
