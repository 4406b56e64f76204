"""The live rollout dashboard in a real headless browser: Debian's chromium, driven by selenium through Debian's
chromedriver, watches a job's progress move as MQTT devices succeed one by one, with no reload.

The test always saves a screenshot of the final page in its temporary directory; with
IOTJOBS_DASHBOARD_SCREENSHOT=<path> (docs/dashboard.png for the one in the docs) it saves it there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from services.control.dashboard_api import STATIC
from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.servers import Servers
from tests.support.stack import Stack, running

pytestmark = pytest.mark.e2e

THINGS = 20
SCREENSHOT_ENV = "IOTJOBS_DASHBOARD_SCREENSHOT"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.fail(
            "the dashboard test needs Debian's chromium and chromium-driver (apt-get install chromium "
            f"chromium-driver; scripts/test.sh installs them): chromium={chromium}, chromedriver={driver}"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1500,1100"):
        options.add_argument(argument)
    # An explicit chromedriver: selenium never looks for (or downloads) a driver of its own.
    session = webdriver.Chrome(options=options, service=Service(executable_path=driver))
    try:
        yield session
    finally:
        session.quit()


@pytest.fixture(scope="module")
async def dashboard_stack(servers: Servers) -> Any:
    async with running(servers, seconds_per_minute=1.0, dashboard_poll_seconds=0.2) as stack:
        yield stack


async def shows(browser: WebDriver, condition: Callable[[WebDriver], Any], what: str, timeout: float = 15.0) -> Any:
    """Wait (bounded) until the page meets `condition`, off the event loop the devices run on."""
    wait = WebDriverWait(browser, timeout, poll_frequency=0.05)
    return await asyncio.to_thread(wait.until, condition, f"the dashboard never showed {what}")


def text_of(selector: str) -> Callable[[WebDriver], str | None]:
    """The shown text of the first element `selector` finds, or None; read in one step in the page, so an
    element the page re-renders meanwhile is never a stale reference."""

    def read(browser: WebDriver) -> str | None:
        text: str | None = browser.execute_script(
            "const e = document.querySelector(arguments[0]);"
            "return e && e.getClientRects().length ? e.innerText.trim() : null;",
            selector,
        )
        return text

    return read


def equals(selector: str, expected: str) -> Callable[[WebDriver], bool]:
    return lambda browser: text_of(selector)(browser) == expected


def rows(browser: WebDriver) -> list[str]:
    """The things the executions table lists, in its order."""
    things: list[str] = browser.execute_script(
        "return [...document.querySelectorAll('#executions tbody tr')].map(row => row.dataset.thing);"
    )
    return things


async def history_served(stack: Stack, thing: str, job: str) -> list[dict[str, Any]] | None:
    """The execution history extension operation's answer, or None where this control plane does not serve it."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{stack.control_url}/_iotjobs/things/{thing}/jobs/{job}/history") as resp,
    ):
        if resp.status == 404:
            return None
        assert resp.status == 200, await resp.text()
        return list((await resp.json())["history"])


async def test_the_page_its_libraries_and_its_reads_are_served(dashboard_stack: Stack) -> None:
    url = dashboard_stack.control_url
    vendor = STATIC / "vendor"
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{url}/dashboard") as resp:
            assert resp.status == 200 and resp.content_type == "text/html"
            assert "/dashboard/static/vendor/chart.umd.min.js" in await resp.text()
        for name in ("chart.umd.min.js", "alpine.min.js"):
            async with http.get(f"{url}/dashboard/static/vendor/{name}") as resp:
                assert resp.status == 200 and await resp.read() == (vendor / name).read_bytes()

        for path, status, error, words in (
            ("/_iotjobs/dashboard/jobs/no-such-job", 404, "ResourceNotFoundException", "no-such-job"),
            ("/_iotjobs/dashboard/jobs/no-such-job/executions", 404, "ResourceNotFoundException", "no-such-job"),
            ("/_iotjobs/dashboard/jobs/j/executions?status=DONE", 400, "InvalidRequestException", "status"),
            ("/_iotjobs/dashboard/jobs/j/executions?limit=0", 400, "InvalidRequestException", "limit"),
            ("/_iotjobs/dashboard/jobs/j/executions?limit=many", 400, "InvalidRequestException", "limit"),
            (f"/_iotjobs/dashboard/jobs/j/executions?thing={'x' * 129}", 400, "InvalidRequestException", "thing"),
            ("/_iotjobs/dashboard/jobs/bad%20id", 400, "InvalidRequestException", "jobId"),
            ("/dashboard/static/../../context.py", 404, "UnknownOperationException", ""),
        ):
            async with http.get(f"{url}{path}") as resp:
                body = await resp.json()
                assert (resp.status, body["__type"]) == (status, error), (path, body)
                assert words in body["message"], (path, body)


