"""Ownership under faults: a stalled dataplane owner is fenced, what one restore replayed survives the next,
conflicting requests on one execution never both win, a control plane killed during a fan-out finishes it
once, and read models survive a killed projector.

Each test drives a real stack through boto3 and MQTT and checks what clients were told against the counted
event log (`tests.support.events.read_events`, which applies the markers' counting rule).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from botocore.exceptions import BotoCoreError, ClientError

from iotjobs.domain.job import JobCreated
from iotjobs.domain.thing import ExecutionQueued, ExecutionUpdated
from iotjobs.domain.thing import key_for as thing_key
from iotjobs.runtime.eventlog import is_marker
from iotjobs.runtime.snapshots import CHECKPOINT_KEY
from iotjobs.runtime.topics import Topics, partition_for
from tests.support.clients import MqttDevice, group_arn, iot_client, thing_arn, unique
from tests.support.events import read_events
from tests.support.faults import create_things
from tests.support.servers import Servers
from tests.support.stack import (
    Stack,
    projected_to_end,
    read_model_rows,
    rebuild_read_models,
    running,
    stack_with_two_dataplanes,
)
from tests.support.waiting import until

pytestmark = pytest.mark.e2e

TERMINAL = {"SUCCEEDED", "FAILED", "REJECTED", "CANCELED", "TIMED_OUT", "REMOVED"}


@pytest.fixture
async def bridged(servers: Servers) -> AsyncIterator[tuple[Stack, str]]:
    async with stack_with_two_dataplanes(servers) as pair:
        yield pair


@pytest.fixture
async def own_stack(servers: Servers) -> AsyncIterator[Stack]:
    """A stack for one test, never alongside another direct-ingress stack (both would answer every device on
    the shared broker); minutes last one second so timeouts fire within a test."""
    async with running(servers, seconds_per_minute=1.0) as stack:
        yield stack


# --- shared steps -------------------------------------------------------------------------------------


async def _start(device: MqttDevice, timeout: float = 30.0) -> int:
    """start-next until the job's execution is there to start (its release is asynchronous); its versionNumber."""

    async def started() -> int | None:
        try:
            outcome, body = await device.request("start-next", timeout=3.0)
        except TimeoutError:
            return None
        return body["execution"]["versionNumber"] if outcome == "accepted" and "execution" in body else None

    return await until(started, timeout, f"{device.thing} to start its execution")


def _updates(events: list[tuple[Any, dict[str, Any]]], job: str) -> dict[str, list[ExecutionUpdated]]:
    """Per thing, the counted ExecutionUpdated events of the job, in versionNumber order."""
    found: dict[str, list[ExecutionUpdated]] = defaultdict(list)
    for event, _envelope in events:
        if isinstance(event, ExecutionUpdated) and event.job_id == job:
            found[event.thing_name].append(event)
    for changes in found.values():
        changes.sort(key=lambda e: e.version_number)
    return found


async def _described(iot: Any, job: str, thing: str) -> dict[str, Any] | None:
    try:
        found = await asyncio.to_thread(iot.describe_job_execution, jobId=job, thingName=thing)
    except iot.exceptions.ResourceNotFoundException:
        return None
    return dict(found["execution"])


async def _read_model_shows(iot: Any, job: str, thing: str, last: ExecutionUpdated) -> None:
    """DescribeJobExecution converges to the last counted change of the thing's execution."""
    expected = (last.status, last.version_number, last.status_details)

    async def converged() -> bool:
        found = await _described(iot, job, thing)
        shown = found and (found["status"], found["versionNumber"], found["statusDetails"].get("detailsMap", {}))
        return shown == expected

    await until(converged, 30, f"the read model of {thing} to show {expected}")


async def _records(stack: Stack, topic: str) -> list[tuple[int, int, bytes, dict[str, Any] | None]]:
    """Every record of one of the stack's topics: (partition, offset, key, value)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False, max_partition_fetch_bytes=1 << 24
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(stack.settings.partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        end = await consumer.end_offsets(tps)
        found: list[tuple[int, int, bytes, dict[str, Any] | None]] = []
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                found.extend((tp.partition, r.offset, r.key, r.value and orjson.loads(r.value)) for r in records)
        return found
    finally:
        await consumer.stop()


# --- 1. a stalled dataplane owner ---------------------------------------------------------------------

FLEET = 20
PACE = 0.1
"""Seconds between a device's updates: the fleet keeps a steady stream going without saturating two cores."""
ATTEMPT_TIMEOUT = (0.5, 2.0)
"""How long a device waits for a reply before it sends the update again, drawn anew for every attempt: Mosquitto
hands the shared subscription's messages to its subscribers in turn, and devices retrying in lockstep would
each keep landing on the same (stalled) instance."""
UPDATE_BOUND = 30.0
"""Seconds a device keeps trying one update before the test fails."""


