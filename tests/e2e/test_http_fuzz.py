"""Bad HTTP never gets a 5xx: a property-based fuzz of every served operation on both planes, and the bound
on how long a request's headers may take to arrive.

Why a raw-socket fuzz over hypothesis strategies rather than Schemathesis: the operations, their path
templates and their input members are already one table per plane (services/control/operations.py,
services/dataplane/jobs_data_api.py) over the botocore models in iotjobs/wire/models/, so the strategies
below read them directly; Schemathesis would need an OpenAPI translation of those shapes first, and it
sends through an HTTP library that cannot put on the wire much of what matters here: invalid UTF-8 and
bare `%` in paths, request lines past aiohttp's limits, broken chunking, a body that contradicts its
Content-Encoding. Model-valid and model-invalid values inside well-formed requests are covered member by
member in test_model_fuzz.py; this test covers the bytes around and under them.

Every answer must be a success with a JSON (or empty) body, or an AWS error: a 4xx with x-amzn-ErrorType
naming one of the plane's error types and the same type and a message in a JSON body. Afterwards both
services answer /health and a real client, no process exited, and neither logged a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from iotjobs.wire.http_errors import CONTROL, DATA
from iotjobs.wire.http_server import TIMEOUT_ERROR
from iotjobs.wire.model import ServiceModel
from services.control.operations import OPERATIONS as CONTROL_OPERATIONS
from services.dataplane.jobs_data_api import OPERATIONS as DATA_OPERATIONS
from tests.support.clients import data_client, iot_client, unique
from tests.support.fuzzing import JSON_VALUES, MIB, LogMark, hostile_payloads
from tests.support.servers import Servers
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

HEADER_TIMEOUT = 2.0
"""IOTJOBS_HEADER_READ_TIMEOUT_SECONDS of this module's stack."""
EXAMPLES_PER_OPERATION = 25
ANSWER_TIMEOUT = 30.0
BODY_LIMIT = MIB
"""aiohttp's client_max_size: a larger body is refused."""


class Plane:
    def __init__(self, name: str, model: str, errors: dict[str, tuple[str, int]], routes: list[tuple[str, str, str]]):
        self.name = name
        self.model = ServiceModel.load(model)
        self.error_types = {type_name for type_name, _status in errors.values()} | {
            "UnknownOperationException",
            TIMEOUT_ERROR,
        }
        self.routes = {operation: (method, path) for operation, method, path in routes}

    def port(self, stack: Stack) -> int:
        return stack.settings.control_port if self.name == "control" else stack.settings.dataplane_port


PLANES = {
    "control": Plane("control", "iot", CONTROL, [(op.name, op.method, op.path) for op in CONTROL_OPERATIONS]),
    "dataplane": Plane("dataplane", "iot-jobs-data", DATA, [(n, m, p) for n, m, p, _handler in DATA_OPERATIONS]),
}
CASES = [(plane, operation) for plane in PLANES for operation in PLANES[plane].routes]


@pytest.fixture(scope="module")
async def stack(servers: Servers) -> AsyncIterator[Stack]:
    """The whole stack, with a header read time short enough to watch it run out."""
    running = Stack(servers, header_read_timeout_seconds=HEADER_TIMEOUT)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


# --- what goes on the wire --------------------------------------------------------------------------------

