"""What both HTTP planes share: AWS error encoding for every failure, and a request id on every answer."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable

import asyncpg
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from iotjobs.domain.errors import DomainError, invalid
from iotjobs.runtime import logs, metrics, test_clock
from iotjobs.runtime.deciders import DeciderRuntime
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import ensure_topics
from iotjobs.wire import http_server
from iotjobs.wire.http_errors import ApiError, error_response, from_rejection, unavailable, unknown_operation
from iotjobs.wire.http_observe import observing, request_id
from iotjobs.wire.http_request import BODY_TIMEOUT_KEY
from iotjobs.wire.http_signing import signature_middlewares

log = logs.get("iotjobs.http")

DATABASE_UNAVAILABLE = (
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # shutting down, starting up (CannotConnectNowError)
    asyncpg.exceptions.InterfaceError,  # a connection the server closed
    asyncpg.exceptions.TooManyConnectionsError,
    # A pooled connection caught mid-query by the server shutting down is left in a state it cannot leave.
    asyncpg.exceptions.InternalClientError,
    ConnectionError,
)

SETTINGS_KEY = web.AppKey("settings", Settings)
ERRORS_KEY = web.AppKey("errors", dict[str, tuple[str, int]])
"""The plane's error table: (exception name, HTTP status) per domain error kind."""
RUNTIME_KEY = web.AppKey("runtime", DeciderRuntime)
CHECKS_KEY = web.AppKey("checks", dict[str, Callable[[], bool]])
"""Readiness checks besides the runtime's (the MQTT session, the reply reader), by name."""
Resources = Callable[[web.Application], AsyncIterator[None]]


def service_app(
    settings: Settings,
    errors: dict[str, tuple[str, int]],
    resources: Resources,
    signing_names: tuple[str, ...],
    plane: str,
) -> web.Application:
    """An HTTP plane: metrics and logs of every request (`plane` labels them), AWS error encoding, SigV4
    verification when configured (for `signing_names`, the SigV4 service names the plane answers to), the
    service's resources, its readiness probe and its metrics."""
    app = web.Application(
        middlewares=[
            observing(plane, access_log=settings.access_log == "on"),
            error_middleware(errors),
            *signature_middlewares(settings, signing_names),
        ]
    )
    app[SETTINGS_KEY] = settings
    app[ERRORS_KEY] = errors
    app[BODY_TIMEOUT_KEY] = settings.body_read_timeout_seconds
    app[CHECKS_KEY] = {}
    if test_clock.enabled(settings):
        app.cleanup_ctx.append(_follow_the_test_clock)  # before anything decides or answers with `now`
    app.cleanup_ctx.append(resources)
    app.router.add_get("/health", health)
    app.router.add_get("/live", live)
    app.router.add_get("/metrics", metrics.exposition)
    return app


async def _follow_the_test_clock(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    await ensure_topics(settings)
    follower = test_clock.ClockFollower(settings)
    await follower.start()
    try:
        yield
    finally:
        await follower.stop()


def serve(app: web.Application, settings: Settings, host: str, port: int) -> None:
    """Run an HTTP plane until SIGTERM, over HTTPS when a certificate is configured. aiohttp's own access log
    is off: the plane logs its requests itself (`observing`)."""
    runner = http_server.BoundedRunner(
        app, header_timeout=settings.header_read_timeout_seconds, errors=app[ERRORS_KEY], access_log=None
    )
    http_server.run(runner, host, port, ssl_context=https_context(settings))


def https_context(settings: Settings) -> ssl.SSLContext | None:
    if not settings.tls_cert_file:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert_file, settings.tls_key_file or None)
    return context


async def health(request: web.Request) -> web.Response:
    """200 once every assigned partition is served and every other check passes: the readiness probe of
    compose and Kubernetes."""
    runtime = request.app[RUNTIME_KEY]
    checks = {"partitions": runtime.ready, **{name: check() for name, check in request.app[CHECKS_KEY].items()}}
    ready = all(checks.values())
    body = {"ready": ready, "checks": checks, "partitions": runtime.owned_partitions}
    return web.json_response(body, status=200 if ready else 503)


async def live(request: web.Request) -> web.Response:
    """200 unless the process is wedged (`DeciderRuntime.stalled`): the liveness probe, which restarts the
    process. Slower to fail than `/health` on purpose: a restore in progress or a broker outage takes the
    process out of rotation, and only one that outlasts `IOTJOBS_LIVENESS_STALL_SECONDS` restarts it."""
    threshold = request.app[SETTINGS_KEY].liveness_stall_seconds
    stalled = request.app[RUNTIME_KEY].stalled(threshold)
    return web.json_response({"live": not stalled, "stalled": stalled}, status=503 if stalled else 200)


def error_middleware(table: dict[str, tuple[str, int]]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        rid = request_id(request)
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            err = unknown_operation(request.method, request.path)
            response = error_response(err.name, err.status, err.message)
        except web.HTTPMethodNotAllowed:
            err = unknown_operation(request.method, request.path)
            response = error_response(err.name, err.status, err.message)
        except web.HTTPRequestEntityTooLarge as too_large:
            api = from_rejection(invalid(f"the request body is too large: {too_large.text}").rejection(), table)
            response = error_response(api.name, api.status, api.message)
        except ApiError as err:
            response = error_response(err.name, err.status, err.message, err.extra)
        except DomainError as err:
            api = from_rejection(err, table)
            response = error_response(api.name, api.status, api.message, api.extra)
        except DATABASE_UNAVAILABLE as err:
            # The read models' database is restarting or out of reach: the caller may retry (503), it did
            # nothing wrong (400) and nothing is broken here (500).
            log.warning("the database is unavailable", method=request.method, path=request.path, error=repr(err))
            api = unavailable("the read models are unavailable for a moment; retry the request")
            response = error_response(api.name, api.status, api.message)
        except Exception:
            log.exception("unhandled error", method=request.method, path=request.path)
            name, status = table["Internal"]
            response = error_response(name, status, f"internal error; request id {rid}")
        response.headers["x-amzn-RequestId"] = rid
        return response

    return middleware