@dataclass
class Updater:
    """A device that keeps updating its execution, each update carrying a counter `n`, and retries an
    update that got no reply with the same body until it knows the update applied."""

    thing: str
    job: str
    applied: list[tuple[int, int]] = field(default_factory=list)
    """(n, versionNumber it produced), in order, as the device learnt them."""
    accepted: list[dict[str, Any]] = field(default_factory=list)
    """Every accepted reply to an update, including late ones to attempts it had given up on."""
    stale: list[dict[str, Any]] = field(default_factory=list)
    """VersionMismatch replies showing a state older than the device's own acknowledged writes."""
    retries: int = 0

    async def run(self, device: MqttDevice, stop: asyncio.Event) -> None:
        version = await _start(device)
        n = 0
        while not stop.is_set():
            n += 1
            version = await self._apply(device, n, version)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PACE)
        while not device.untokened.empty():
            topic, body = device.untokened.get_nowait()
            if topic.endswith("/update/accepted"):
                self.accepted.append(body)

    async def _apply(self, device: MqttDevice, n: int, version: int) -> int:
        body = {
            "status": "IN_PROGRESS",
            "expectedVersion": version,
            "statusDetails": {"n": str(n)},
            "includeJobExecutionState": True,
        }
        mine = {"status": "IN_PROGRESS", "statusDetails": {"n": str(n)}, "versionNumber": version + 1}
        deadline = time.monotonic() + UPDATE_BOUND
        while time.monotonic() < deadline:
            try:
                wait = random.uniform(*ATTEMPT_TIMEOUT)
                outcome, reply = await device.request(f"{self.job}/update", body, timeout=wait)
            except TimeoutError:
                self.retries += 1
                continue
            state = reply.get("executionState")
            if outcome == "accepted":
                self.accepted.append(reply)
                assert state == mine, f"{self.thing}: update {n} at version {version} accepted as {state}"
            elif reply.get("code") != "VersionMismatch":
                raise AssertionError(f"{self.thing}: update {n} at version {version} rejected: {reply}")
            elif state != mine:
                # Only a stalled former owner answering from memory can show less than the device's own
                # acknowledged writes (ADR 0007 allows it until it notices); the device asks again.
                assert state is not None and state["versionNumber"] <= version, (self.thing, n, version, reply)
                self.stale.append(reply)
                await asyncio.sleep(0.2)  # back-off before asking again, not a wait for anything
                continue
            self.applied.append((n, version + 1))
            return version + 1
        last = self.stale[-1] if self.stale else None
        raise AssertionError(f"{self.thing}: update {n} at version {version} never applied; last stale answer {last}")


def _partitions_of(things: list[str], partitions: int) -> dict[int, list[str]]:
    by_partition: dict[int, list[str]] = defaultdict(list)
    for thing in things:
        by_partition[partition_for(thing_key(thing), partitions)].append(thing)
    return by_partition


async def _split(stack: Stack, instances: dict[str, str]) -> dict[str, list[int]] | None:
    """The partitions each instance serves, once every instance is ready and they serve each partition once."""
    served: dict[str, list[int]] = {}
    for name, url in instances.items():
        health = await stack.health(url)
        if not health or not health["ready"]:
            return None
        served[name] = health["partitions"]
    owned = sorted(p for partitions in served.values() for p in partitions)
    return served if owned == list(range(stack.settings.partitions)) else None


async def _latest_markers(stack: Stack, scope: str) -> dict[int, str]:
    """Per partition of the events topic, the token of the latest ownership marker of `scope`."""
    records = await _records(stack, Topics.of(stack.settings).events)
    return {p: v["marker"] for p, _offset, _key, v in records if v and is_marker(v) and v["scope"] == scope}