# Path labels as they appear on the wire: already percent-encoded, or deliberately not.
LABELS = st.one_of(
    st.from_regex(r"[A-Za-z0-9_:-]{1,24}", fullmatch=True),
    st.text(max_size=40).map(lambda text: quote(text, safe="")),
    st.binary(min_size=1, max_size=24).map(lambda raw: quote(raw, safe="")),  # not UTF-8 once decoded
    st.sampled_from(["", "..", ".", "%2e%2e", "%2F", "a%2Fb", "%ZZ", "%", "%00", "%C0%AF", "$next", "%24next", "*"]),
    st.sampled_from([300, 5_000, 9_000]).map(lambda size: "a" * size),  # 9,000: past aiohttp's line limit
)
QUERY_TEXT = st.one_of(
    st.sampled_from(
        [str(2**63 - 1), str(2**63), str(2**64), str(-(2**63) - 1), "-1", "0", "1.5", "1e3", "0x10", " 1", "١٢"]
    ),
    st.sampled_from(["", "abc", "true", "false", "TRUE", "1" * 5_000]),
    st.integers().map(str),
    st.text(max_size=30),
).map(lambda text: quote(text, safe=""))
CONTENT_TYPES = st.sampled_from(
    [None, "application/json", "application/x-amz-json-1.1", "text/plain", "multipart/form-data; boundary=z", ""]
)
CONTENT_ENCODINGS = st.sampled_from([None, None, None, "gzip", "deflate", "br", "identity", "bogus"])
FRAMINGS = st.sampled_from(["length", "length", "chunked", "none"])
METHODS = ["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "FOO"]

FIXED_BODIES = hostile_payloads(BODY_LIMIT - 64) + hostile_payloads(BODY_LIMIT + 16)[-1:]  # just under, just over


def _body_members(model: ServiceModel, operation: str) -> list[str]:
    return [m for m, spec in model.input_members(operation).items() if spec.get("location") is None]


def bodies(model: ServiceModel, operation: str) -> st.SearchStrategy[bytes]:
    members = _body_members(model, operation) or ["unknownMember"]
    shaped = st.fixed_dictionaries({}, optional=dict.fromkeys(members, JSON_VALUES))  # wrong types, nulls
    duplicated = st.sampled_from(members).map(lambda m: f'{{"{m}": 1, "{m}": "two"}}'.encode())
    return st.one_of(
        st.just(b""),
        st.binary(max_size=300),
        shaped.map(lambda body: json.dumps(body).encode()),  # json, not orjson: integers past 64 bits
        duplicated,
        st.sampled_from(FIXED_BODIES),
    )


def path_of(template: str, labels: Callable[[str], str]) -> str:
    """The template with each `{label}` (or `{label+}`) replaced by `labels(name)`."""
    out, rest = "", template
    while "{" in rest:
        before, _, after = rest.partition("{")
        name, _, rest = after.partition("}")
        out += before + labels(name.rstrip("+"))
    return out + rest


@st.composite
def requests(draw: st.DrawFn, plane: Plane, operation: str) -> dict[str, Any]:
    """One request aimed at `operation`: its route with odd labels, query, headers and body, and now and
    then another method."""
    method, template = plane.routes[operation]
    method = draw(st.sampled_from([method] * 9 + METHODS))
    labels: dict[str, str] = {}
    path = path_of(template, lambda name: labels.setdefault(name, draw(LABELS)))
    query = []
    for member, spec in plane.model.input_members(operation).items():
        if spec.get("location") == "querystring":
            name = spec.get("locationName", member)
            query += [f"{name}={value}" for value in draw(st.lists(QUERY_TEXT, max_size=3))]  # repeated keys too
    if draw(st.booleans()):
        query.append(f"{draw(st.sampled_from(['x', 'maxResults', 'nextToken', '']))}={draw(QUERY_TEXT)}")
    target = path + ("?" + "&".join(query) if query else "")
    return {
        "method": method,
        "target": target,
        "content_type": draw(CONTENT_TYPES),
        "content_encoding": draw(CONTENT_ENCODINGS),
        "framing": draw(FRAMINGS),
        "body": draw(bodies(plane.model, operation)),
    }


UNKNOWN_ROUTES = st.fixed_dictionaries(
    {
        "method": st.sampled_from(METHODS),
        "target": st.lists(LABELS, min_size=0, max_size=5).map(lambda labels: "/" + "/".join(labels)),
        "content_type": CONTENT_TYPES,
        "content_encoding": st.just(None),
        "framing": st.just("length"),
        "body": st.sampled_from([b"", b"{}", b"\xff"]),
    }
)


def wire(request: dict[str, Any]) -> bytes:
    head = [f"{request['method']} {request['target']} HTTP/1.1", "Host: 127.0.0.1", "Connection: close"]
    if request["content_type"] is not None:
        head.append(f"Content-Type: {request['content_type']}")
    if request["content_encoding"] is not None:
        head.append(f"Content-Encoding: {request['content_encoding']}")
    body: bytes = request["body"]
    if request["framing"] == "length":
        head.append(f"Content-Length: {len(body)}")
    elif request["framing"] == "chunked":
        head.append("Transfer-Encoding: chunked")
        cut = len(body) // 2
        body = b"".join(f"{len(part):x}\r\n".encode() + part + b"\r\n" for part in (body[:cut], body[cut:]) if part)
        body += b"0\r\n\r\n"
    else:
        body = b""  # no framing: a body would be read as the next request
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def exchange(port: int, request: dict[str, Any]) -> tuple[int, http.client.HTTPMessage, bytes]:
    """Send the request on a connection of its own; (status, headers, body) of the answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
        # The server may answer before it takes the whole body: its answer is what counts.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(wire(request))
        response = http.client.HTTPResponse(sock, method=request["method"])
        response.begin()
        return response.status, response.headers, response.read()


def problem(plane: Plane, method: str, status: int, headers: http.client.HTTPMessage, body: bytes) -> str | None:
    """What is wrong with an answer, or None for a success or a well-formed AWS error."""
    if 200 <= status < 300:
        if body:
            try:
                orjson.loads(body)
            except orjson.JSONDecodeError:
                return f"{status} with a body that is not JSON: {body[:200]!r}"
        return None
    if not 400 <= status < 500:
        return f"{status}: {body[:300]!r}"
    error_type = headers.get("x-amzn-ErrorType")
    if error_type not in plane.error_types:
        return f"{status} with x-amzn-ErrorType {error_type!r}, not one of the {plane.name}'s error types"
    if method == "HEAD":
        return None  # an answer to HEAD carries no body
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return f"{status} {error_type} with a body that is not JSON: {body[:200]!r}"
    if not isinstance(decoded, dict) or decoded.get("__type") != error_type:
        return f"{status} {error_type} whose body names another type: {body[:200]!r}"
    if not isinstance(decoded.get("message"), str) or not decoded["message"]:
        return f"{status} {error_type} without a message: {body[:200]!r}"
    return None


def _shown(request: dict[str, Any]) -> str:
    shown = {**request, "body": request["body"][:120], "target": request["target"][:200]}
    return f"{shown} ({len(request['body'])} body bytes)"


def check(plane: Plane, stack: Stack, request: dict[str, Any]) -> None:
    status, headers, body = exchange(plane.port(stack), request)
    found = problem(plane, request["method"], status, headers, body)
    assert found is None, f"{found}\n  for {_shown(request)}"


# --- after the fuzz ---------------------------------------------------------------------------------------


def assert_still_serving(stack: Stack, mark: LogMark) -> None:
    for name, proc in stack.processes.items():
        assert proc.poll() is None, f"{name} exited with {proc.returncode}:\n{stack.log_tail(name)}"
    for url in (stack.control_url, stack.dataplane_url):
        with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            response = http.client.HTTPResponse(sock)
            response.begin()
            assert response.status == 200, (url, response.status, response.read())
    thing = unique("after-fuzz")
    iot_client(stack).create_thing(thingName=thing)
    assert iot_client(stack).describe_thing(thingName=thing)["thingName"] == thing
    assert data_client(stack).get_pending_job_executions(thingName=thing)["queuedJobs"] == []
    mark.assert_no_failure_logged()


FUZZ = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=timedelta(seconds=ANSWER_TIMEOUT),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize(("plane_name", "operation"), CASES, ids=[f"{p}-{o}" for p, o in CASES])
def test_every_answer_to_bad_http_is_an_aws_error_or_a_success(plane_name: str, operation: str, stack: Stack) -> None:
    plane = PLANES[plane_name]
    mark = LogMark(stack)

    @FUZZ
    @given(request=requests(plane, operation))
    def fuzz(request: dict[str, Any]) -> None:
        check(plane, stack, request)

    fuzz()
    assert_still_serving(stack, mark)


@pytest.mark.parametrize("plane_name", list(PLANES))
def test_unknown_routes_and_methods_get_an_aws_error(plane_name: str, stack: Stack) -> None:
    plane = PLANES[plane_name]
    mark = LogMark(stack)

    @settings(FUZZ, max_examples=60)
    @given(request=UNKNOWN_ROUTES)
    def fuzz(request: dict[str, Any]) -> None:
        check(plane, stack, request)

    fuzz()
    assert_still_serving(stack, mark)


# --- examples the fuzz found, kept as plain tests ---------------------------------------------------------


@pytest.mark.parametrize("plane_name", list(PLANES))
def test_a_body_that_is_not_in_its_content_encoding_is_an_invalid_request(plane_name: str, stack: Stack) -> None:
    plane = PLANES[plane_name]
    route = {"control": "/jobs/a-job", "dataplane": "/things/a-thing/jobs/a-job"}[plane_name]
    method = {"control": "PUT", "dataplane": "POST"}[plane_name]
    request = {
        "method": method,
        "target": route,
        "content_type": "application/json",
        "content_encoding": "gzip",
        "framing": "length",
        "body": b'{"status": "IN_PROGRESS"}',  # not gzip
    }
    status, headers, body = exchange(plane.port(stack), request)
    assert (status, headers["x-amzn-ErrorType"]) == (400, "InvalidRequestException"), body
    assert b"gzip" in body, body


# --- the time a request's headers may take ----------------------------------------------------------------


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed (monotonic)."""
    answer = await asyncio.wait_for(reader.read(), HEADER_TIMEOUT + 10)
    return answer, time.monotonic()


def _assert_timed_out(answer: bytes, opened: float, closed: float) -> None:
    status, _, rest = answer.partition(b"\r\n")
    assert status == b"HTTP/1.1 408 Request Timeout", answer
    assert f"x-amzn-ErrorType: {TIMEOUT_ERROR}".encode() in rest, answer
    body = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["__type"] == TIMEOUT_ERROR and f"within {HEADER_TIMEOUT:g} s" in body["message"], body
    # the time counts from the connection opening, not from the last byte the client sent
    assert HEADER_TIMEOUT - 0.1 <= closed - opened <= HEADER_TIMEOUT + 2, closed - opened


@pytest.mark.parametrize("plane_name", list(PLANES))
async def test_a_connection_that_sends_nothing_is_answered_408_and_closed(plane_name: str, stack: Stack) -> None:
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", PLANES[plane_name].port(stack))
    try:
        answer, closed = await _answer(reader)
    finally:
        writer.close()
    _assert_timed_out(answer, opened, closed)


@pytest.mark.parametrize("plane_name", list(PLANES))
async def test_headers_that_trickle_are_answered_408_once_their_time_is_up(plane_name: str, stack: Stack) -> None:
    opened = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", PLANES[plane_name].port(stack))
    answering = asyncio.create_task(_answer(reader))
    try:
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        while not answering.done():  # a header line a byte at a time, each well within the limit
            for byte in b"X-Slow: aaaaaaaaaa\r\n":
                if answering.done() or writer.is_closing():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(0.1)  # the trickle under test
        answer, closed = await answering
    finally:
        writer.close()
    _assert_timed_out(answer, opened, closed)
    await _still_healthy(stack)


@pytest.mark.parametrize("plane_name", list(PLANES))
async def test_a_kept_alive_connection_may_idle_longer_than_the_header_time(plane_name: str, stack: Stack) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", PLANES[plane_name].port(stack))
    try:
        # A body the service answers without reading (no such operation), its second half sent after the answer:
        # those bytes belong to the answered request, not to the next one's headers.
        writer.write(b"POST /health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nfirst")
        assert await _status_on(reader) == 404
        writer.write(b"-half")
        await asyncio.sleep(HEADER_TIMEOUT * 1.5)  # idle between requests: keep-alive's time, not the header's
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert await _status_on(reader) == 200
        await asyncio.sleep(HEADER_TIMEOUT * 1.5)
        writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert await _status_on(reader) == 200
    finally:
        writer.close()


async def _status_on(reader: asyncio.StreamReader) -> int:
    """The status of the next answer on a kept-alive connection, its headers and body read."""
    status = await asyncio.wait_for(reader.readline(), 10)
    assert status.startswith(b"HTTP/1.1 "), status
    length = 0
    while (line := await asyncio.wait_for(reader.readline(), 10)) != b"\r\n":
        name, _, value = line.decode().partition(":")
        if name.lower() == "content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status.split(b" ")[1])


@pytest.mark.parametrize("plane_name", list(PLANES))
@pytest.mark.parametrize(
    "oversized",
    [
        b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 9_000 + b"\r\n\r\n",
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: a\r\n" % i for i in range(200)) + b"\r\n",
    ],
    ids=["request-line", "header-field", "header-count"],
)
async def test_requests_past_the_header_limits_are_invalid_requests(
    plane_name: str, oversized: bytes, stack: Stack
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", PLANES[plane_name].port(stack))
    try:
        writer.write(oversized)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    status, _, rest = answer.partition(b"\r\n")
    assert status.split(b" ")[1] == b"400", answer
    assert b"x-amzn-ErrorType: InvalidRequestException" in rest, answer
    body = orjson.loads(rest.partition(b"\r\n\r\n")[2])
    assert body["__type"] == "InvalidRequestException" and "not well-formed HTTP" in body["message"], body
    await _still_healthy(stack)


async def _still_healthy(stack: Stack) -> None:
    for url in (stack.control_url, stack.dataplane_url):
        assert await stack.health(url) is not None, f"{url} stopped answering"
