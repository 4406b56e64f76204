"""Device request limits: RequestThrottled over MQTT and ThrottlingException (429) over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from botocore.exceptions import ClientError

from tests.support.clients import MqttDevice, data_client, iot_client, unique
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def throttled(servers: Servers) -> AsyncIterator[Stack]:
    stack = Stack(servers, device_requests_per_second=0.2, device_request_burst=2)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


async def test_mqtt_requests_past_the_limit_are_request_throttled(throttled: Stack) -> None:
    thing = unique("busy")
    await asyncio.to_thread(iot_client(throttled).create_thing, thingName=thing)
    async with MqttDevice(throttled, thing) as device:
        outcomes = [await device.request("get") for _ in range(4)]
    assert [o for o, _ in outcomes[:2]] == ["accepted", "accepted"]
    assert [(o, body["code"]) for o, body in outcomes[2:]] == [("rejected", "RequestThrottled")] * 2


async def test_http_requests_past_the_limit_get_429(throttled: Stack) -> None:
    thing = unique("busy")
    await asyncio.to_thread(iot_client(throttled).create_thing, thingName=thing)
    data = data_client(throttled)
    for _ in range(2):
        await asyncio.to_thread(data.get_pending_job_executions, thingName=thing)
    with pytest.raises(ClientError) as caught:
        await asyncio.to_thread(data.get_pending_job_executions, thingName=thing)
    error = caught.value.response
    assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == ("ThrottlingException", 429)
