"""`GET /_iotjobs/things/{thingName}/jobs/{jobId}/history`: every transition of every execution number of a
job on a thing, oldest first, with its cause (iotjobs/domain/history.py). An extension outside the `iot`
service model (AWS keeps no such history), so botocore never calls it; errors are AWS-shaped all the same.

It reads the read models: like every control-plane read it may lag a device's latest update by the
projector's lag (control's own writes are projected before they answer, in strict consistency).
"""

from __future__ import annotations

from aiohttp import web

from iotjobs.domain import validation as v
from iotjobs.domain.errors import not_found
from iotjobs.runtime import execution_history
from iotjobs.wire.http_request import json_response
from services.control.context import control

PATH = "/_iotjobs/things/{thingName}/jobs/{jobId}/history"


async def execution_history_of(request: web.Request) -> web.Response:
    thing = v.check_thing_name(request.match_info["thingName"])
    job_id = v.check_job_id(request.match_info["jobId"])
    entries = await execution_history.entries(control(request).pool, thing, job_id)
    if not entries:
        raise not_found(f"Thing {thing} never had an execution of job {job_id}")
    return json_response({"history": entries})


def add_routes(app: web.Application) -> None:
    app.router.add_get(PATH, execution_history_of, name="ExecutionHistory")
