"""The floor of the fleet benchmark's registry writes: an aiohttp server that answers CreateThingGroup,
CreateThing and AddThingToThingGroup with well-formed replies and does nothing else.

What boto3 and one aiohttp process reach against it on a machine is the most any registry behind HTTP can
reach there with the same clients, whatever it does behind the socket.

    python -m bench.null_registry --port PORT
"""

from __future__ import annotations

import argparse
import uuid

import orjson
from aiohttp import web

ARN = "arn:aws:iot:us-east-1:123456789012"


def _json(body: dict[str, str]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def create_thing(request: web.Request) -> web.Response:
    await request.read()
    name = request.match_info["name"]
    return _json({"thingName": name, "thingArn": f"{ARN}:thing/{name}", "thingId": str(uuid.uuid4())})


async def create_thing_group(request: web.Request) -> web.Response:
    await request.read()
    name = request.match_info["name"]
    arn = f"{ARN}:thinggroup/{name}"
    return _json({"thingGroupName": name, "thingGroupArn": arn, "thingGroupId": str(uuid.uuid4())})


async def add_thing_to_thing_group(request: web.Request) -> web.Response:
    await request.read()
    return _json({})


def create_app() -> web.Application:
    app = web.Application()
    app.router.add_post("/things/{name}", create_thing)
    app.router.add_put("/thing-groups/addThingToThingGroup", add_thing_to_thing_group)
    app.router.add_post("/thing-groups/{name}", create_thing_group)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.null_registry", description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    web.run_app(create_app(), host="127.0.0.1", port=args.port, access_log=None, print=None)


if __name__ == "__main__":
    main()
