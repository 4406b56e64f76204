"""Adapter conftest for MiniStack's IoT Jobs test suite (tests/test_iot_jobs_data.py) run against iotjobs.

scripts/peer_suite.py copies this file next to the downloaded test file; it is not a test of this project.
It stands in for MiniStack's own tests/conftest.py, which the sdist does not ship. It keeps that conftest's
client settings (credentials "test"/"test", us-east-1, standard retries) and leaves out its MiniStack-only
fixtures (the server reset over /_ministack/reset, the in-process account context). The differences:

* boto3 clients (`make_client`, the fixtures), with connect and read timeouts added, point by service:
  `iot` -> PEER_SUITE_CONTROL_URL, `iot-jobs-data` -> PEER_SUITE_DATA_URL, `s3`/`iam` -> PEER_SUITE_S3_URL
  (tests that need it are skipped when it is empty). The `s3` client puts objects public-read, as iotjobs
  reads S3 documentSource URLs unsigned.
* The suite's raw-HTTP helpers and its per-account clients all use one endpoint (MINISTACK_ENDPOINT), as
  MiniStack serves every service on one port. A small forwarding proxy on 127.0.0.1 takes that role and
  sends each request where its SigV4 credential scope (header or presigned query) says: iot-jobs-data to the
  device endpoint, s3 and iam to the S3 endpoint, anything else to the control endpoint.
* The MQTT section imports MiniStack's MQTT-over-WebSocket helpers (`test_iot_data`, `patch_endpoint_dns`)
  at module level; a stub module lets the file import, and every test that needs the `iot_data_client`
  fixture, or is parametrized with transport "mqtt", is deselected (listed in PEER_SUITE_DESELECTED).
* Each test phase (setup, call, teardown) is bounded by PEER_SUITE_TEST_TIMEOUT seconds (SIGALRM).
"""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import signal
import socket
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config

CONTROL_URL = os.environ.get("PEER_SUITE_CONTROL_URL", "http://127.0.0.1:8080").rstrip("/")
DATA_URL = os.environ.get("PEER_SUITE_DATA_URL", "http://127.0.0.1:8081").rstrip("/")
S3_URL = os.environ.get("PEER_SUITE_S3_URL", "").rstrip("/")
TEST_TIMEOUT = float(os.environ.get("PEER_SUITE_TEST_TIMEOUT", "120"))
REGION = "us-east-1"

ENDPOINTS = {"iot": CONTROL_URL, "iot-jobs-data": DATA_URL, "s3": S3_URL, "iam": S3_URL}
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "host"}
SCOPE = re.compile(r"Credential=[^/,&\s]+(?:/|%2F)\d{8}(?:/|%2F)[^/%]+(?:/|%2F)([a-z0-9-]+)(?:/|%2F)aws4_request")


def endpoint_for(service: str) -> str:
    return ENDPOINTS.get(service, CONTROL_URL) or CONTROL_URL


# --- the one-port endpoint the suite's raw helpers use ------------------------------------------------


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        scope = SCOPE.search(self.headers.get("Authorization", "")) or SCOPE.search(self.path)
        target = urlsplit(endpoint_for(scope.group(1) if scope else "iot"))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port or 80, timeout=60)
        try:
            conn.request(self.command, self.path, body=body or None, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            self.send_response(resp.status, resp.reason)
            for key, value in resp.getheaders():
                if key.lower() not in HOP_BY_HOP and key.lower() != "content-length":
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:
            self.send_error(502, f"peer_suite proxy: {exc}")
        finally:
            conn.close()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass


_proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Forward)
_proxy.daemon_threads = True
threading.Thread(target=_proxy.serve_forever, name="peer-suite-proxy", daemon=True).start()
# Read by the suite at import time: ENDPOINT = os.environ.get("MINISTACK_ENDPOINT", ...)
os.environ["MINISTACK_ENDPOINT"] = f"http://127.0.0.1:{_proxy.server_address[1]}"
ENDPOINT = os.environ["MINISTACK_ENDPOINT"]