async def test_the_stream_pushes_a_new_job_to_an_open_page(dashboard_stack: Stack) -> None:
    iot = iot_client(dashboard_stack)
    thing = unique("streamed")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    job = unique("streamed")
    timeout = aiohttp.ClientTimeout(total=30)
    async with (
        aiohttp.ClientSession(timeout=timeout) as http,
        http.get(f"{dashboard_stack.control_url}/_iotjobs/events/stream") as resp,
    ):
        assert resp.status == 200 and resp.content_type == "text/event-stream"
        first = await _next_event(resp)
        assert job not in {j["jobId"] for j in first["jobs"]}
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
        while True:  # bounded by the session's timeout
            jobs = {j["jobId"]: j for j in (await _next_event(resp))["jobs"]}
            if job in jobs:
                break
    assert jobs[job]["status"] == "IN_PROGRESS"
    assert jobs[job]["byStatus"] == {"QUEUED": 1} and jobs[job]["progress"] == {"total": 1, "done": 0}


async def test_control_stops_at_once_while_a_stream_is_open(servers: Servers) -> None:
    """An open stream must not hold SIGTERM's graceful shutdown for its whole grace period."""
    async with running(servers) as stack:
        timeout = aiohttp.ClientTimeout(total=30)
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(f"{stack.control_url}/_iotjobs/events/stream") as resp,
        ):
            await _next_event(resp)
            control = stack.processes["control"]
            started = time.monotonic()
            control.terminate()
            assert await asyncio.to_thread(control.wait, 10) == 0
            assert time.monotonic() - started < 5, "control took its shutdown grace period with a stream open"
            # The stream is over, whether its end reached the client cleanly or as the connection closing.
            with pytest.raises((AssertionError, aiohttp.ClientPayloadError), match=r"the stream ended|not completed"):
                await _next_event(resp)


async def _next_event(resp: aiohttp.ClientResponse) -> dict[str, Any]:
    """The data of the next `jobs` event (keep-alive comments skipped)."""
    event: str | None = None
    async for raw in resp.content:
        line = raw.decode().rstrip("\n")
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: ") and event == "jobs":
            return dict(orjson.loads(line[len("data: ") :]))
    raise AssertionError("the stream ended")


