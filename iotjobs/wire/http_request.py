"""Reading AWS REST-JSON requests: bodies, query members and path labels, with AWS-style errors."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import web

from iotjobs.domain.errors import invalid

BODY_TIMEOUT_KEY = web.AppKey("body_timeout_seconds", float)
"""How long a request's body may take to arrive (IOTJOBS_BODY_READ_TIMEOUT_SECONDS)."""
DEFAULT_BODY_TIMEOUT_SECONDS = 10.0


async def body_bytes(request: web.Request) -> bytes:
    """The whole body (aiohttp keeps it, so a second read costs nothing)."""
    limit = request.app.get(BODY_TIMEOUT_KEY, DEFAULT_BODY_TIMEOUT_SECONDS)
    try:
        # A client that trickles its body must not hold a connection and a handler for ever.
        async with asyncio.timeout(limit):
            return await request.read()
    except TimeoutError:
        raise invalid(f"the request body did not arrive within {limit:g} s") from None
    except web.RequestPayloadError as exc:
        # The body does not decode as its Content-Encoding says, or its chunked framing is broken.
        reason = getattr(exc.__cause__, "message", None) or str(exc)
        raise invalid(f"the request body could not be read: {reason}") from None


PARSED_BODY = "iotjobs.json_body"


async def json_body(request: web.Request) -> dict[str, Any]:
    """The body as a JSON object, parsed once: the model check and the handler both read it."""
    parsed = request.get(PARSED_BODY)
    if parsed is not None:
        return parsed  # type: ignore[no-any-return]
    raw = await body_bytes(request)
    if not raw.strip():
        body: Any = {}
    else:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise invalid(f"request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise invalid("request body must be a JSON object")
    request[PARSED_BODY] = body
    return body  # type: ignore[no-any-return]


def query_bool(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise invalid(f"{name} must be true or false, got '{raw}'")
    return raw == "true"


def query_int(request: web.Request, name: str) -> int | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{name} must be an integer, got '{raw}'") from None


def query_enum(request: web.Request, name: str, allowed: tuple[str, ...]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise invalid(f"{name} must be one of {', '.join(allowed)}, got '{raw}'")
    return raw


def optional(body: dict[str, Any], name: str, kind: type, what: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if kind is int and isinstance(value, bool):
        raise invalid(f"{name} must be {what}")
    if not isinstance(value, kind):
        raise invalid(f"{name} must be {what}")
    return value


def json_response(data: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")
