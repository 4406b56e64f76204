"""Steps shared by the fault tests: a fleet registered quickly, boto3 clients that try once and measure the
server's own answer, and the services' readiness probes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.clients import REGION
from tests.support.stack import Stack
from tests.support.waiting import until


async def create_things(iot: Any, things: list[str], group: str | None = None, at_once: int = 6) -> None:
    """Register the things (and put them in `group`) with a few calls in flight at once."""
    if group is not None:
        await asyncio.to_thread(iot.create_thing_group, thingGroupName=group)
    limit = asyncio.Semaphore(at_once)

    async def one(thing: str) -> None:
        async with limit:
            await asyncio.to_thread(iot.create_thing, thingName=thing)
            if group is not None:
                await asyncio.to_thread(iot.add_thing_to_thing_group, thingGroupName=group, thingName=thing)

    await asyncio.gather(*(one(thing) for thing in things))


def strict_client(service: str, url: str, read_timeout: float, connect_timeout: float = 5) -> Any:
    """A boto3 client that tries once and waits longer than the server may take: what a test measures is the
    server's own answer."""
    return boto3.client(
        service,
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            read_timeout=read_timeout,
            connect_timeout=connect_timeout,
        ),
    )


async def timed(call: Callable[..., Any], **params: Any) -> tuple[float, str, int]:
    """(seconds, error code or 'ok', HTTP status) of one blocking boto3 call."""
    began = time.monotonic()
    try:
        response = await asyncio.to_thread(call, **params)
        outcome, status = "ok", response["ResponseMetadata"]["HTTPStatusCode"]
    except ClientError as err:
        outcome, status = err.response["Error"]["Code"], err.response["ResponseMetadata"]["HTTPStatusCode"]
    return time.monotonic() - began, outcome, status


async def probe(url: str, path: str = "/health") -> tuple[int, dict[str, Any]]:
    """(status, body) of a service's probe (readiness by default, `/live` for liveness); (0, {}) while nothing
    answers."""
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
            http.get(f"{url}{path}") as resp,
        ):
            return resp.status, await resp.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


async def serving_again(stack: Stack, timeout: float) -> None:
    """Both HTTP services report ready; on a timeout, say what their probes last answered."""
    last: dict[str, tuple[int, dict[str, Any]]] = {}

    async def ready() -> bool:
        for name, url in (("control", stack.control_url), ("dataplane", stack.dataplane_url)):
            last[name] = await probe(url)
        return all(code == 200 for code, _body in last.values())

    try:
        await until(ready, timeout, "control and dataplane to report ready")
    except AssertionError as err:
        raise AssertionError(f"{err}; their last /health answers: {last}") from None