async def test_a_stalled_dataplane_owner_neither_loses_nor_doubles_an_acknowledged_update(
    bridged: tuple[Stack, str],
) -> None:
    """SIGSTOP the dataplane instance that owns most of a fleet while every device keeps updating, until the
    other instance has taken its partitions over; SIGCONT it. Whatever the stalled owner decided meanwhile must
    not be acknowledged unless it counts, and every acknowledged update must count exactly once."""
    stack, second = bridged
    iot = iot_client(stack)
    things, group, job = [unique("stall") for _ in range(FLEET)], unique("stall-g"), unique("stall-job")
    await create_things(iot, things, group)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[group_arn(group)], document="{}")
    instances = {"dataplane": stack.dataplane_url, "dataplane-2": second}
    instance_ids = {"dataplane": stack.settings.instance_id, "dataplane-2": "second"}
    everything = list(range(stack.settings.partitions))

    updaters = {thing: Updater(thing, job) for thing in things}
    stop = asyncio.Event()
    async with contextlib.AsyncExitStack() as connections:
        devices = [await connections.enter_async_context(MqttDevice(stack, thing)) for thing in things]
        fleet = [asyncio.ensure_future(updaters[d.thing].run(d, stop)) for d in devices]

        def progressed(since: dict[str, int], count: int) -> Callable[[], Any]:
            async def check() -> bool:
                for task in fleet:
                    if task.done():
                        task.result()  # a device that gave up fails the test now
                return all(len(u.applied) >= since.get(t, 0) + count for t, u in updaters.items())

            return check

        try:
            await until(progressed({}, 3), 30, "every device to have its first updates applied")

            # Stall the instance that owns the most things, for longer than the group's session timeout.
            served = await until(lambda: _split(stack, instances), 30, "the partitions to be split")
            by_partition = _partitions_of(things, stack.settings.partitions)
            victim = max(served, key=lambda name: sum(len(by_partition[p]) for p in served[name]))
            survivor = next(name for name in instances if name != victim)
            stalled_things = [t for p in served[victim] for t in by_partition[p]]
            assert stalled_things, f"neither instance serves a thing: {served}"

            stack.pause(victim)
            paused_at = time.monotonic()
            at_pause = {t: len(u.applied) for t, u in updaters.items()}

            async def taken_over() -> bool:
                health = await stack.health(instances[survivor])
                return bool(health and health["partitions"] == everything) and await progressed(at_pause, 1)()

            await until(taken_over, 30, f"{survivor} to serve every partition and every device to go on")
            stalled_for = time.monotonic() - paused_at
            stack.resume(victim)
            at_resume = {t: len(u.applied) for t, u in updaters.items()}

            async def settled() -> bool:
                return bool(await _split(stack, instances)) and await progressed(at_resume, 3)()

            try:
                await until(settled, 30, "both instances to serve their partitions again and devices to go on")
            except AssertionError as err:
                lagging = {
                    t: (partition_for(thing_key(t), stack.settings.partitions), u.stale[-1] if u.stale else None)
                    for t, u in updaters.items()
                    if len(u.applied) < at_resume[t] + 3
                }
                served_now = {name: await stack.health(url) for name, url in instances.items()}
                markers = await _latest_markers(stack, "dataplane")
                detail = f"lagging (partition, last stale answer): {lagging}\nhealth: {served_now}\nmarkers: {markers}"
                raise AssertionError(f"{err}\n{detail}") from None
            stop.set()
            await asyncio.wait_for(asyncio.gather(*fleet), UPDATE_BOUND + 5)
        finally:
            for task in fleet:
                task.cancel()
            await asyncio.gather(*fleet, return_exceptions=True)
    assert stalled_for >= 6, "the stall did not outlast the consumer group's session timeout"

    # Once ownership settles, whoever serves a partition holds its latest marker: what it appends counts. (Health
    # and markers are read at different moments, and a member re-marks a partition until it learns it lost it.)
    disagreements: list[str] = []

    async def settled_ownership() -> bool:
        served = await _split(stack, instances)
        if served is None:
            return False
        markers = await _latest_markers(stack, "dataplane")
        disagreements[:] = [
            f"{name} serves partition {p}, but the latest dataplane marker there is {markers[p]}"
            for name, partitions in served.items()
            for p in partitions
            if not markers[p].startswith(f"{instance_ids[name]}-")
        ]
        return not disagreements

    try:
        await until(settled_ownership, 30, "every partition's server to hold its latest marker")
    except AssertionError as err:
        raise AssertionError(f"{err}: {disagreements}") from None

    changes = _updates(await read_events(stack.settings), job)
    for thing, updater in updaters.items():
        counted = [e for e in changes[thing] if e.cause == "update"]
        by_n = Counter(e.status_details.get("n") for e in counted)
        # (a) every update the device knows applied is in the counted log exactly once, at the version it
        # was acknowledged with, and nothing else was applied
        for reply in updater.accepted:
            state = reply["executionState"]
            times = by_n[state["statusDetails"]["n"]]
            assert times == 1, f"{thing}: {reply} was acknowledged, and its update counts {times} times"
            assert (int(state["statusDetails"]["n"]), state["versionNumber"]) in updater.applied, (thing, reply)
        assert [(int(e.status_details["n"]), e.version_number) for e in counted] == updater.applied, thing
        assert [e.version_number for e in changes[thing]] == list(range(2, 2 + len(changes[thing]))), thing
        # (b) one accepted reply per expectedVersion, whichever instance sent it
        tokens: dict[int, set[str]] = defaultdict(set)
        for reply in updater.accepted:
            tokens[reply["executionState"]["versionNumber"] - 1].add(reply["clientToken"])
        assert all(len(t) == 1 for t in tokens.values()), (thing, {v: t for v, t in tokens.items() if len(t) > 1})

    # (c) the final state, from the owner's memory and from the read model, is the last acknowledged update
    async with contextlib.AsyncExitStack() as connections:
        for thing in things:
            device = await connections.enter_async_context(MqttDevice(stack, thing))
            n, version = updaters[thing].applied[-1]

            async def answered(device: MqttDevice = device) -> tuple[str, dict[str, Any]] | None:
                # Asked again when unanswered, as a device does: the group may still be rebalancing.
                try:
                    return await device.request(f"{job}/get", {"includeJobDocument": False}, timeout=3.0)
                except TimeoutError:
                    return None

            outcome, described = await until(answered, 30, f"{thing}'s get to be answered")
            assert outcome == "accepted", described
            execution = described["execution"]
            assert (execution["statusDetails"], execution["versionNumber"]) == ({"n": str(n)}, version), thing
            await _read_model_shows(iot, job, thing, changes[thing][-1])
    stale = sum(len(u.stale) for u in updaters.values())
    retries = sum(u.retries for u in updaters.values())
    print(f"stalled {victim} ({len(stalled_things)} things) for {stalled_for:.1f}s; {retries} retries, {stale} stale")


