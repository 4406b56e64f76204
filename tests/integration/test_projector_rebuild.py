"""Read models rebuilt from the event log equal the live ones, row for row."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from typing import Any

import asyncpg
import pytest

from iotjobs.runtime import pg
from services.projector.projector import PROJECTION_LOCK, READ_MODEL_TABLES
from tests.support.clients import MqttDevice, group_arn, iot_client, thing_arn, unique
from tests.support.events import next_offsets
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.integration


async def _rebuild(stack: Stack) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.admin", "rebuild"],
        env={**os.environ, **stack.settings.env()},
        capture_output=True,
        text=True,
        timeout=120,
    )


async def _snapshot(dsn: str) -> dict[str, list[dict[str, Any]]]:
    conn = await pg.connect(dsn)
    try:
        tables = {}
        for table in (*READ_MODEL_TABLES, "projector_offsets"):
            rows = await conn.fetch(f"SELECT * FROM {table}")
            tables[table] = sorted((dict(r) for r in rows), key=repr)
        return tables
    finally:
        await conn.close()


async def _workload(stack: Stack) -> str:
    iot = iot_client(stack)
    group = unique("g")
    await asyncio.to_thread(iot.create_thing_group, thingGroupName=group)
    things = [unique("t") for _ in range(4)]
    for thing in things:
        await asyncio.to_thread(iot.create_thing, thingName=thing, attributePayload={"attributes": {"model": "x1"}})
        await asyncio.to_thread(iot.add_thing_to_thing_group, thingGroupName=group, thingName=thing)
    jobs = [unique("j") for _ in range(2)]
    await asyncio.to_thread(iot.create_job, jobId=jobs[0], targets=[group_arn(group)], document='{"a": 1}')
    await asyncio.to_thread(
        iot.create_job,
        jobId=jobs[1],
        targets=[thing_arn(things[0])],
        document="{}",
        timeoutConfig={"inProgressTimeoutInMinutes": 1},
    )
    async with MqttDevice(stack, things[0]) as device:

        async def both_pending() -> bool:
            _, body = await device.request("get")
            return len(body["queuedJobs"]) == 2

        await until(both_pending, what="two pending jobs")
        await device.request(f"{jobs[0]}/update", {"status": "IN_PROGRESS", "statusDetails": {"p": "50"}})
        await device.request(f"{jobs[0]}/update", {"status": "SUCCEEDED"})
        await device.request(f"{jobs[1]}/update", {"status": "IN_PROGRESS"})
    for thing in things[1:]:
        async with MqttDevice(stack, thing) as device:
            await until(lambda d=device: _accepted(d.request(f"{jobs[0]}/update", {"status": "FAILED"})), what="update")

    async def settled() -> bool:
        done = await asyncio.to_thread(iot.describe_job, jobId=jobs[0])
        timed = await asyncio.to_thread(iot.describe_job_execution, jobId=jobs[1], thingName=things[0])
        return done["job"]["status"] == "COMPLETED" and timed["execution"]["status"] == "TIMED_OUT"

    await until(settled, timeout=30, what="job completion and the timeout")
    return jobs[0]


async def _accepted(request: Any) -> bool:
    outcome, _ = await request
    return outcome == "accepted"


async def _projected_to_end(stack: Stack) -> None:
    conn: asyncpg.Connection = await pg.connect(stack.settings.pg_dsn)
    try:

        async def caught_up() -> bool:
            ends = await next_offsets(stack.settings)
            rows = await conn.fetch("SELECT partition, next_offset FROM projector_offsets")
            return ends == {r["partition"]: r["next_offset"] for r in rows} == await next_offsets(stack.settings)

        await until(caught_up, what="the projector to reach the end of the log")
    finally:
        await conn.close()


async def test_rebuild_from_offset_zero_gives_identical_rows(stack: Stack) -> None:
    await _workload(stack)
    await _projected_to_end(stack)
    live = await _snapshot(stack.settings.pg_dsn)
    assert len(live["job_executions"]) == 5 and len(live["things"]) == 4

    stack.processes["projector"].terminate()
    await asyncio.to_thread(stack.processes["projector"].wait, 15)
    conn: asyncpg.Connection = await pg.connect(stack.settings.pg_dsn)
    try:
        await conn.execute("UPDATE job_executions SET status = 'CORRUPTED'")  # the rebuild must not keep rows
    finally:
        await conn.close()
    result = await _rebuild(stack)
    assert result.returncode == 0, result.stderr
    assert "read models rebuilt from" in result.stdout
    assert await _snapshot(stack.settings.pg_dsn) == live

    stack.spawn("projector")  # projecting resumes where the rebuild stopped


async def test_rebuild_refuses_while_a_projector_runs(stack: Stack) -> None:
    conn: asyncpg.Connection = await pg.connect(stack.settings.pg_dsn)
    try:

        async def projector_holds_its_lock() -> bool:
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = $1 AND mode = 'ShareLock'",
                PROJECTION_LOCK,
            )
            return bool(held)

        await until(projector_holds_its_lock, what="the projector to run")
    finally:
        await conn.close()
    result = await _rebuild(stack)
    assert result.returncode != 0
    assert "a projector is running" in result.stderr
