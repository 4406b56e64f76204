"""Scheduled jobs, maintenance windows and end times (aws-iot-jobs.md §6.8), run in seconds with the test clock.

The stack runs with a minute of one second and IOTJOBS_TEST_CLOCK=on: a start time 30 minutes ahead is 30
seconds ahead here, a window of 30 minutes lasts 30 seconds, and `POST /_iotjobs/clock` jumps every service's
clock forward (by real seconds: a day is 86,400 of them).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.support.clients import MqttDevice, data_client, iot_client, thing_arn, unique
from tests.support.servers import Servers
from tests.support.stack import Stack, running
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
async def clocked(servers: Servers) -> AsyncIterator[Stack]:
    async with running(servers, seconds_per_minute=1.0, test_clock="on") as stack:
        yield stack


async def _clock(stack: Stack, advance: float | None = None) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http:
        url = f"{stack.control_url}/_iotjobs/clock"
        request = http.post(url, json={"advanceSeconds": advance}) if advance is not None else http.get(url)
        async with request as response:
            body: dict[str, Any] = await response.json()
            assert response.status == 200, body
            return body


async def _service_now(stack: Stack) -> datetime:
    return datetime.fromisoformat(str((await _clock(stack))["now"]))


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M")


async def _things(iot: Any, count: int, prefix: str) -> list[str]:
    names = [unique(prefix) for _ in range(count)]
    for name in names:
        await asyncio.to_thread(iot.create_thing, thingName=name)
    return names


async def _job(iot: Any, job: str) -> dict[str, Any]:
    return dict((await asyncio.to_thread(iot.describe_job, jobId=job))["job"])


async def _executions(iot: Any, job: str) -> dict[str, str]:
    listed = await asyncio.to_thread(iot.list_job_executions_for_job, jobId=job, maxResults=250)
    return {e["thingArn"].rsplit("/", 1)[1]: e["jobExecutionSummary"]["status"] for e in listed["executionSummaries"]}


async def _status_is(iot: Any, job: str, status: str) -> dict[str, Any] | None:
    described = await _job(iot, job)
    return described if described["status"] == status else None


async def test_a_job_scheduled_two_hours_ahead_starts_when_the_clock_gets_there(clocked: Stack) -> None:
    iot = iot_client(clocked)
    things = await _things(iot, 2, "sched")
    job = unique("sched")
    start = await _service_now(clocked) + timedelta(hours=2)
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(t) for t in things],
        document="{}",
        schedulingConfig={"startTime": _at(start)},
    )
    described = await _job(iot, job)
    assert described["status"] == "SCHEDULED"
    assert described["schedulingConfig"]["startTime"] == _at(start)
    assert await _executions(iot, job) == {}, "nothing runs before the start time"
    pending = await asyncio.to_thread(data_client(clocked).get_pending_job_executions, thingName=things[0])
    assert pending["queuedJobs"] == []

    async with MqttDevice(clocked, things[0]) as device:
        await _clock(clocked, advance=2 * 3600 + 60)
        note = await device.next_notify_next(timeout=15)
        assert note["execution"]["jobId"] == job
    await until(lambda: _status_is(iot, job, "IN_PROGRESS"), 15, "the job to start")
    assert set((await until(lambda: _all(iot, job, 2), 15, "both executions")).values()) == {"QUEUED"}


async def _all(iot: Any, job: str, count: int) -> dict[str, str] | None:
    seen = await _executions(iot, job)
    return seen if len(seen) == count else None


async def test_end_time_with_cancel_and_force_cancel(clocked: Stack) -> None:
    iot = iot_client(clocked)
    now = await _service_now(clocked)
    jobs = {}
    for behavior in ("CANCEL", "FORCE_CANCEL"):
        things = await _things(iot, 2, "end")
        job = unique("end")
        await asyncio.to_thread(
            iot.create_job,
            jobId=job,
            targets=[thing_arn(t) for t in things],
            document="{}",
            schedulingConfig={"endTime": _at(now + timedelta(hours=1)), "endBehavior": behavior},
        )
        assert (await _job(iot, job))["status"] == "IN_PROGRESS"
        async with MqttDevice(clocked, things[0]) as device:
            assert (await device.request(f"{job}/update", {"status": "IN_PROGRESS"}))[0] == "accepted"
        jobs[behavior] = (job, things)
    await _clock(clocked, advance=2 * 3600)
    for behavior, (job, (busy, idle)) in jobs.items():
        canceled = await until(lambda job=job: _status_is(iot, job, "CANCELED"), 15, f"{behavior} at the end time")
        assert canceled["forceCanceled"] is (behavior == "FORCE_CANCEL")
        expected = {busy: "CANCELED" if behavior == "FORCE_CANCEL" else "IN_PROGRESS", idle: "CANCELED"}
        await until(lambda job=job, e=expected: _matches(iot, job, e), 15, f"executions after {behavior}")


async def _matches(iot: Any, job: str, expected: dict[str, str]) -> bool:
    return await _executions(iot, job) == expected


async def test_end_time_with_stop_rollout_leaves_the_rest_unreleased(clocked: Stack) -> None:
    iot = iot_client(clocked)
    things = await _things(iot, 30, "stop")
    job = unique("stop")
    now = await _service_now(clocked)
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(t) for t in things],
        document="{}",
        jobExecutionsRolloutConfig={"maximumPerMinute": 1},
        schedulingConfig={"endTime": _at(now + timedelta(hours=1)), "endBehavior": "STOP_ROLLOUT"},
    )
    await _clock(clocked, advance=2 * 3600)

    async def stopped() -> dict[str, Any] | None:
        described = await _job(iot, job)
        return described if "processingTargets" not in described["jobProcessDetails"] else None

    await until(stopped, 15, "the rollout to stop at the end time")
    released = await _executions(iot, job)
    assert 1 <= len(released) < len(things), "one a minute: most never rolled out"
    for thing in released:
        async with MqttDevice(clocked, thing) as device:
            assert (await device.request(f"{job}/update", {"status": "SUCCEEDED"}))[0] == "accepted"
    await until(lambda: _status_is(iot, job, "COMPLETED"), 15, "the job to complete with what it released")
    assert set(await _executions(iot, job)) == set(released)


async def test_maintenance_windows_open_and_close_the_rollout(clocked: Stack) -> None:
    iot = iot_client(clocked)
    things = await _things(iot, 20, "window")
    job = unique("window")
    now = await _service_now(clocked)
    daily = "cron(0 12 ? * * *)"
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(t) for t in things],
        document="{}",
        jobExecutionsRolloutConfig={"maximumPerMinute": 1},
        schedulingConfig={"maintenanceWindows": [{"startTime": daily, "durationInMinutes": 30}]},
    )
    described = await _job(iot, job)
    noon = now.replace(hour=12, minute=0, second=0, microsecond=0)
    if noon <= now:
        noon += timedelta(days=1)
    expected = [_at(noon + timedelta(days=i)) for i in range(7)]
    assert [r["startTime"] for r in described["scheduledJobRollouts"]] == expected
    if not (noon - timedelta(days=1) <= now < noon - timedelta(days=1) + timedelta(seconds=30)):
        assert described["status"] == "SCHEDULED" and await _executions(iot, job) == {}

    await _clock(clocked, advance=(noon - now).total_seconds() + 1)  # into the window
    await until(lambda: _status_is(iot, job, "IN_PROGRESS"), 15, "the window to open")
    await until(lambda: _count_at_least(iot, job, 1), 15, "a release inside the window")
    await _clock(clocked, advance=40)  # the 30-"minute" window lasts 30 s here
    await until(lambda: _status_is(iot, job, "SCHEDULED"), 15, "the window to close")
    inside = len(await _executions(iot, job))
    assert inside < len(things), "one a minute: the window closed before all were released"
    next_rollouts = [r["startTime"] for r in (await _job(iot, job))["scheduledJobRollouts"]]
    assert next_rollouts[0] == _at(noon + timedelta(days=1))

    await _clock(clocked, advance=24 * 3600 - 40)  # the next day's window
    await until(lambda: _status_is(iot, job, "IN_PROGRESS"), 15, "the next window to open")
    await until(lambda: _count_at_least(iot, job, inside + 1), 15, "the rollout to resume")


async def _count_at_least(iot: Any, job: str, count: int) -> bool:
    return len(await _executions(iot, job)) >= count


async def test_a_seven_day_timeout_fires_when_the_clock_passes_it(clocked: Stack) -> None:
    iot = iot_client(clocked)
    (thing,) = await _things(iot, 1, "week")
    job = unique("week")
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(thing)],
        document="{}",
        timeoutConfig={"inProgressTimeoutInMinutes": 10080},
    )
    async with MqttDevice(clocked, thing) as device:
        assert (await device.request(f"{job}/update", {"status": "IN_PROGRESS"}))[0] == "accepted"
        await _clock(clocked, advance=10080 + 5)  # 10,080 minutes of one second
        await until(lambda: _matches(iot, job, {thing: "TIMED_OUT"}), 15, "the timeout to fire")


async def test_scheduling_rules_are_checked(clocked: Stack) -> None:
    iot = iot_client(clocked)
    (thing,) = await _things(iot, 1, "rules")
    now = await _service_now(clocked)
    cases = [
        ({"startTime": _at(now - timedelta(hours=1))}, "schedulingConfig.startTime"),
        ({"startTime": "tomorrow"}, "schedulingConfig.startTime"),
        # 30 minutes of one second apart at least: ten seconds is too close.
        ({"startTime": _at(now + timedelta(hours=2)), "endTime": _at(now + timedelta(hours=2)) + ":10"}, "endTime"),
        ({"endBehavior": "CANCEL"}, "endBehavior"),
        ({"maintenanceWindows": [{"startTime": "cron(0 12 * * *)", "durationInMinutes": 30}]}, "maintenanceWindows"),
        ({"maintenanceWindows": [{"startTime": "cron(0 12 1 * MON *)", "durationInMinutes": 30}]}, "'?'"),
    ]
    for config, needle in cases:
        with pytest.raises(iot.exceptions.InvalidRequestException, match=needle):
            await asyncio.to_thread(
                iot.create_job, jobId=unique("bad"), targets=[thing_arn(thing)], document="{}", schedulingConfig=config
            )


async def test_the_operator_command_moves_every_services_clock(clocked: Stack) -> None:
    before = (await _clock(clocked))["offsetSeconds"]
    env = {**os.environ, **clocked.settings.env()}
    done = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.admin", "clock", "--advance", "2m"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert f"test clock offset: {before + 120:.0f} s" in done.stdout

    async def moved() -> bool:
        return bool((await _clock(clocked))["offsetSeconds"] == before + 120)

    await until(moved, 15, "control to follow the clock topic")
    bad = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.admin", "clock", "--advance", "soon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "not a duration" in bad.stderr


async def test_the_test_clock_is_off_unless_enabled(stack: Stack) -> None:
    url = f"{stack.control_url}/_iotjobs/clock"
    async with aiohttp.ClientSession() as http, http.post(url, json={"advanceSeconds": 60}) as response:
        assert response.status == 404
        assert response.headers["x-amzn-ErrorType"] == "UnknownOperationException"


async def test_the_job_concurrency_quota_refuses_a_job_and_cancels_a_scheduled_start(servers: Servers) -> None:
    async with running(servers, seconds_per_minute=1.0, test_clock="on", max_concurrent_jobs=1) as limited:
        iot = iot_client(limited)
        things = await _things(iot, 20, "quota")
        rolling = unique("quota")
        await asyncio.to_thread(
            iot.create_job,
            jobId=rolling,
            targets=[thing_arn(t) for t in things[:18]],
            document="{}",
            jobExecutionsRolloutConfig={"maximumPerMinute": 1},
        )
        described = await _job(iot, rolling)
        assert described["isConcurrent"] is True
        with pytest.raises(iot.exceptions.LimitExceededException, match="concurrency limit is 1"):
            await asyncio.to_thread(
                iot.create_job, jobId=unique("refused"), targets=[thing_arn(things[18])], document="{}"
            )
        scheduled = unique("quota")
        start = await _service_now(limited) + timedelta(hours=1)
        await asyncio.to_thread(
            iot.create_job,
            jobId=scheduled,
            targets=[thing_arn(things[19])],
            document="{}",
            schedulingConfig={"startTime": _at(start)},
        )
        await _clock(limited, advance=3600 + 60)
        canceled = await until(lambda: _status_is(iot, scheduled, "CANCELED"), 15, "the start to meet a full quota")
        assert "concurrency limit of 1" in canceled["comment"]
        assert await _executions(iot, scheduled) == {}
        assert (await _job(iot, rolling))["status"] == "IN_PROGRESS"
