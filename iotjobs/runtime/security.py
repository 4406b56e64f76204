"""What a service checks about its own security settings when it starts.

Development mode (the default, and the quick start's) lets anonymous clients in and says so loudly;
production mode refuses to start while a door is open.
"""

from __future__ import annotations

from iotjobs.runtime import logs
from iotjobs.runtime.settings import Settings

log = logs.get("iotjobs.security")


MQTT_CLIENTS = ("dataplane", "projector")
HTTP_PLANES = ("control", "dataplane")


def open_doors(settings: Settings, service: str) -> list[str]:
    """What anyone who reaches this service's part of the deployment may do, given these settings."""
    doors = []
    if service in MQTT_CLIENTS and not settings.mqtt_username and not settings.mqtt_cert_file:
        doors.append(
            "the services connect to the MQTT broker anonymously, so it lets anonymous clients in: any client may "
            "read every job document and start, fail or fake any device's executions "
            "(set IOTJOBS_MQTT_USERNAME/IOTJOBS_MQTT_PASSWORD or IOTJOBS_MQTT_CERT_FILE/IOTJOBS_MQTT_KEY_FILE, "
            "and IOTJOBS_MQTT_AUTH=on for the broker)"
        )
    if service in HTTP_PLANES and not settings.sigv4_credentials and not settings.sigv4_credentials_file:
        doors.append(
            "HTTP requests are not signature-checked: anyone who reaches the control plane may create, cancel and "
            "delete jobs, and anyone who reaches the device API may update any device's executions "
            "(set IOTJOBS_SIGV4_CREDENTIALS or IOTJOBS_SIGV4_CREDENTIALS_FILE)"
        )
    return doors


def check_at_start(settings: Settings, service: str) -> None:
    doors = open_doors(settings, service)
    if not doors:
        return
    if settings.security_mode == "production":
        raise SystemExit(
            f"iotjobs-{service}: IOTJOBS_SECURITY_MODE=production, but " + "; and ".join(doors) + " (docs/security.md)"
        )
    log.warning(
        "DEVELOPMENT MODE: this deployment lets anyone in; never expose it beyond a trusted network "
        "(IOTJOBS_SECURITY_MODE=production refuses to start like this; docs/security.md)",
        service=service,
        open=doors,
    )
