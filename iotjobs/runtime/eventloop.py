"""The event loop every service runs on."""

from __future__ import annotations

import asyncio

import uvloop

from iotjobs.runtime.settings import Settings


def install(settings: Settings) -> None:
    """Make new event loops (aiohttp's `run_app`, `asyncio.run`) the configured kind."""
    if settings.event_loop == "uvloop":
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
