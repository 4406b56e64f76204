"""AWS error encoding for the HTTP planes: status, `x-amzn-ErrorType` and a JSON body with a message."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from iotjobs.domain.errors import DomainError, ErrorKind, Rejection

# (exception name, HTTP status) per plane, as the service models define them.
CONTROL: dict[str, tuple[str, int]] = {
    ErrorKind.INVALID_REQUEST: ("InvalidRequestException", 400),
    ErrorKind.INVALID_JSON: ("InvalidRequestException", 400),
    ErrorKind.RESOURCE_NOT_FOUND: ("ResourceNotFoundException", 404),
    ErrorKind.RESOURCE_ALREADY_EXISTS: ("ResourceAlreadyExistsException", 409),
    ErrorKind.VERSION_CONFLICT: ("VersionConflictException", 409),
    ErrorKind.VERSION_MISMATCH: ("VersionConflictException", 409),
    ErrorKind.INVALID_STATE_TRANSITION: ("InvalidStateTransitionException", 409),
    ErrorKind.CONFLICT: ("ConflictException", 409),
    ErrorKind.LIMIT_EXCEEDED: ("LimitExceededException", 410),
    ErrorKind.THROTTLED: ("ThrottlingException", 400),
    ErrorKind.TERMINAL_STATE: ("InvalidRequestException", 400),
    ErrorKind.INTERNAL: ("InternalFailureException", 500),
}

DATA: dict[str, tuple[str, int]] = {
    ErrorKind.INVALID_REQUEST: ("InvalidRequestException", 400),
    ErrorKind.INVALID_JSON: ("InvalidRequestException", 400),
    ErrorKind.RESOURCE_NOT_FOUND: ("ResourceNotFoundException", 404),
    ErrorKind.INVALID_STATE_TRANSITION: ("InvalidStateTransitionException", 409),
    ErrorKind.VERSION_MISMATCH: ("InvalidStateTransitionException", 409),
    ErrorKind.TERMINAL_STATE: ("TerminalStateException", 410),
    ErrorKind.THROTTLED: ("ThrottlingException", 429),
    ErrorKind.CONFLICT: ("ConflictException", 409),
    ErrorKind.INTERNAL: ("InternalServerException", 500),
}


class ApiError(Exception):
    """An error answered as is, for conditions that have no domain kind (unknown route, outage)."""

    def __init__(self, name: str, status: int, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.name = name
        self.status = status
        self.message = message
        self.extra = extra or {}


def error_response(name: str, status: int, message: str, extra: dict[str, Any] | None = None) -> web.Response:
    body = {"__type": name, "message": message, **(extra or {})}
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type="application/json",
        headers={"x-amzn-ErrorType": name},
    )


def from_rejection(rejection: Rejection | DomainError, table: dict[str, tuple[str, int]]) -> ApiError:
    if isinstance(rejection, DomainError):
        rejection = rejection.rejection()
    name, status = table.get(rejection.kind, ("InternalFailureException", 500))
    return ApiError(name, status, rejection.message, dict(rejection.detail))


def unknown_operation(method: str, path: str) -> ApiError:
    return ApiError("UnknownOperationException", 404, f"No operation matches {method} {path}")


def unavailable(message: str) -> ApiError:
    return ApiError("ServiceUnavailableException", 503, message)
