"""A write's effects are visible when it answers (strict, the default), through boto3: the read right
after the write sees them, with no waiting, even with projection held back by a random delay. In eventual
consistency with the delay on, the delay is real and bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from iotjobs.runtime import pg
from tests.support.clients import data_client, group_arn, iot_client, thing_arn, unique
from tests.support.servers import Servers
from tests.support.stack import Stack, running
from tests.support.waiting import until_sync

pytestmark = pytest.mark.e2e

DELAY = 1.5
STRICT_DELAY = 0.3


@pytest.fixture(scope="module")
async def strict_stack(servers: Servers) -> AsyncIterator[Stack]:
    """Strict consistency while projection lags by up to 0.3 s: only waiting for the effects passes."""
    async with running(servers, consistency="strict", projection_delay_max_seconds=STRICT_DELAY) as stack:
        yield stack


def _job_on_things(iot: Any, count: int, **create: Any) -> tuple[str, list[str]]:
    things = sorted(unique("c-thing") for _ in range(count))
    for thing in things:
        iot.create_thing(thingName=thing)
    job = unique("c-job")
    iot.create_job(jobId=job, targets=[thing_arn(t) for t in things], document="{}", **create)
    return job, things


def _status(iot: Any, job: str, thing: str) -> str:
    return str(iot.describe_job_execution(jobId=job, thingName=thing)["execution"]["status"])


def _counters(iot: Any, job: str) -> dict[str, int]:
    details = iot.describe_job(jobId=job)["job"]["jobProcessDetails"]
    return {name: n for name, n in details.items() if n}


def test_create_job_lists_its_executions_at_once(strict_stack: Stack) -> None:
    iot = iot_client(strict_stack)
    job, things = _job_on_things(iot, 3)
    for thing in things:
        listed = iot.list_job_executions_for_thing(thingName=thing)["executionSummaries"]
        assert [(e["jobId"], e["jobExecutionSummary"]["status"]) for e in listed] == [(job, "QUEUED")]
    assert _counters(iot, job) == {"numberOfQueuedThings": 3}


def test_cancel_job_with_force_shows_every_execution_canceled_at_once(strict_stack: Stack) -> None:
    iot, data = iot_client(strict_stack), data_client(strict_stack)
    job, (running, *queued) = _job_on_things(iot, 4)
    data.update_job_execution(jobId=job, thingName=running, status="IN_PROGRESS")
    assert _status(iot, job, running) == "IN_PROGRESS"
    iot.cancel_job(jobId=job, force=True)
    assert {thing: _status(iot, job, thing) for thing in (running, *queued)} == dict.fromkeys(
        (running, *queued), "CANCELED"
    )
    described = iot.describe_job(jobId=job)["job"]
    assert described["status"] == "CANCELED"
    assert {k: v for k, v in described["jobProcessDetails"].items() if v} == {"numberOfCanceledThings": 4}


def test_device_updates_over_http_count_and_complete_the_job_at_once(strict_stack: Stack) -> None:
    iot, data = iot_client(strict_stack), data_client(strict_stack)
    job, (first, last) = _job_on_things(iot, 2)
    data.update_job_execution(jobId=job, thingName=first, status="IN_PROGRESS")
    assert _counters(iot, job) == {"numberOfInProgressThings": 1, "numberOfQueuedThings": 1}
    data.update_job_execution(jobId=job, thingName=first, status="SUCCEEDED")
    assert _counters(iot, job) == {"numberOfSucceededThings": 1, "numberOfQueuedThings": 1}
    assert iot.describe_job(jobId=job)["job"]["status"] == "IN_PROGRESS"
    data.start_next_pending_job_execution(thingName=last)
    data.update_job_execution(jobId=job, thingName=last, status="FAILED")
    described = iot.describe_job(jobId=job)["job"]
    assert described["status"] == "COMPLETED"
    assert {k: v for k, v in described["jobProcessDetails"].items() if v} == {
        "numberOfSucceededThings": 1,
        "numberOfFailedThings": 1,
    }


def test_delete_thing_shows_its_pending_execution_removed_at_once(strict_stack: Stack) -> None:
    iot = iot_client(strict_stack)
    job, (doomed, kept) = _job_on_things(iot, 2)
    iot.delete_thing(thingName=doomed)
    assert _status(iot, job, doomed) == "REMOVED"
    assert _counters(iot, job) == {"numberOfRemovedThings": 1, "numberOfQueuedThings": 1}
    assert _status(iot, job, kept) == "QUEUED"


def test_membership_changes_reach_a_continuous_job_at_once(strict_stack: Stack) -> None:
    iot = iot_client(strict_stack)
    group = unique("c-group")
    iot.create_thing_group(thingGroupName=group)
    job = unique("c-continuous")
    iot.create_job(jobId=job, targets=[group_arn(group)], document="{}", targetSelection="CONTINUOUS")
    joiner = unique("c-joiner")
    iot.create_thing(thingName=joiner)
    iot.add_thing_to_thing_group(thingGroupName=group, thingName=joiner)
    assert _status(iot, job, joiner) == "QUEUED"
    iot.remove_thing_from_thing_group(thingGroupName=group, thingName=joiner)
    assert _status(iot, job, joiner) == "REMOVED"


def test_registry_updates_are_readable_at_once(strict_stack: Stack) -> None:
    iot = iot_client(strict_stack)
    thing, group = unique("c-upd"), unique("c-upd-group")
    iot.create_thing(thingName=thing)
    iot.create_thing_group(thingGroupName=group)
    iot.update_thing(thingName=thing, thingTypeName="sensor", attributePayload={"attributes": {"a": "1"}})
    described = iot.describe_thing(thingName=thing)
    assert (described["attributes"], described["thingTypeName"], described["version"]) == ({"a": "1"}, "sensor", 2)
    iot.update_thing_group(thingGroupName=group, thingGroupProperties={"thingGroupDescription": "now"})
    described = iot.describe_thing_group(thingGroupName=group)
    assert (described["version"], described["thingGroupProperties"]["thingGroupDescription"]) == (2, "now")

    job = unique("c-continuous")
    iot.create_job(jobId=job, targets=[group_arn(group)], document="{}", targetSelection="CONTINUOUS")
    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToAdd=[group])
    assert _status(iot, job, thing) == "QUEUED"
    iot.update_thing_groups_for_thing(thingName=thing, thingGroupsToRemove=[group])
    assert _status(iot, job, thing) == "REMOVED"
    assert iot.list_thing_groups_for_thing(thingName=thing)["thingGroups"] == []


@pytest.fixture(scope="module")
async def eventual_stack(servers: Servers) -> AsyncIterator[Stack]:
    async with running(servers, consistency="eventual", projection_delay_max_seconds=DELAY) as stack:
        yield stack


async def test_eventual_consistency_with_the_delay_is_late_but_bounded(eventual_stack: Stack) -> None:
    iot = iot_client(eventual_stack)

    def create_then_read(name: str) -> tuple[bool, float]:
        """Whether the thing was readable right after its creation answered, and when it was."""
        iot.create_thing(thingName=name)
        answered = time.monotonic()
        seen_at_once = _exists(iot, name)
        until_sync(lambda: _exists(iot, name), timeout=DELAY + 5.0, what=f"{name} readable")
        return seen_at_once, time.monotonic() - answered

    outcomes = [await asyncio.to_thread(create_then_read, unique("e-thing")) for _ in range(6)]
    # Six random delays of up to 1.5 s: all of them shorter than one read is out of reach.
    assert not all(seen for seen, _after in outcomes), outcomes
    assert max(after for _seen, after in outcomes) < DELAY + 5.0


def _exists(iot: Any, name: str) -> bool:
    try:
        iot.describe_thing(thingName=name)
    except iot.exceptions.ResourceNotFoundException:
        return False
    return True


async def test_a_repeated_write_answers_only_once_the_first_is_readable(servers: Servers) -> None:
    """A retried CreateThing changes nothing, but it must not answer before the first one's thing is readable:
    while projection is held (its offsets table locked), the repeat is a 503 too, and once projection resumes
    it answers and the thing reads back."""
    async with running(servers, consistency="strict", request_timeout_seconds=3.0) as stack:
        iot = iot_client(stack, config=Config(retries={"total_max_attempts": 1}))
        thing = unique("repeat")
        conn = await pg.connect(stack.settings.pg_dsn)
        try:
            holding = conn.transaction()
            await holding.start()
            await conn.execute("LOCK TABLE projector_offsets IN ACCESS EXCLUSIVE MODE")
            for attempt in ("first", "repeat"):
                with pytest.raises(ClientError) as unreadable:
                    await asyncio.to_thread(iot.create_thing, thingName=thing)
                assert unreadable.value.response["Error"]["Code"] == "ServiceUnavailableException", attempt
            await holding.rollback()
        finally:
            await conn.close()
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        assert (await asyncio.to_thread(iot.describe_thing, thingName=thing))["thingName"] == thing
