"""SigV4 on the HTTP planes (IOTJOBS_SIGV4_CREDENTIALS[_FILE]): the configured keys, and a thin middleware
that refuses a request iotjobs.wire.sigv4 does not accept. Off, it is not installed at all."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from iotjobs.runtime import logs
from iotjobs.runtime.settings import Settings
from iotjobs.wire import sigv4
from iotjobs.wire.http_errors import ApiError
from iotjobs.wire.http_request import body_bytes

OPEN_PATHS = frozenset({"/health", "/live", "/metrics"})
"""Answered without a signature: the readiness and liveness probes of compose and Kubernetes and Prometheus's
scrapes carry no credentials (docs/operating.md#metrics)."""
DASHBOARD_PREFIXES = ("/dashboard", "/_iotjobs/dashboard/", "/_iotjobs/events/", "/_iotjobs/things/")
"""The dashboard's read-only paths, answered to GET without a signature with IOTJOBS_DASHBOARD_UNSIGNED=on: a
browser cannot sign, so the proxy in front of the port authenticates instead."""

log = logs.get("iotjobs.sigv4")


def configured_keys(settings: Settings) -> dict[str, str]:
    """Access key → secret, from the variable and the file together; empty when verification is off. A source
    that is set but names no key is an error, never verification silently off."""
    inline_name = Settings.env_name("sigv4_credentials")
    keys = sigv4.parse_credentials(settings.sigv4_credentials, inline_name)
    if settings.sigv4_credentials.strip() and not keys:
        raise ValueError(f"{inline_name} names no ACCESS_KEY_ID:SECRET entry")
    if settings.sigv4_credentials_file:
        where = f"{Settings.env_name('sigv4_credentials_file')}={settings.sigv4_credentials_file}"
        try:
            text = Path(settings.sigv4_credentials_file).read_text()
        except OSError as exc:
            raise ValueError(f"{where}: cannot read it ({exc.strerror})") from None
        from_file = sigv4.parse_credentials(text, where)
        if not from_file:
            raise ValueError(f"{where}: the file names no ACCESS_KEY_ID:SECRET entry")
        for access_key, secret in from_file.items():
            if keys.get(access_key, secret) != secret:
                raise ValueError(f"access key {access_key} has one secret in {inline_name} and another in {where}")
        keys.update(from_file)
    return keys


def signature_middlewares(settings: Settings, signing_names: Collection[str]) -> list[Middleware]:
    """[the check] when keys are configured, [] otherwise: with verification off a request pays nothing."""
    keys = configured_keys(settings)
    unsigned = DASHBOARD_PREFIXES if settings.dashboard_unsigned == "on" else ()
    return [_verifying(keys, tuple(signing_names), unsigned)] if keys else []


def received(request: web.Request, body: bytes) -> sigv4.Received:
    path, _, query = request.raw_path.partition("?")
    return sigv4.Received(request.method, path, query, tuple(request.headers.items()), body)


def _verifying(keys: Mapping[str, str], signing_names: tuple[str, ...], unsigned: tuple[str, ...]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in OPEN_PATHS or (request.method == "GET" and request.path.startswith(unsigned)):
            return await handler(request)
        # Signing time is checked against the wall clock: the test clock moves the services' `now`, not the
        # clients' clocks.
        outcome = sigv4.verify(received(request, await body_bytes(request)), keys, signing_names, datetime.now(UTC))
        if isinstance(outcome, sigv4.Refused):
            log.info("request refused", code=outcome.code, method=request.method, path=request.path)
            raise ApiError(outcome.code, outcome.status, outcome.message)
        return await handler(request)

    return middleware
