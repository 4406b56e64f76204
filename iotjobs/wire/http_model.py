"""The service model applied to HTTP requests before any handler runs."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from iotjobs.wire.http_request import json_body
from iotjobs.wire.model import ServiceModel, from_query


async def request_params(model: ServiceModel, operation: str, request: web.Request) -> dict[str, Any]:
    """The operation's input members as the request carries them: path labels, query and body."""
    params: dict[str, Any] = {}
    body: dict[str, Any] | None = None
    for member, spec in model.input_members(operation).items():
        location = spec.get("location")
        name = spec.get("locationName", member)
        if location == "uri":
            if name in request.match_info:
                params[member] = from_query(model.shapes[spec["shape"]], [request.match_info[name]], name)
        elif location == "querystring":
            raw = request.query.getall(name, [])
            if raw:
                params[member] = from_query(model.shapes[spec["shape"]], raw, name)
        elif location is None:
            if body is None:
                body = await json_body(request)
            if member in body:
                params[member] = body[member]
    return params


def checked(model: ServiceModel, operation: str, handler: Handler) -> Handler:
    """Wrap a handler so that requests breaking the model never reach it."""

    async def check_then_handle(request: web.Request) -> web.StreamResponse:
        model.validate_input(operation, await request_params(model, operation, request))
        return await handler(request)

    return check_then_handle


def route_path(uri: str) -> str:
    """The router path of a model URI: empty labels still reach the operation, whose model check then
    names the empty member, instead of falling through to UnknownOperationException."""
    return re.sub(r"\{(\w+)\}", r"{\1:[^{}/]*}", uri)
