"""CreateJob with documentSource: the document is read once, at creation, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tests.support.clients import iot_client, thing_arn, unique
from tests.support.servers import Servers, free_port
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

DOCUMENTS: dict[str, bytes] = {
    "/docs/ok.json": b'{"operation": "install", "url": "https://example.invalid/pkg"}',
    "/bucket/firmware/v2.json": b'{"firmware": "v2"}',
    "/docs/big.json": b'{"k": "' + b"v" * 40000 + b'"}',
    "/docs/list.json": b"[1, 2]",
    "/docs/text.txt": b"not json at all",
    "/docs/latin1.json": '{"k": "é"}'.encode("latin-1"),
}


@pytest.fixture(scope="module")
async def document_server() -> AsyncIterator[str]:
    async def serve(request: web.Request) -> web.Response:
        body = DOCUMENTS.get(request.path)
        return web.Response(status=404) if body is None else web.Response(body=body)

    app = web.Application()
    app.router.add_get("/{tail:.*}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture(scope="module")
async def s3_stack(servers: Servers, document_server: str) -> AsyncIterator[Stack]:
    stack = Stack(servers, s3_endpoint=document_server)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


async def _create(stack: Stack, source: str) -> str:
    iot = iot_client(stack)
    thing, job = unique("doc"), unique("docjob")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], documentSource=source)
    return job


async def test_document_is_fetched_from_an_http_url_and_described(s3_stack: Stack, document_server: str) -> None:
    source = f"{document_server}/docs/ok.json"
    job = await _create(s3_stack, source)
    iot = iot_client(s3_stack)
    described = await asyncio.to_thread(iot.describe_job, jobId=job)
    assert described["documentSource"] == source
    document = await asyncio.to_thread(iot.get_job_document, jobId=job)
    assert document["document"] == DOCUMENTS["/docs/ok.json"].decode()


async def test_s3_object_urls_are_read_from_the_configured_endpoint(s3_stack: Stack) -> None:
    for source in (
        "https://bucket.s3.us-east-1.amazonaws.com/firmware/v2.json",
        "https://s3.amazonaws.com/bucket/firmware/v2.json",
    ):
        job = await _create(s3_stack, source)
        document = await asyncio.to_thread(iot_client(s3_stack).get_job_document, jobId=job)
        assert document["document"] == '{"firmware": "v2"}'


@pytest.mark.parametrize(
    ("path", "needle"),
    [
        ("/docs/missing.json", "HTTP 404"),
        ("/docs/big.json", "32768"),
        ("/docs/list.json", "JSON object"),
        ("/docs/text.txt", "not valid JSON"),
        ("/docs/latin1.json", "UTF-8"),
    ],
)
async def test_unusable_documents_are_invalid_requests_naming_the_reason(
    s3_stack: Stack, document_server: str, path: str, needle: str
) -> None:
    iot = iot_client(s3_stack)
    with pytest.raises(iot.exceptions.InvalidRequestException, match=needle):
        await _create(s3_stack, f"{document_server}{path}")


async def test_exactly_one_document_source_is_given(s3_stack: Stack, document_server: str) -> None:
    iot = iot_client(s3_stack)
    thing = unique("doc")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    with pytest.raises(iot.exceptions.InvalidRequestException, match="document"):
        await asyncio.to_thread(
            iot.create_job,
            jobId=unique("both"),
            targets=[thing_arn(thing)],
            document="{}",
            documentSource=f"{document_server}/docs/ok.json",
        )
    with pytest.raises(iot.exceptions.InvalidRequestException, match="documentSource"):
        await asyncio.to_thread(
            iot.create_job, jobId=unique("ftp"), targets=[thing_arn(thing)], documentSource="ftp://x/y"
        )