# --- what the suite imports from MiniStack's conftest -------------------------------------------------


def make_client(service: str, additional_config_kwargs: dict[str, Any] | None = None) -> Any:
    """MiniStack's make_client, pointed at the iotjobs endpoint for the service."""
    config = Config(
        region_name=REGION,
        retries={"mode": "standard"},
        max_pool_connections=50,
        connect_timeout=10,
        read_timeout=60,
        **(additional_config_kwargs or {}),
    )
    return boto3.client(
        service,
        endpoint_url=endpoint_for(service),
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name=REGION,
        config=config,
    )


@contextlib.contextmanager
def patch_endpoint_dns() -> Iterator[None]:
    """Imported by the (deselected) MQTT section; resolves *.ENDPOINT-host names to the host, as MiniStack's."""
    host = urlsplit(ENDPOINT).hostname or "127.0.0.1"
    real = socket.getaddrinfo

    def patched(name: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(name, str) and name.endswith(f".{host}"):
            name = host
        return real(name, port, *args, **kwargs)

    socket.getaddrinfo = patched  # type: ignore[assignment]
    try:
        yield
    finally:
        socket.getaddrinfo = real


def _no_mqtt_helper(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("MiniStack's MQTT-over-WebSocket test helpers are not available to the peer suite")


_stub = types.ModuleType("test_iot_data", "Stand-in for MiniStack's tests/test_iot_data.py (MQTT helpers).")
_stub._WS_HANDSHAKE_TIMEOUT = 15.0  # type: ignore[attr-defined]
for _name in ("_collect_shadow_frames", "_make_publish", "_mqtt_connect", "_mqtt_disconnect"):
    setattr(_stub, _name, _no_mqtt_helper)
sys.modules.setdefault("test_iot_data", _stub)


# --- fixtures ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def iot_client() -> Any:
    return make_client("iot")


@pytest.fixture(scope="session")
def iot_jobs_data() -> Any:
    return make_client("iot-jobs-data")


@pytest.fixture(scope="session")
def iot_data_client() -> Any:
    return make_client("iot-data")


def _public_read(params: dict[str, Any], **_: Any) -> None:
    params.setdefault("ACL", "public-read")


@pytest.fixture(scope="session")
def s3() -> Any:
    """iotjobs reads S3 documentSource objects unsigned (README: a public-read bucket), so the suite's
    objects are put public-read; everything else is as the suite asks."""
    if not S3_URL:
        pytest.skip("needs an S3 endpoint (peer_suite.py --s3-url, the stack's IOTJOBS_S3_ENDPOINT)")
    client = make_client("s3")
    client.meta.events.register("provide-client-params.s3.PutObject", _public_read)
    return client


@pytest.fixture(scope="session")
def iam() -> Any:
    if not S3_URL:
        pytest.skip("needs an IAM endpoint (peer_suite.py --s3-url)")
    return make_client("iam")


# --- selection and bounds --------------------------------------------------------------------------------


def _is_mqtt(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("transport") == "mqtt":
        return True
    return "iot_data_client" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    deselected = [item for item in items if _is_mqtt(item)]
    if not deselected:
        return
    items[:] = [item for item in items if not _is_mqtt(item)]
    config.hook.pytest_deselected(items=deselected)
    listing = os.environ.get("PEER_SUITE_DESELECTED")
    if listing:
        with open(listing, "w") as out:
            out.writelines(f"{item.nodeid}\n" for item in deselected)


class PhaseTimeout(Exception):
    pass


def _alarm(signum: int, frame: Any) -> None:
    raise PhaseTimeout(f"test phase exceeded {TEST_TIMEOUT:g} s (PEER_SUITE_TEST_TIMEOUT)")


@contextlib.contextmanager
def _bounded() -> Iterator[None]:
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TEST_TIMEOUT)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    with _bounded():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    with _bounded():
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    with _bounded():
        return (yield)
