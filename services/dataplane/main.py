from __future__ import annotations

import logging

from aiohttp import web

from iotjobs.runtime import eventloop, logs
from iotjobs.runtime.settings import Settings
from services.dataplane.app import create_app


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    eventloop.install(settings)
    web.run_app(
        create_app(settings),
        host=settings.dataplane_host,
        port=settings.dataplane_port,
        print=None,
        access_log=logging.getLogger("aiohttp.access") if settings.access_log == "on" else None,
    )


if __name__ == "__main__":
    main()