# --- 1b. successive restores of one partition ---------------------------------------------------------

RESTORED = 16
SNAPSHOT_INTERVAL = 2.0


async def _checkpointed(stack: Stack) -> None:
    """Wait until every partition's latest checkpoint lies past everything the device plane appended so far."""
    appended: dict[int, int] = {}
    for partition, offset, _key, value in await _records(stack, Topics.of(stack.settings).events):
        if value and value.get("scope") == "dataplane" and not is_marker(value):
            appended[partition] = offset + 1  # a partition without a thing's record gets no checkpoint

    async def covered() -> bool:
        marks = {
            p: v["offset"]
            for p, _o, k, v in await _records(stack, Topics.of(stack.settings).thing_state)
            if v and k == CHECKPOINT_KEY
        }
        return all(marks.get(p, -1) >= end for p, end in appended.items())

    await until(covered, 4 * SNAPSHOT_INTERVAL, "a checkpoint past the device plane's appends on every partition")


async def _update_all(devices: list[MqttDevice], job: str, version: int, n: int) -> None:
    body = {"status": "IN_PROGRESS", "expectedVersion": version, "statusDetails": {"n": str(n)}}
    for outcome, reply in await asyncio.gather(*(d.request(f"{job}/update", body) for d in devices)):
        assert outcome == "accepted", reply


async def test_what_one_restore_replayed_survives_the_next_restore(servers: Servers) -> None:
    """An owner restores a partition from its snapshots and the events after their checkpoint; whatever the
    checkpoint it writes next claims to cover must be in the snapshots, or the following owner loses it."""
    async with running(servers, snapshot_interval_seconds=SNAPSHOT_INTERVAL) as stack:
        iot = iot_client(stack)
        things, job = [unique("restore") for _ in range(RESTORED)], unique("restore-job")
        await create_things(iot, things)
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(t) for t in things], document="{}")
        by_partition = _partitions_of(things, stack.settings.partitions)
        busy = {names[0] for names in by_partition.values()}  # one thing per partition keeps changing
        async with contextlib.AsyncExitStack() as connections:
            devices = {t: await connections.enter_async_context(MqttDevice(stack, t)) for t in things}
            quiet = [d for t, d in devices.items() if t not in busy]
            assert quiet and await asyncio.gather(*(_start(d) for d in devices.values())) == [2] * RESTORED
            await _update_all(list(devices.values()), job, 2, 1)
            await _checkpointed(stack)
            # Acknowledged after the checkpoint, and (the next snapshot round being seconds away) only in the log.
            await _update_all(quiet, job, 3, 2)
            stack.restart("dataplane")
            await stack.wait_ready()
            # The new owner replayed those updates; others change, and its next checkpoint moves past them all.
            await _update_all([devices[t] for t in busy], job, 3, 2)
            await _checkpointed(stack)
            stack.restart("dataplane")
            await stack.wait_ready()
            for device in quiet:
                outcome, described = await device.request(f"{job}/get", {"includeJobDocument": False})
                assert outcome == "accepted", described
                execution = described["execution"]
                assert (execution["versionNumber"], execution["statusDetails"]) == (4, {"n": "2"}), (
                    f"{device.thing} lost an acknowledged update across two restores: {execution}"
                )


