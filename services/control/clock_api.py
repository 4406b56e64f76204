"""`/_iotjobs/clock`: the test clock on the control plane (IOTJOBS_TEST_CLOCK=on), outside the AWS API.

GET answers the clock's offset and time; POST `{"advanceSeconds": n}` moves every service's clock n seconds
forward and answers once this process has moved. With the test clock off the path is unknown, like any other.
"""

from __future__ import annotations

import asyncio
import math
from datetime import UTC, datetime

from aiohttp import web

from iotjobs.domain.errors import invalid
from iotjobs.runtime import clock, test_clock
from iotjobs.wire.http_request import json_body, json_response
from services.control.context import control

PATH = "/_iotjobs/clock"
MAX_ADVANCE_SECONDS = 10 * 366 * 24 * 3600


def _now() -> dict[str, object]:
    return {"offsetSeconds": clock.offset(), "now": datetime.fromtimestamp(clock.now(), UTC).isoformat()}


async def show(_request: web.Request) -> web.Response:
    return json_response(_now())


async def advance(request: web.Request) -> web.Response:
    ctl = control(request)
    body = await json_body(request)
    seconds = body.get("advanceSeconds")
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise invalid("advanceSeconds is required and must be a number of seconds")
    if not 0 < seconds <= MAX_ADVANCE_SECONDS:
        raise invalid(f"advanceSeconds must be above 0 and at most {MAX_ADVANCE_SECONDS}, got {seconds}")
    target = clock.offset() + float(seconds)
    await test_clock.publish(ctl.settings, target)
    deadline = asyncio.get_running_loop().time() + ctl.settings.request_timeout_seconds
    while clock.offset() < target:  # the follower applies what was just written
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("the clock topic did not return the new offset in time")
        await asyncio.sleep(0.01)
    return json_response(_now())


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, show)
    app.router.add_post(PATH, advance)
