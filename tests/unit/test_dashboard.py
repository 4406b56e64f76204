"""The dashboard's parts that need no stack: its vendored front-end libraries are exactly what package-lock.json
pins, its chart's intervals, and which of its paths answer unsigned when SigV4 verification is on."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from iotjobs.runtime.settings import Settings
from iotjobs.wire.http_app import error_middleware
from iotjobs.wire.http_errors import CONTROL
from iotjobs.wire.http_signing import signature_middlewares
from iotjobs.wire.sigv4 import CONTROL_SIGNING_NAMES
from services.control.dashboard_api import STATIC, bucket_seconds, progress, timeline
from tests.support.signing import signed_headers

DASHBOARD = STATIC.parent
VENDOR = STATIC / "vendor"
KEY = ("AKIDDASHBOARD", "dashboard-secret")


# --- vendoring ----------------------------------------------------------------------------------------------


def _json(path: Path) -> dict:  # type: ignore[type-arg]
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_every_dependency_is_pinned_to_the_exact_version_the_lock_holds() -> None:
    package, lock = _json(DASHBOARD / "package.json"), _json(DASHBOARD / "package-lock.json")["packages"]
    assert package["dependencies"], "package.json names no dependency"
    for name, version in package["dependencies"].items():
        assert re.fullmatch(r"\d+\.\d+\.\d+", version), f"{name} is pinned loosely: {version}"
        assert lock[f"node_modules/{name}"]["version"] == version, f"package-lock.json holds another {name}"
    assert lock[""]["dependencies"] == package["dependencies"], "package-lock.json is older than package.json"


def test_each_vendored_file_is_the_one_npm_ci_installs_from_the_lock() -> None:
    """vendored.json is written by scripts/vendor-dashboard.sh after `npm ci` (which checks every tarball
    against the lock's integrity): each file must still hash as it did then, and come from the package version
    and integrity the lock pins now. tests/integration/test_dashboard_vendoring.py runs `npm ci` itself."""
    wanted = _json(DASHBOARD / "package.json")["vendor"]
    lock = _json(DASHBOARD / "package-lock.json")["packages"]
    manifest = _json(VENDOR / "vendored.json")
    assert set(manifest) == set(wanted), "vendored.json lists other files than package.json's vendor"
    assert {p.name for p in VENDOR.iterdir()} == {*wanted, "vendored.json"}, "static/vendor holds other files"
    for name, record in manifest.items():
        assert record["source"] == wanted[name]
        pinned = lock[f"node_modules/{record['package']}"]
        assert (record["version"], record["integrity"]) == (pinned["version"], pinned["integrity"]), (
            f"{name} was vendored from {record['package']} {record['version']}, the lock pins {pinned['version']}: "
            "run scripts/vendor-dashboard.sh"
        )
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == record["sha256"], f"{name} was edited"


def test_the_page_loads_only_files_that_are_served() -> None:
    page = (STATIC / "index.html").read_text()
    referenced = re.findall(r'(?:src|href)="/dashboard/static/([^"]+)"', page)
    assert "vendor/chart.umd.min.js" in referenced and "vendor/alpine.min.js" in referenced
    for path in referenced:
        assert (STATIC / path).is_file(), f"index.html loads {path}, which static/ does not hold"
    assert not re.search(r'(?:src|href)="(?:https?:)?//', page), "the page must not load anything from elsewhere"


def test_the_image_build_context_keeps_every_static_file() -> None:
    """The Dockerfile copies services/; .dockerignore (an allow-list) must not drop the page or its libraries."""
    root = DASHBOARD.parents[2]
    patterns = [p.strip() for p in (root / ".dockerignore").read_text().splitlines() if p.strip() and p[0] != "#"]
    files = [path.relative_to(root).as_posix() for path in STATIC.rglob("*") if path.is_file()]
    assert files
    for name in files:
        kept = True
        for pattern in patterns:
            negate = pattern.startswith("!")
            bare = pattern.lstrip("!").rstrip("/")
            # A pattern matches a file or any folder above it.
            if any(fnmatch.fnmatch(part, bare) for part in _self_and_parents(name)):
                kept = negate
        assert kept, f".dockerignore drops {name}"


def _self_and_parents(name: str) -> list[str]:
    parts = name.split("/")
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


# --- the outcomes-over-time chart -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "step"),
    [(0.5, 1), (60, 1), (61, 2), (120, 2), (121, 5), (3600, 60), (3601, 120), (86400 * 3, 7200), (86400 * 90, 172800)],
)
def test_intervals_are_round_and_at_most_sixty(span: float, step: int) -> None:
    assert bucket_seconds(span) == step
    assert span / step <= 60


def test_timeline_counts_releases_and_outcomes_per_interval() -> None:
    counts = [(0, "QUEUED", 20), (1, "SUCCEEDED", 3), (1, "FAILED", 1), (2, "TIMED_OUT", 2), (2, "REMOVED", 1)]
    shown = timeline(1000.0, 1003.0, counts)
    assert shown == {
        "start": 1000.0,
        "bucketSeconds": 1,
        "series": {
            "released": [20, 0, 0],
            "succeeded": [0, 3, 0],
            "failed": [0, 1, 2],
            "canceled": [0, 0, 1],
        },
    }


def test_timeline_keeps_a_count_from_the_edges_in_the_first_and_last_interval() -> None:
    # A finish stamped exactly at the end, or a clock a hair behind the job's creation, still counts.
    shown = timeline(1000.0, 1002.0, [(-1, "QUEUED", 1), (2, "SUCCEEDED", 1)])
    assert shown["series"]["released"] == [1, 0] and shown["series"]["succeeded"] == [0, 1]


def test_progress_counts_terminal_executions_as_done() -> None:
    assert progress({"QUEUED": 2, "IN_PROGRESS": 1, "SUCCEEDED": 4, "FAILED": 1, "REMOVED": 1}) == {
        "total": 9,
        "done": 6,
    }
    assert progress(None) == {"total": 0, "done": 0}


# --- unsigned dashboard paths ---------------------------------------------------------------------------------


DASHBOARD_PATHS = (
    "/dashboard",
    "/dashboard/static/dashboard.js",
    "/_iotjobs/dashboard/jobs/j1",
    "/_iotjobs/events/stream",
    "/_iotjobs/things/t1/jobs/j1/history",
)


async def _ok(_request: web.Request) -> web.Response:
    return web.Response(text="ok")


async def _signed_server(**settings: str) -> TestServer:
    # As service_app puts them: AWS error encoding, then the signature check.
    app = web.Application(
        middlewares=[
            error_middleware(CONTROL),
            *signature_middlewares(Settings(sigv4_credentials=":".join(KEY), **settings), CONTROL_SIGNING_NAMES),  # type: ignore[arg-type]
        ]
    )
    for path in (*DASHBOARD_PATHS, "/jobs", "/_iotjobs/clock"):
        app.router.add_get(path, _ok)
    app.router.add_post("/_iotjobs/dashboard/jobs/j1", _ok)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    return server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_with_sigv4_on_the_dashboard_needs_a_signature_by_default(http: aiohttp.ClientSession) -> None:
    server = await _signed_server()
    try:
        for path in DASHBOARD_PATHS:
            async with http.get(server.make_url(path)) as resp:
                assert resp.status == 403, path
        url = str(server.make_url("/dashboard"))
        async with http.get(url, headers=signed_headers("GET", url, KEY, "iot")) as resp:
            assert resp.status == 200
    finally:
        await server.close()


async def test_dashboard_unsigned_opens_only_the_dashboards_reads(http: aiohttp.ClientSession) -> None:
    server = await _signed_server(dashboard_unsigned="on")
    try:
        for path in DASHBOARD_PATHS:
            async with http.get(server.make_url(path)) as resp:
                assert resp.status == 200, path
        for method, path in (("GET", "/jobs"), ("GET", "/_iotjobs/clock"), ("POST", "/_iotjobs/dashboard/jobs/j1")):
            async with http.request(method, server.make_url(path)) as resp:
                assert resp.status == 403, f"{method} {path} answered unsigned"
    finally:
        await server.close()


def test_dashboard_unsigned_takes_only_on_or_off() -> None:
    with pytest.raises(ValueError, match="IOTJOBS_DASHBOARD_UNSIGNED must be one of off, on"):
        Settings(dashboard_unsigned="yes")
    with pytest.raises(ValueError, match="IOTJOBS_DASHBOARD_POLL_SECONDS must be above 0"):
        Settings(dashboard_poll_seconds=0)