async def test_the_dashboard_follows_a_rollout_live_as_devices_succeed(
    dashboard_stack: Stack, browser: WebDriver, tmp_path: Path
) -> None:
    stack = dashboard_stack
    iot = iot_client(stack)
    prefix = unique("dash")
    things = [f"{prefix}-{i:02d}" for i in range(THINGS)]
    for start in range(0, THINGS, 5):
        await asyncio.gather(*(asyncio.to_thread(iot.create_thing, thingName=t) for t in things[start : start + 5]))

    # The page is open before the job exists: the job reaches it through the stream.
    await asyncio.to_thread(browser.get, f"{stack.control_url}/dashboard")
    await shows(browser, equals("#connection", "live"), "its stream connected")

    async with contextlib.AsyncExitStack() as devices_open:
        devices = [await devices_open.enter_async_context(MqttDevice(stack, t)) for t in things]
        job = unique("firmware")
        await asyncio.to_thread(
            iot.create_job,
            jobId=job,
            targets=[thing_arn(t) for t in things],
            document=orjson.dumps({"operation": "upgrade", "version": "2.1.0"}).decode(),
            description="firmware 2.1.0",
        )
        entry = f'#job-list li[data-job-id="{job}"]'
        await shows(browser, lambda b: b.find_elements(By.CSS_SELECTOR, entry), "the new job in its list")
        await asyncio.to_thread(lambda: browser.find_element(By.CSS_SELECTOR, entry).click())
        await shows(browser, equals("#job-title", job), "the selected job")
        await shows(browser, equals("#count-QUEUED", str(THINGS)), "every execution queued")

        for device in devices:
            outcome, _ = await device.request("start-next", {"statusDetails": {"step": "downloading"}})
            assert outcome == "accepted"
        await shows(browser, equals("#count-IN_PROGRESS", str(THINGS)), "every execution in progress")
        await shows(browser, equals("#job-progress-text", f"0 of {THINGS} executions done"), "no progress yet")

        seen_progress: list[str] = []
        for done, device in enumerate(devices, start=1):
            outcome, _ = await device.request(
                f"{job}/update", {"status": "SUCCEEDED", "statusDetails": {"step": "done"}}
            )
            assert outcome == "accepted"
            # Every intermediate count, in the counters and the progress bar, without a reload.
            await shows(browser, equals("#count-SUCCEEDED", str(done)), f"{done} succeeded")
            await shows(browser, equals("#count-IN_PROGRESS", str(THINGS - done)), f"{THINGS - done} in progress")
            await shows(
                browser,
                lambda b, done=done: b.execute_script("return document.getElementById('job-progress').value") == done,
                f"the progress bar at {done}",
            )
            seen_progress.append(text_of("#job-progress-text")(browser) or "")

            if done == THINGS // 2:
                await _filters_show_the_matching_executions(browser, things[:done], things[done:])

    assert seen_progress == [f"{n} of {THINGS} executions done" for n in range(1, THINGS + 1)]
    await shows(browser, equals("#job-status", "COMPLETED"), "the job completed")
    await shows(browser, equals(f"{entry} .job-counts span", f"{THINGS} / {THINGS} done"), "the list's progress")

    # The chart: the executions released and succeeded per interval add up to the whole rollout.
    totals = await shows(browser, _chart_totals(THINGS), "the chart counting every execution")
    assert totals["released"] == THINGS and totals["succeeded"] == THINGS and totals["failed"] == 0

    # An execution's history: what the extension operation answers, or "No history." where it is not served.
    await asyncio.to_thread(
        lambda: browser.find_element(By.CSS_SELECTOR, f'#executions tr[data-thing="{things[0]}"]').click()
    )
    served = await history_served(stack, things[0], job)
    if served is None:
        await shows(browser, equals("#history-empty", "No history."), "no history")
    else:
        statuses = [h["status"] for h in served]
        assert statuses[-1] == "SUCCEEDED"
        await shows(
            browser,
            lambda b: (
                [li.get_attribute("data-status") for li in b.find_elements(By.CSS_SELECTOR, "#history-entries li")]
                == statuses
            ),
            f"the history {statuses}",
        )

    await asyncio.to_thread(browser.execute_script, "window.scrollTo(0, 0)")
    shot = tmp_path / "dashboard.png"
    assert await asyncio.to_thread(browser.save_screenshot, str(shot))
    if os.environ.get(SCREENSHOT_ENV):
        shutil.copyfile(shot, os.environ[SCREENSHOT_ENV])


async def _filters_show_the_matching_executions(browser: WebDriver, succeeded: list[str], running: list[str]) -> None:
    status = Select(browser.find_element(By.ID, "exec-status-filter"))
    await asyncio.to_thread(status.select_by_value, "SUCCEEDED")
    await shows(browser, lambda b: sorted(rows(b)) == sorted(succeeded), "only the succeeded executions")
    await asyncio.to_thread(status.select_by_value, "IN_PROGRESS")
    await shows(browser, lambda b: sorted(rows(b)) == sorted(running), "only the executions in progress")
    await asyncio.to_thread(status.select_by_value, "")

    thing = browser.find_element(By.ID, "exec-thing-filter")
    await asyncio.to_thread(thing.send_keys, running[0])
    await shows(browser, lambda b: rows(b) == [running[0]], f"only {running[0]}")
    await asyncio.to_thread(thing.clear)
    await asyncio.to_thread(thing.send_keys, " ")  # an input event after clear(): the list is whole again
    await shows(browser, lambda b: len(rows(b)) == len(succeeded) + len(running), "every execution again")


def _chart_totals(expected: int) -> Callable[[WebDriver], dict[str, int] | None]:
    def read(browser: WebDriver) -> dict[str, int] | None:
        totals = browser.execute_script(
            """const chart = Chart.getChart('timeline');
               if (!chart) return null;
               return Object.fromEntries(chart.data.datasets.map(d => [d.key, d.data.reduce((a, b) => a + b, 0)]));"""
        )
        return totals if totals and totals.get("succeeded") == expected else None

    return read