async def test_a_late_snapshot_of_a_fenced_owner_never_rolls_a_thing_back(servers: Servers) -> None:
    """A former owner that stalled mid-round writes its (older) image of a thing after the new owner took the
    partition, and the new owner then writes a checkpoint: the next restore must not start from that image,
    or the thing loses an acknowledged update. The late image is written as such an owner writes it."""
    async with running(servers, snapshot_interval_seconds=SNAPSHOT_INTERVAL) as stack:
        iot = iot_client(stack)
        partitions = stack.settings.partitions
        first = unique("late")
        partition = partition_for(thing_key(first), partitions)
        second = next(
            n for n in (unique("late") for _ in range(1000)) if partition_for(thing_key(n), partitions) == partition
        )
        job = unique("late-job")
        await create_things(iot, [first, second])
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(first), thing_arn(second)], document="{}")
        state_topic = Topics.of(stack.settings).thing_state
        async with MqttDevice(stack, first) as victim, MqttDevice(stack, second) as other:
            assert await asyncio.gather(_start(victim), _start(other)) == [2, 2]
            await _update_all([victim], job, 2, 1)
            await _checkpointed(stack)
            older = _latest_image(await _records(stack, state_topic), partition, thing_key(first))
            assert older is not None and older["state"]["executions"], "no snapshot of the thing was written"
            await _update_all([victim], job, 3, 2)
            await _checkpointed(stack)

            late = {**older, "token": f"{stack.settings.instance_id}-fenced"}
            async with _producer(stack) as producer:
                await producer.send_and_wait(
                    state_topic, orjson.dumps(late), key=thing_key(first).encode(), partition=partition
                )
            await _update_all([other], job, 2, 1)  # the owner's next round ends with a checkpoint past the late image
            await _checkpointed(stack)

            stack.restart("dataplane")
            await stack.wait_ready()
            outcome, described = await victim.request(f"{job}/get", {"includeJobDocument": False})
            assert outcome == "accepted", described
            execution = described["execution"]
            assert (execution["versionNumber"], execution["statusDetails"]) == (4, {"n": "2"}), (
                f"{first} was restored from a late snapshot: {execution}"
            )
            await _update_all([victim], job, 4, 3)


async def test_a_restore_resends_only_what_its_own_plane_caused(servers: Servers) -> None:
    """Control's decisions ride on records in the same events partitions as the device plane's. A restarted
    device plane re-sends the commands its own records caused and not yet confirmed; were it to re-send the
    control plane's too (QueueExecution, say), a thing would apply them a second time, and an execution
    deleted since would come back."""
    async with running(servers, snapshot_interval_seconds=3600.0) as stack:  # every restore replays from 0
        iot = iot_client(stack)
        thing, first, second = unique("scope"), unique("scope-job"), unique("scope-job")
        await create_things(iot, [thing])
        async with MqttDevice(stack, thing) as device:

            async def pending() -> list[str]:
                outcome, body = await device.request("get")
                assert outcome == "accepted", body
                return [j["jobId"] for j in body["inProgressJobs"] + body["queuedJobs"]]

            def shows(expected: list[str], exactly: bool = True) -> Callable[[], Any]:
                async def check() -> bool:
                    now = await pending()
                    return now == expected if exactly else set(expected) <= set(now)

                return check

            await asyncio.to_thread(iot.create_job, jobId=first, targets=[thing_arn(thing)], document="{}")
            await until(shows([first]), 30, f"{first} to be queued on {thing}")
            await asyncio.to_thread(
                iot.delete_job_execution, jobId=first, thingName=thing, executionNumber=1, force=True
            )
            await until(shows([]), 30, f"the execution of {first} to be deleted")

            stack.restart("dataplane")
            await stack.wait_ready()
            # Queued through the thing's command partition after anything the restore re-sent there.
            await asyncio.to_thread(iot.create_job, jobId=second, targets=[thing_arn(thing)], document="{}")
            await until(shows([second], exactly=False), 30, f"{second} to be queued on {thing}")
            assert await pending() == [second], f"the deleted execution of {first} came back after a restore"


def _latest_image(
    records: list[tuple[int, int, bytes, dict[str, Any] | None]], partition: int, key: str
) -> dict[str, Any] | None:
    images = [v for p, _o, k, v in records if p == partition and k == key.encode()]
    return images[-1] if images else None


@contextlib.asynccontextmanager
async def _producer(stack: Stack) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=stack.settings.kafka_bootstrap)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


# --- 2. conflicts on one execution --------------------------------------------------------------------

RACES = 16
STAGGER = 0.002
"""Seconds between the starts of the races' device updates, each launched after its cancel: the update
overtakes the cancel (which travels through control and the command topic) early on, and loses later."""


