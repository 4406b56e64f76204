"""How the services reach the MQTT broker: their identity (password or client certificate) and TLS."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

from gmqtt import Client

from iotjobs.runtime.settings import Settings


def tls_context(settings: Settings) -> ssl.SSLContext | bool:
    """TLS to the broker when a CA is configured (with the services' certificate when one is), else False."""
    if not settings.mqtt_ca_file:
        return False
    context = ssl.create_default_context(cafile=settings.mqtt_ca_file)
    if settings.mqtt_cert_file:
        context.load_cert_chain(settings.mqtt_cert_file, settings.mqtt_key_file or None)
    return context


def password(settings: Settings) -> str:
    if settings.mqtt_password or not settings.mqtt_password_file:
        return settings.mqtt_password
    return Path(settings.mqtt_password_file).read_text().strip()


def authenticated(client: Client, settings: Settings) -> dict[str, Any]:
    """Sets the client's username and password, if any; returns the `connect` arguments for TLS."""
    if settings.mqtt_username:
        client.set_auth_credentials(settings.mqtt_username, password(settings) or None)
    return {"ssl": tls_context(settings)}
