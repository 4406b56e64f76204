from __future__ import annotations

from iotjobs.runtime import eventloop, logs, security
from iotjobs.runtime.settings import Settings
from iotjobs.wire.http_app import serve
from services.dataplane.app import create_app


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    security.check_at_start(settings, "dataplane")
    eventloop.install(settings)
    serve(create_app(settings), settings, settings.dataplane_host, settings.dataplane_port)


if __name__ == "__main__":
    main()
