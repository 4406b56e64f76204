from __future__ import annotations

from iotjobs.runtime import eventloop, logs, security
from iotjobs.runtime.settings import Settings
from iotjobs.wire.http_app import serve
from services.control.app import create_app


def main() -> None:
    settings = Settings.from_env()
    logs.configure(settings.log_level, settings.log_format)
    security.check_at_start(settings, "control")
    eventloop.install(settings)
    serve(create_app(settings), settings, settings.control_host, settings.control_port)


if __name__ == "__main__":
    main()
