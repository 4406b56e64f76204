"""What both HTTP planes share: AWS error encoding for every failure, and a request id on every answer."""

from __future__ import annotations

import uuid

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from iotjobs.domain.errors import DomainError
from iotjobs.runtime import logs
from iotjobs.wire.http_errors import ApiError, error_response, from_rejection, unknown_operation

log = logs.get("iotjobs.http")


def error_middleware(table: dict[str, tuple[str, int]]) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = str(uuid.uuid4())
        response: web.StreamResponse
        try:
            response = await handler(request)
        except web.HTTPNotFound:
            err = unknown_operation(request.method, request.path)
            response = error_response(err.name, err.status, err.message)
        except web.HTTPMethodNotAllowed:
            err = unknown_operation(request.method, request.path)
            response = error_response(err.name, err.status, err.message)
        except ApiError as err:
            response = error_response(err.name, err.status, err.message, err.extra)
        except DomainError as err:
            api = from_rejection(err, table)
            response = error_response(api.name, api.status, api.message, api.extra)
        except Exception:
            log.exception("unhandled error", method=request.method, path=request.path)
            name, status = table["Internal"]
            response = error_response(name, status, f"internal error; request id {request_id}")
        response.headers["x-amzn-RequestId"] = request_id
        return response

    return middleware
