"""CONTINUOUS jobs follow their target groups, and AssociateTargetsWithJob adds targets to them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.support.clients import group_arn, iot_client, thing_arn, unique
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


async def _call(fn: Any, **kwargs: Any) -> Any:
    return await asyncio.to_thread(fn, **kwargs)


async def _executions(iot: Any, job: str) -> dict[str, tuple[str, int]]:
    listed = await _call(iot.list_job_executions_for_job, jobId=job)
    return {
        e["thingArn"].rsplit("/", 1)[1]: (
            e["jobExecutionSummary"]["status"],
            e["jobExecutionSummary"]["executionNumber"],
        )
        for e in listed["executionSummaries"]
    }


async def test_a_thing_joining_a_target_group_gets_the_continuous_job(stack: Stack) -> None:
    iot = iot_client(stack)
    group, first, joiner = unique("cg"), unique("c1"), unique("c2")
    await _call(iot.create_thing_group, thingGroupName=group)
    for thing in (first, joiner):
        await _call(iot.create_thing, thingName=thing)
    await _call(iot.add_thing_to_thing_group, thingGroupName=group, thingName=first)
    job = unique("cont")
    await _call(iot.create_job, jobId=job, targets=[group_arn(group)], document="{}", targetSelection="CONTINUOUS")

    async def listed(expected: dict[str, tuple[str, int]]) -> bool:
        return await _executions(iot, job) == expected

    await until(lambda: listed({first: ("QUEUED", 1)}), what="the first member's execution")
    await _call(iot.add_thing_to_thing_group, thingGroupName=group, thingName=joiner)
    await until(lambda: listed({first: ("QUEUED", 1), joiner: ("QUEUED", 1)}), what="the joiner's execution")

    # leaving the group removes the pending execution; coming back queues a new one
    await _call(iot.remove_thing_from_thing_group, thingGroupName=group, thingName=joiner)
    await until(lambda: listed({first: ("QUEUED", 1), joiner: ("REMOVED", 1)}), what="the removal")
    await _call(iot.add_thing_to_thing_group, thingGroupName=group, thingName=joiner)
    await until(lambda: listed({first: ("QUEUED", 1), joiner: ("QUEUED", 2)}), what="the re-join")

    described = (await _call(iot.describe_job, jobId=job))["job"]
    assert (described["targetSelection"], described["status"]) == ("CONTINUOUS", "IN_PROGRESS")
    assert [j["jobId"] for j in (await _call(iot.list_jobs, targetSelection="CONTINUOUS"))["jobs"]].count(job) == 1


async def test_associate_targets_with_a_continuous_job(stack: Stack) -> None:
    iot = iot_client(stack)
    first, added = unique("a1"), unique("a2")
    for thing in (first, added):
        await _call(iot.create_thing, thingName=thing)
    job = unique("assoc")
    await _call(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(first)],
        document="{}",
        targetSelection="CONTINUOUS",
        description="grows",
    )
    answer = await _call(
        iot.associate_targets_with_job, jobId=job, targets=[thing_arn(added), thing_arn(first)], comment="more"
    )
    assert (answer["jobId"], answer["description"]) == (job, "grows")
    described = (await _call(iot.describe_job, jobId=job))["job"]
    assert described["targets"] == [thing_arn(first), thing_arn(added)]

    async def both() -> bool:
        return set(await _executions(iot, job)) == {first, added}

    await until(both, what="an execution on the associated thing")

    with pytest.raises(iot.exceptions.ResourceNotFoundException, match="missing"):
        await _call(iot.associate_targets_with_job, jobId=job, targets=[thing_arn(unique("missing"))])
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        await _call(iot.associate_targets_with_job, jobId=unique("none"), targets=[thing_arn(first)])
    many = [thing_arn(unique("x")) for _ in range(99)]
    for arn in many:
        await _call(iot.create_thing, thingName=arn.rsplit("/", 1)[1])
    with pytest.raises(iot.exceptions.InvalidRequestException, match="at most 100"):
        await _call(iot.associate_targets_with_job, jobId=job, targets=many)


async def test_associate_targets_needs_a_continuous_job_in_progress(stack: Stack) -> None:
    iot = iot_client(stack)
    thing = unique("s")
    await _call(iot.create_thing, thingName=thing)
    job = unique("snap")
    await _call(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
    with pytest.raises(iot.exceptions.InvalidRequestException, match="CONTINUOUS"):
        await _call(iot.associate_targets_with_job, jobId=job, targets=[thing_arn(thing)])


async def test_update_thing_groups_for_thing_moves_a_thing_between_continuous_jobs(stack: Stack) -> None:
    """Added to two groups and removed from a third, each followed by a CONTINUOUS job: the thing gets the
    added groups' jobs at once; the removed group's job is REMOVED unless another of its targets reaches it."""
    iot = iot_client(stack)
    leaving, joining, also = unique("u-from"), unique("u-to"), unique("u-to")
    thing = unique("u-mover")
    for group in (leaving, joining, also):
        await _call(iot.create_thing_group, thingGroupName=group)
    await _call(iot.create_thing, thingName=thing)
    await _call(iot.add_thing_to_thing_group, thingGroupName=leaving, thingName=thing)
    jobs = {name: unique(f"u-{name}") for name in ("leaving", "joining", "also", "both")}
    for name, targets in (
        ("leaving", [leaving]),
        ("joining", [joining]),
        ("also", [also]),
        ("both", [leaving, joining]),
    ):
        await _call(
            iot.create_job,
            jobId=jobs[name],
            targets=[group_arn(g) for g in targets],
            document="{}",
            targetSelection="CONTINUOUS",
        )

    async def statuses() -> dict[str, tuple[str, int]]:
        listed = await _call(iot.list_job_executions_for_thing, thingName=thing)
        by_job = {job: name for name, job in jobs.items()}
        return {
            by_job[e["jobId"]]: (e["jobExecutionSummary"]["status"], e["jobExecutionSummary"]["executionNumber"])
            for e in listed["executionSummaries"]
        }

    before = {"leaving": ("QUEUED", 1), "both": ("QUEUED", 1)}

    async def released() -> bool:
        return await statuses() == before

    await until(released, what="the executions of the jobs targeting the thing's first group")

    await _call(
        iot.update_thing_groups_for_thing,
        thingName=thing,
        thingGroupsToAdd=[joining, also],
        thingGroupsToRemove=[leaving],
    )
    # Strict consistency: every effect is readable once the call answers.
    assert await statuses() == {
        "leaving": ("REMOVED", 1),
        "joining": ("QUEUED", 1),
        "also": ("QUEUED", 1),
        "both": ("QUEUED", 1),  # still reached, through the group it joined: the same execution
    }
    removed = (await _call(iot.describe_job, jobId=jobs["leaving"]))["job"]
    assert (removed["status"], removed["jobProcessDetails"]["numberOfRemovedThings"]) == ("IN_PROGRESS", 1)

    # Back again: the removed group's job runs once more, with the next execution number.
    await _call(iot.update_thing_groups_for_thing, thingName=thing, thingGroupsToAdd=[leaving])
    assert (await statuses())["leaving"] == ("QUEUED", 2)
