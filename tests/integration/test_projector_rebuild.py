"""Read models rebuilt from the event log equal the live ones, row for row."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from iotjobs.runtime import pg
from iotjobs.runtime.projection import APPLICATION_NAME as WAITER_NAME
from services.projector.projector import APPLICATION_NAME, PROJECTION_LOCK
from tests.support.clients import MqttDevice, group_arn, iot_client, thing_arn, unique
from tests.support.stack import Stack, projected_to_end, read_model_rows, rebuild_read_models
from tests.support.waiting import until

pytestmark = pytest.mark.integration


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
    templates = [unique("tmpl") for _ in range(2)]
    for template in templates:
        await asyncio.to_thread(
            iot.create_job_template,
            jobTemplateId=template,
            description="rebuilt",
            document='{"t": 1}',
            tags=[{"Key": "k", "Value": "v"}],
        )
    await asyncio.to_thread(iot.delete_job_template, jobTemplateId=templates[1])
    job_arn = f"arn:aws:iot:us-east-1:123456789012:job/{jobs[0]}"
    await asyncio.to_thread(iot.tag_resource, resourceArn=job_arn, tags=[{"Key": "a", "Value": "1"}, {"Key": "b"}])
    await asyncio.to_thread(iot.untag_resource, resourceArn=job_arn, tagKeys=["b"])
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
    await _registry_workload(stack, group, things)
    return jobs[0]


async def _registry_workload(stack: Stack, group: str, things: list[str]) -> None:
    """Deletes and a removal, and the REMOVED executions they cause (aws-iot-jobs.md §6.9); updates of a
    thing's and a group's record."""
    iot = iot_client(stack)
    extra, spare, job = unique("t"), unique("g"), unique("j")
    await asyncio.to_thread(iot.create_thing, thingName=extra)
    await asyncio.to_thread(iot.add_thing_to_thing_group, thingGroupName=group, thingName=extra)
    await asyncio.to_thread(iot.create_thing_group, thingGroupName=spare, parentGroupName=group)
    await asyncio.to_thread(iot.add_thing_to_thing_group, thingGroupName=spare, thingName=things[2])
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[group_arn(group)], document="{}")

    async def statuses() -> dict[str, str]:
        listed = await asyncio.to_thread(iot.list_job_executions_for_job, jobId=job)
        return {e["thingArn"]: e["jobExecutionSummary"]["status"] for e in listed["executionSummaries"]}

    await until(lambda: _has(statuses(), 5), what="five executions of the registry job")
    await asyncio.to_thread(iot.remove_thing_from_thing_group, thingGroupName=group, thingName=things[1])
    await asyncio.to_thread(iot.delete_thing, thingName=extra)
    await asyncio.to_thread(iot.delete_thing_group, thingGroupName=spare)

    async def removed() -> bool:
        now = await statuses()
        return sorted(now.values()) == ["QUEUED", "QUEUED", "QUEUED", "REMOVED", "REMOVED"] and (
            now[thing_arn(things[1])] == now[thing_arn(extra)] == "REMOVED"
        )

    await until(removed, what="the leaver's and the deleted thing's executions to be REMOVED")
    merged = {"attributes": {"model": "x2", "site": "a"}, "merge": True}
    await asyncio.to_thread(iot.update_thing, thingName=things[0], thingTypeName="sensor", attributePayload=merged)
    dropped = {"attributes": {"site": ""}, "merge": True}
    await asyncio.to_thread(iot.update_thing, thingName=things[0], attributePayload=dropped)
    properties = {"thingGroupDescription": "rebuilt", "attributePayload": {"attributes": {"k": "v"}}}
    await asyncio.to_thread(iot.update_thing_group, thingGroupName=group, thingGroupProperties=properties)


async def _queued(iot: Any, job: str, count: int) -> bool:
    listed = await asyncio.to_thread(iot.list_job_executions_for_job, jobId=job)
    return len(listed["executionSummaries"]) == count


async def _has(listing: Any, count: int) -> bool:
    return len(await listing) == count


async def _accepted(request: Any) -> bool:
    outcome, _ = await request
    return outcome == "accepted"


async def _lifecycle_workload(stack: Stack) -> dict[str, str]:
    """Jobs updated, associated, cancelled and deleted, and an execution deleted: each leaves its rows."""
    iot = iot_client(stack)
    things = [unique("lc") for _ in range(3)]
    for thing in things:
        await asyncio.to_thread(iot.create_thing, thingName=thing)
    cont, cancelled, gone = unique("cont"), unique("cancel"), unique("gone")
    await asyncio.to_thread(
        iot.create_job, jobId=cont, targets=[thing_arn(things[0])], document="{}", targetSelection="CONTINUOUS"
    )
    await asyncio.to_thread(iot.associate_targets_with_job, jobId=cont, targets=[thing_arn(things[1])])
    await asyncio.to_thread(
        iot.update_job, jobId=cont, description="updated", jobExecutionsRolloutConfig={"maximumPerMinute": 5}
    )
    await asyncio.to_thread(iot.create_job, jobId=cancelled, targets=[thing_arn(t) for t in things], document="{}")
    await asyncio.to_thread(iot.create_job, jobId=gone, targets=[thing_arn(things[2])], document="{}")
    await until(lambda: _queued(iot, cancelled, 3), what="executions queued")
    await asyncio.to_thread(iot.cancel_job, jobId=cancelled, reasonCode="STOP", comment="rebuild")
    await until(lambda: _queued(iot, gone, 1), what="an execution queued")
    await asyncio.to_thread(iot.delete_job_execution, jobId=gone, thingName=things[2], executionNumber=1, force=True)
    await asyncio.to_thread(iot.delete_job, jobId=gone, force=True)
    return {"continuous": cont, "cancelled": cancelled, "deleted": gone}


async def test_rebuild_from_offset_zero_gives_identical_rows(stack: Stack) -> None:
    await _workload(stack)
    jobs = await _lifecycle_workload(stack)
    await projected_to_end(stack)
    live = await read_model_rows(stack.settings.pg_dsn)
    by_id = {r["job_id"]: r for r in live["jobs"]}
    assert jobs["deleted"] not in by_id and by_id[jobs["cancelled"]]["status"] == "CANCELED"
    assert len(by_id[jobs["continuous"]]["targets"]) == 2
    assert {r["job_id"] for r in live["job_executions"]} >= {jobs["continuous"], jobs["cancelled"]}
    assert jobs["deleted"] not in {r["job_id"] for r in live["job_executions"]}
    live_counts = {"job_executions": len(live["job_executions"]) - 5, "things": len(live["things"]) - 3}
    assert live_counts == {"job_executions": 10, "things": 4}
    assert len(live["thing_groups"]) == 1 and len(live["thing_group_members"]) == 3
    (updated_group,) = live["thing_groups"]
    assert (updated_group["description"], updated_group["attributes"], updated_group["version"]) == (
        "rebuilt",
        {"k": "v"},
        2,
    )
    assert [(r["attributes"], r["version"]) for r in live["things"] if r["thing_type_name"] == "sensor"] == [
        ({"model": "x2"}, 4)
    ]
    assert sorted(r["status"] for r in live["job_executions"]).count("REMOVED") == 2
    assert len(live["job_templates"]) == 1
    assert sorted(sorted(r["tags"].items()) for r in live["resource_tags"]) == [[("a", "1")], [("k", "v")]]

    stack.processes["projector"].terminate()
    await asyncio.to_thread(stack.processes["projector"].wait, 15)
    conn: asyncpg.Connection = await pg.connect(stack.settings.pg_dsn)
    try:
        await conn.execute("UPDATE job_executions SET status = 'CORRUPTED'")  # the rebuild must not keep rows
    finally:
        await conn.close()
    result = await rebuild_read_models(stack)
    assert result.returncode == 0, result.stderr
    assert "read models rebuilt from" in result.stdout
    assert await read_model_rows(stack.settings.pg_dsn) == live

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
    result = await rebuild_read_models(stack)
    assert result.returncode != 0
    assert "a projector is running" in result.stderr


async def test_projector_and_control_recover_when_their_database_connections_die(stack: Stack) -> None:
    iot = iot_client(stack)
    admin: asyncpg.Connection = await pg.connect(stack.settings.pg_dsn)
    try:
        killed = await admin.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE application_name = ANY($1::text[]) AND datname = $2""",
            [APPLICATION_NAME, WAITER_NAME],
            stack.database,
        )
        assert killed == 2
        thing = unique("after-kill")
        # The write waits for the projector (read-your-writes), so it succeeds only once the projector is back.
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        assert (await asyncio.to_thread(iot.describe_thing, thingName=thing))["thingName"] == thing

        async def reconnected() -> bool:
            count = await admin.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = ANY($1::text[]) AND datname = $2",
                [APPLICATION_NAME, WAITER_NAME],
                stack.database,
            )
            return bool(count == 2)

        await until(reconnected, what="new connections of the projector and of control's waiter")
    finally:
        await admin.close()