async def test_a_device_update_racing_a_forced_cancel_never_both_win(own_stack: Stack) -> None:
    """A device update (MQTT) and CancelJobExecution(force) (boto3) race on IN_PROGRESS executions: a terminal
    update and the cancel never both succeed, the loser gets the documented error, and the log agrees."""
    stack = own_stack
    iot = iot_client(stack)
    things, job = [unique("cancel-race") for _ in range(RACES)], unique("cancel-race")
    await create_things(iot, things)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(t) for t in things], document="{}")
    canceler = iot_client(stack)

    def cancel(thing: str) -> str:
        try:
            canceler.cancel_job_execution(jobId=job, thingName=thing, force=True)
            return "canceled"
        except ClientError as err:
            return str(err.response["Error"]["Code"])

    results: dict[str, tuple[str, str, dict[str, Any], str]] = {}
    async with contextlib.AsyncExitStack() as connections:
        devices = [await connections.enter_async_context(MqttDevice(stack, thing)) for thing in things]
        assert await asyncio.gather(*(_start(d) for d in devices)) == [2] * RACES
        # One race at a time, so that no other request competes with the two racing ones.
        for index, device in enumerate(devices):
            status = "SUCCEEDED" if index % 2 == 0 else "IN_PROGRESS"
            canceling = asyncio.ensure_future(asyncio.to_thread(cancel, device.thing))
            await asyncio.sleep((index // 2) * STAGGER)  # shifts the update along the cancel's path (see STAGGER)
            body = {"status": status, "statusDetails": {"race": str(index)}, "includeJobExecutionState": True}
            outcome, reply = await device.request(f"{job}/update", body)
            results[device.thing] = (status, outcome, reply, await asyncio.wait_for(canceling, 30))

    changes = _updates(await read_events(stack.settings), job)
    winners: Counter[str] = Counter()
    for thing in things:
        status, outcome, reply, canceled = results[thing]
        after_start = [(e.status, e.cause) for e in changes[thing] if e.version_number > 2]
        outcomes = (outcome, canceled)
        if outcomes == ("rejected", "canceled"):
            # CancelJobExecution won: the device is refused with the documented code and the state it lost to
            assert reply["code"] == "InvalidStateTransition", (thing, reply)
            assert reply["executionState"]["status"] == "CANCELED", (thing, reply)
            assert after_start == [("CANCELED", "cancel")], (thing, after_start)
            winners["cancel"] += 1
        elif outcomes == ("accepted", "InvalidStateTransitionException"):
            # the update won and made the execution terminal: a forced cancel of a terminal execution is refused
            assert status == "SUCCEEDED", (thing, results[thing])
            assert after_start == [("SUCCEEDED", "update")], (thing, after_start)
            winners["update"] += 1
        elif outcomes == ("accepted", "canceled"):
            # an IN_PROGRESS update first, then the forced cancel: both apply, in that order
            assert status == "IN_PROGRESS", (thing, results[thing])
            assert after_start == [("IN_PROGRESS", "update"), ("CANCELED", "cancel")], (thing, after_start)
            winners["update, then cancel"] += 1
        else:
            raise AssertionError(f"{thing}: update {status} {outcome} {reply}; cancel {canceled}; log {after_start}")
        last = changes[thing][-1]
        assert last.force_canceled == (last.status == "CANCELED"), (thing, last)
        await _read_model_shows(iot, job, thing, last)
    # The staggering makes this a race indeed: the conflicting update (SUCCEEDED) won some and lost some.
    print(f"races won: {dict(winners)}")
    assert winners["cancel"] and winners["update"], winners


TIMEOUT_RACES = 24
TIMEOUT_MINUTES = 4
SPREAD = 0.25
"""The updates are sent from SPREAD seconds before to SPREAD seconds after their execution's deadline."""


async def test_an_update_racing_its_in_progress_timeout_lands_or_times_out_never_both(own_stack: Stack) -> None:
    """SUCCEEDED updates sent around their execution's in-progress deadline: each execution either took the
    update or timed out, never both, and the device's reply says which."""
    stack = own_stack
    assert stack.settings.seconds_per_minute == 1.0
    iot = iot_client(stack)
    things, job = [unique("timeout-race") for _ in range(TIMEOUT_RACES)], unique("timeout-race")
    await create_things(iot, things)
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[thing_arn(t) for t in things],
        document="{}",
        timeoutConfig={"inProgressTimeoutInMinutes": TIMEOUT_MINUTES},
    )
    results: dict[str, tuple[float, str, dict[str, Any]]] = {}
    async with contextlib.AsyncExitStack() as connections:
        devices = [await connections.enter_async_context(MqttDevice(stack, thing)) for thing in things]
        await asyncio.gather(*(_start(d) for d in devices))
        started = _updates(await read_events(stack.settings), job)
        deadlines = {t: started[t][0].in_progress_deadline for t in things}
        assert all(deadlines.values()) and min(deadlines.values()) - time.time() > 2 * SPREAD, "too slow to race"

        async def one(index: int, device: MqttDevice) -> None:
            offset = -SPREAD + 2 * SPREAD * index / (TIMEOUT_RACES - 1)
            # Aims at a moment relative to the deadline: the point in time is what the race is about.
            await asyncio.sleep(max(0.0, deadlines[device.thing] + offset - time.time()))
            body = {"status": "SUCCEEDED", "includeJobExecutionState": True}
            outcome, reply = await device.request(f"{job}/update", body)
            results[device.thing] = (offset, outcome, reply)

        await asyncio.wait_for(asyncio.gather(*(one(i, d) for i, d in enumerate(devices))), 30)

    async def all_settled() -> dict[str, list[ExecutionUpdated]] | None:
        changes = _updates(await read_events(stack.settings), job)
        return changes if all(changes[t][-1].status in TERMINAL for t in things) else None

    changes = await until(all_settled, 20, "every execution to end")
    landed = timed_out = 0
    for thing in things:
        offset, outcome, reply = results[thing]
        ends = [(e.status, e.cause) for e in changes[thing] if e.status in TERMINAL]
        if outcome == "accepted":
            assert reply["executionState"]["status"] == "SUCCEEDED", (thing, reply)
            assert ends == [("SUCCEEDED", "update")], (thing, offset, ends)
            landed += 1
        else:
            assert reply["code"] == "InvalidStateTransition", (thing, offset, reply)
            assert reply["executionState"]["status"] == "TIMED_OUT", (thing, offset, reply)
            assert ends == [("TIMED_OUT", "timeout")], (thing, offset, ends)
            timed_out += 1
        assert changes[thing][-1].status == ends[0][0], (thing, changes[thing])
        await _read_model_shows(iot, job, thing, changes[thing][-1])
    print(f"{landed} updates landed, {timed_out} timed out; spread {SPREAD}s around the deadline")
    assert landed and timed_out, f"every update {'landed' if landed else 'timed out'}: the spread missed the race"


# --- 3. control killed during a fan-out ---------------------------------------------------------------

FAN_OUT = 200


async def _appears(consumer: AIOKafkaConsumer, wanted: Callable[[dict[str, Any]], bool]) -> None:
    """Read the events topic from where `consumer` stands until a record satisfies `wanted`."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for records in (await consumer.getmany(timeout_ms=20)).values():
            if any(wanted(orjson.loads(r.value)) for r in records):
                return
    raise AssertionError("the awaited record never reached the log")


async def test_control_killed_during_a_create_job_fan_out_queues_every_execution_once(own_stack: Stack) -> None:
    """SIGKILL control as soon as a CreateJob for a group of 200 is in the log, while the call is in flight: the
    restarted owner finishes the fan-out, every thing gets exactly one QUEUED execution, the counters agree."""
    stack = own_stack
    iot = iot_client(stack)
    things, group, job = [unique("fan") for _ in range(FAN_OUT)], unique("fan-g"), unique("fan-job")
    await create_things(iot, things, group)

    events = Topics.of(stack.settings).events
    tail = AIOKafkaConsumer(bootstrap_servers=stack.settings.kafka_bootstrap, enable_auto_commit=False)
    await tail.start()
    try:
        partitions = [TopicPartition(events, p) for p in range(stack.settings.partitions)]
        tail.assign(partitions)
        await tail.seek_to_end(*partitions)
        for tp in partitions:
            await tail.position(tp)  # fixes "the end" before the job is created

        def create() -> str:
            try:
                iot_client(stack).create_job(jobId=job, targets=[group_arn(group)], document='{"fan": "out"}')
                return "created"
            except (ClientError, BotoCoreError) as err:
                return repr(err)

        creating = asyncio.ensure_future(asyncio.to_thread(create))

        def job_created(record: dict[str, Any]) -> bool:
            return record.get("type") == JobCreated.__name__ and record["data"]["job_id"] == job

        await _appears(tail, job_created)
    finally:
        await tail.stop()
    stack.kill("control")  # the job is in the log; its 200 releases are being sent, or not yet
    created = await asyncio.wait_for(creating, 30)
    print(f"CreateJob, control killed once the job was in the log: {created}")
    stack.spawn("control")
    await stack.wait_ready()

    if created != "created":
        # The caller never heard back; its retry finds the job the log already holds, and creates nothing.
        with pytest.raises(iot.exceptions.ResourceAlreadyExistsException):
            await asyncio.to_thread(iot.create_job, jobId=job, targets=[group_arn(group)], document='{"fan": "out"}')

    async def all_queued() -> bool:
        pages = iot.get_paginator("list_job_executions_for_job").paginate(jobId=job)
        summaries = [s for page in await asyncio.to_thread(list, pages) for s in page["executionSummaries"]]
        return len(summaries) == FAN_OUT and all(s["jobExecutionSummary"]["status"] == "QUEUED" for s in summaries)

    await until(all_queued, 60, f"all {FAN_OUT} executions to be queued")
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["status"] == "IN_PROGRESS"
    counters = described["jobProcessDetails"]
    assert counters.pop("numberOfQueuedThings") == FAN_OUT, counters
    assert set(counters.values()) == {0}, counters

    logged = await read_events(stack.settings)
    assert sum(isinstance(e, JobCreated) and e.job_id == job for e, _ in logged) == 1
    queued = Counter(e.thing_name for e, _ in logged if isinstance(e, ExecutionQueued) and e.job_id == job)
    assert queued == Counter(things), "an execution was queued twice, or not at all"
    assert not any(isinstance(e, ExecutionUpdated) and e.job_id == job for e, _ in logged)
    async with MqttDevice(stack, things[0]) as device:
        outcome, pending = await device.request("get")
        assert outcome == "accepted" and [j["jobId"] for j in pending["queuedJobs"]] == [job], pending


# --- 4. the projector killed under load ---------------------------------------------------------------

PROJECTED = 50
STEPS = 8


async def test_read_models_converge_to_the_log_after_the_projector_is_killed_under_load(own_stack: Stack) -> None:
    """SIGKILL the projector while 50 devices send 400 updates, and restart it while they go on: the read
    models reach the log's last counted state, and a rebuild from offset 0 gives the same rows."""
    stack = own_stack
    iot = iot_client(stack)
    things, job = [unique("proj") for _ in range(PROJECTED)], unique("proj-job")
    await create_things(iot, things)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(t) for t in things], document="{}")
    done: Counter[str] = Counter()

    async def work(device: MqttDevice) -> None:
        version = await _start(device)
        for step in range(1, STEPS + 1):
            status = "SUCCEEDED" if step == STEPS else "IN_PROGRESS"
            body = {"status": status, "expectedVersion": version, "statusDetails": {"step": str(step)}}
            outcome, reply = await device.request(f"{job}/update", body)
            assert outcome == "accepted", (device.thing, reply)
            version += 1
            done[device.thing] += 1
            await asyncio.sleep(PACE)  # paces the stream so that it outlasts the projector's restart

    async def share(fraction: float) -> bool:
        return sum(done.values()) >= PROJECTED * STEPS * fraction

    async with contextlib.AsyncExitStack() as connections:
        devices = [await connections.enter_async_context(MqttDevice(stack, thing)) for thing in things]
        fleet = asyncio.gather(*(work(d) for d in devices))
        try:
            await until(lambda: share(0.25), 30, "a quarter of the updates")
            stack.kill("projector")
            killed_at = sum(done.values())
            await until(lambda: share(0.5), 30, "half of the updates, with no projector")
            stack.spawn("projector")
        finally:
            await asyncio.wait_for(fleet, 60)
    assert killed_at < PROJECTED * STEPS // 2, "the projector was killed after the stream"

    async def completed() -> bool:
        return (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["status"] == "COMPLETED"

    try:
        await until(completed, 30, "the job to complete")
        await projected_to_end(stack, timeout=30)
    except AssertionError as err:
        raise AssertionError(f"{err}\nthe projector's log ends:\n{stack.log_tail('projector', 8)}") from None
    changes = _updates(await read_events(stack.settings), job)
    listed = iot.get_paginator("list_job_executions_for_job").paginate(jobId=job)
    statuses = {
        s["thingArn"]: s["jobExecutionSummary"]["status"]
        for page in await asyncio.to_thread(list, listed)
        for s in page["executionSummaries"]
    }
    assert statuses == {thing_arn(t): changes[t][-1].status for t in things}
    for thing in things:
        last = changes[thing][-1]
        assert (last.status, last.version_number) == ("SUCCEEDED", STEPS + 2), (thing, changes[thing])
        found = await _described(iot, job, thing)
        assert found is not None
        assert (found["status"], found["versionNumber"], found["statusDetails"]["detailsMap"]) == (
            last.status,
            last.version_number,
            last.status_details,
        ), thing
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]
    assert described["jobProcessDetails"]["numberOfSucceededThings"] == PROJECTED

    live = await read_model_rows(stack.settings.pg_dsn)
    stack.processes["projector"].terminate()
    await asyncio.to_thread(stack.processes["projector"].wait, 15)
    result = await rebuild_read_models(stack)
    assert result.returncode == 0, result.stderr
    assert await read_model_rows(stack.settings.pg_dsn) == live
    stack.spawn("projector")
