"""What an HTTP plane records of each request: its metrics, its access log line (IOTJOBS_ACCESS_LOG=on), and
the request id, thing name and job id bound to every line logged while it is handled."""

from __future__ import annotations

import time
import uuid

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from iotjobs.runtime import logs, metrics

REQUEST_ID = "iotjobs.request_id"
"""Where the request's id is kept on the request: the x-amzn-RequestId its answer carries."""

log = logs.get("iotjobs.access")


def operation_of(request: web.Request) -> str:
    """The operation's name (the route's), a route's template for the few unnamed routes (`/health`), or
    `unknown`: never the URL itself, whose labels would make a metric series per thing."""
    route = request.match_info.route
    if route.name:
        return route.name
    resource = route.resource
    return resource.canonical if resource is not None else "unknown"


def request_id(request: web.Request) -> str:
    found = request.get(REQUEST_ID)
    return found if isinstance(found, str) else str(uuid.uuid4())


def observing(plane: str, access_log: bool) -> Middleware:
    """The outermost middleware: every answer, error answers included, is counted, timed and (optionally)
    logged once."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        began = time.perf_counter()
        rid = str(uuid.uuid4())
        request[REQUEST_ID] = rid
        operation = operation_of(request)
        match = request.match_info
        with logs.bound(request_id=rid, thing_name=match.get("thingName"), job_id=match.get("jobId")):
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # an answer raised past the error middleware (a redirect)
                _record(request, plane, operation, exc, time.perf_counter() - began, access_log)
                raise
            _record(request, plane, operation, response, time.perf_counter() - began, access_log)
        return response

    return middleware


def _record(
    request: web.Request, plane: str, operation: str, response: web.StreamResponse, elapsed: float, access_log: bool
) -> None:
    error = response.headers.get("x-amzn-ErrorType", "")
    metrics.child(metrics.http_requests, plane, operation, str(response.status), error).inc()
    metrics.child(metrics.http_duration, plane, operation).observe(elapsed)
    if access_log:
        log.info(
            "request",
            method=request.method,
            path=request.path,
            operation=operation,
            status=response.status,
            error=error or None,
            duration_ms=round(elapsed * 1000, 3),
            peer=request.remote,
        )
