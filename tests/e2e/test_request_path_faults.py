"""Faults on the request path, against the module's own servers: Kafka stalled or down, the dataplane
killed mid-request, the MQTT broker restarted or the dataplane's client id taken, records too large
for Kafka. Each test shows that nothing acknowledged is lost or applied twice, that callers get an
answer (never a hang, never a 500), and that the stack serves again by itself."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
from botocore.exceptions import ClientError
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion

from iotjobs.domain.thing import ExecutionUpdated
from iotjobs.runtime.topics import RECORD_MAX_BYTES
from tests.support.clients import MqttDevice, group_arn, iot_client, thing_arn, unique
from tests.support.events import read_events
from tests.support.faults import probe, serving_again, strict_client, timed
from tests.support.servers import LocalServers
from tests.support.stack import Stack
from tests.support.waiting import until

pytestmark = pytest.mark.e2e


@contextlib.asynccontextmanager
async def _running(local: LocalServers, **overrides: Any) -> AsyncIterator[Stack]:
    stack = Stack(local.servers, **overrides)
    print(f"stack {stack.settings.topic_prefix}: logs in {stack.logs}")  # shown when the test fails
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


async def _fleet(stack: Stack, prefix: str, size: int) -> tuple[list[str], str]:
    """`size` new things, each with one QUEUED execution of one new job."""
    iot = iot_client(stack)
    things = [unique(prefix) for _ in range(size)]
    await asyncio.gather(*(asyncio.to_thread(iot.create_thing, thingName=name) for name in things))
    job = unique(f"{prefix}-job")
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(t) for t in things], document="{}")

    async def queued() -> bool:
        details = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
        return details.get("numberOfQueuedThings") == size

    await until(queued, timeout=30, what=f"{size} executions of {job} to be queued")
    return things, job


async def _updates_of(stack: Stack, job: str) -> dict[str, list[ExecutionUpdated]]:
    """The counted ExecutionUpdated events of a job's executions that devices caused, per thing."""
    found: dict[str, list[ExecutionUpdated]] = {}
    for event, _envelope in await read_events(stack.settings):
        if isinstance(event, ExecutionUpdated) and event.job_id == job and event.cause == "update":
            found.setdefault(event.thing_name, []).append(event)
    return found


# --- 1. QoS 1 requests in flight when Kafka stalls and the dataplane dies ---------------------------

DURABLE_DEVICES = 50
STALL_SECONDS = 2.0
REDELIVERY_WAIT = 30.0


async def _reply_to(device: MqttDevice, token: str, timeout: float) -> tuple[str, dict[str, Any]] | None:
    """The reply to a request published with `publish_raw` (it lands among the untokened ones), if any."""
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        try:
            topic, body = await asyncio.wait_for(device.untokened.get(), left)
        except TimeoutError:
            return None
        if body.get("clientToken") == token:
            return topic.rsplit("/", 1)[1], body
    return None


async def test_qos1_updates_in_flight_survive_a_stalled_kafka_and_a_killed_dataplane(private: LocalServers) -> None:
    async with _running(private) as stack, contextlib.AsyncExitStack() as held:
        things, job = await _fleet(stack, "inflight", DURABLE_DEVICES)
        devices = [await held.enter_async_context(MqttDevice(stack, thing)) for thing in things]
        tokens = {device.thing: uuid.uuid4().hex for device in devices}
        with private.paused("kafka"):
            for device in devices:
                # No expectedVersion: an update applied twice would show as a second event.
                body = {"status": "IN_PROGRESS", "statusDetails": {"probe": device.thing}}
                device.publish_raw(f"{job}/update", orjson.dumps({**body, "clientToken": tokens[device.thing]}))
            await asyncio.sleep(STALL_SECONDS)  # the fault: Kafka stalled while the requests are in flight
            answered_while_stalled = [device.thing for device in devices if not device.untokened.empty()]
            stack.kill("dataplane")
        assert not answered_while_stalled, f"replies while Kafka was stopped: {answered_while_stalled}"

        stack.spawn("dataplane")
        await stack.wait_ready()
        # The broker redelivers what the killed dataplane never acknowledged; the new one answers it.
        replies = await asyncio.gather(
            *(_reply_to(device, tokens[device.thing], REDELIVERY_WAIT) for device in devices)
        )
        unanswered = [device for device, reply in zip(devices, replies, strict=True) if reply is None]
        for device, reply in zip(devices, replies, strict=True):
            assert reply is None or reply[0] == "accepted", (device.thing, reply)
        for device in unanswered:  # a device that heard nothing retries, knowing the version it started from
            body = {"status": "IN_PROGRESS", "statusDetails": {"probe": device.thing}, "expectedVersion": 1}
            outcome, reply = await device.request(f"{job}/update", body, timeout=10)
            state = reply.get("executionState", {})
            assert outcome == "accepted" or (
                reply["code"] == "VersionMismatch"
                and state.get("versionNumber") == 2
                and state.get("statusDetails") == {"probe": device.thing}
            ), (device.thing, outcome, reply)

        updates = await _updates_of(stack, job)
        for thing in things:
            applied = updates.get(thing, [])
            assert len(applied) == 1, (thing, applied)
            assert applied[0].status_details == {"probe": thing} and applied[0].version_number == 2
            # the request applied is the one in flight during the fault, not a retry
            assert (applied[0].request_key or "").startswith(f"{tokens[thing]}#"), (thing, applied[0])
        print(f"{len(unanswered)} of {DURABLE_DEVICES} devices got no reply to the redelivered request")


# --- 2. the broker restarts; another client takes the dataplane's client id -----------------------


async def _served(stack: Stack, thing: str) -> None:
    async with MqttDevice(stack, thing) as device:
        outcome, body = await device.request("get")
        assert outcome == "accepted" and len(body["queuedJobs"]) == 1, body


async def _waithealth(stack: Stack, status: int, what: str, timeout: float = 30.0) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        code, body = await probe(stack.dataplane_url)
        return body if code == status else None

    return await until(reached, timeout, what)


async def test_dataplane_recovers_its_mqtt_session_after_a_broker_restart_and_a_takeover(
    private: LocalServers,
) -> None:
    async with _running(private) as stack:
        (thing,), _job = await _fleet(stack, "broker", 1)
        await _served(stack, thing)

        await asyncio.to_thread(private.stop_server, "mosquitto")
        down = await _waithealth(stack, 503, "the dataplane to report the lost MQTT session")
        assert down["checks"]["mqtt"] is False, down
        await asyncio.to_thread(private.start_server, "mosquitto")  # same port, sessions restored from disk
        up = await _waithealth(stack, 200, "the dataplane to reconnect and resubscribe")
        assert up["checks"]["mqtt"] is True, up
        await _served(stack, thing)

        # Another client connects with the dataplane's client id: the broker hands it the session.
        intruder = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{stack.settings.topic_prefix}-dataplane", clean_session=True
        )
        seen: list[int] = []
        watching = asyncio.create_task(_watchhealth(stack, seen))
        try:
            await asyncio.to_thread(_hold_session, intruder, stack.settings.mqtt_port, 3.0)
        finally:
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        assert 503 in seen, f"/health never showed the session taken away: {seen}"
        await _waithealth(stack, 200, "the dataplane to take its session back")
        await _served(stack, thing)


async def _watchhealth(stack: Stack, seen: list[int]) -> None:
    while True:
        code, _body = await probe(stack.dataplane_url)
        if not seen or seen[-1] != code:
            seen.append(code)
        await asyncio.sleep(0.05)


def _hold_session(client: paho.Client, port: int, seconds: float) -> None:
    """Connect, then keep the connection for `seconds` or until the broker drops it; then disconnect.

    Driven by hand (no network thread), so the client never reconnects by itself."""
    connected: list[bool] = []
    client.on_connect = lambda *_args: connected.append(True)
    client.connect("127.0.0.1", port, keepalive=30)
    deadline = time.monotonic() + 10
    while not connected and time.monotonic() < deadline:
        assert client.loop(timeout=0.1) == paho.MQTT_ERR_SUCCESS, "the intruder lost its connection"
    assert connected, "the broker never accepted the intruder"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and client.loop(timeout=0.1) == paho.MQTT_ERR_SUCCESS:
        pass
    client.disconnect()


# --- 3. a request whose event would not fit in a Kafka record --------------------------------------


def _oversized_details() -> list[dict[str, str]]:
    """statusDetails over the record limit: one huge value, and many values of the largest allowed size."""
    one = {"log": "x" * (RECORD_MAX_BYTES + 50_000)}
    many = {f"line{i}": "y" * 1024 for i in range(RECORD_MAX_BYTES // 1000)}
    return [one, many]


async def test_oversized_updates_get_invalid_request_and_the_stack_keeps_serving(private: LocalServers) -> None:
    async with _running(private) as stack:
        (mqtt_thing, http_thing), job = await _fleet(stack, "huge", 2)
        async with MqttDevice(stack, mqtt_thing) as device:
            for details in _oversized_details():
                body = {"status": "IN_PROGRESS", "statusDetails": details}
                outcome, reply = await device.request(f"{job}/update", body, timeout=20)
                assert (outcome, reply["code"]) == ("rejected", "InvalidRequest"), reply
                assert "statusDetails" in reply["message"] and reply["clientToken"], reply
            outcome, reply = await device.request(f"{job}/get")
            assert outcome == "accepted" and reply["execution"]["versionNumber"] == 1, reply
            outcome, _reply = await device.request(f"{job}/update", {"status": "IN_PROGRESS"})
            assert outcome == "accepted"

        data = strict_client("iot-jobs-data", stack.dataplane_url, read_timeout=30)
        huge = {"log": "z" * (RECORD_MAX_BYTES + 10_000)}  # fits aiohttp's 1 MiB body limit
        huger = {"log": "z" * (2 * RECORD_MAX_BYTES)}  # does not
        update = functools.partial(data.update_job_execution, thingName=http_thing, jobId=job, status="IN_PROGRESS")
        answers = {
            len(orjson.dumps(details)): await timed(update, statusDetails=details)
            for details in (huge, huger, *_oversized_details())
        }
        accepted = await asyncio.to_thread(update, includeJobExecutionState=True)
        assert accepted["executionState"]["versionNumber"] == 2
        updates = await _updates_of(stack, job)
        assert {thing: len(events) for thing, events in updates.items()} == {mqtt_thing: 1, http_thing: 1}
        assert (await probe(stack.dataplane_url))[0] == 200
        for size, (seconds, code, status) in answers.items():
            assert 400 <= status < 500 and code.endswith("Exception"), (size, status, code, answers)
            assert seconds < 10, (size, seconds)


# --- 4. Kafka unavailable for longer than the request timeout --------------------------------------

REQUEST_TIMEOUT = 3.0
ANSWER_MARGIN = 2.0
OUTAGE_SECONDS = 9.0
DEVICE_REPLY_TIMEOUT = 4.0
WRITERS = 4
UPDATE_INTERVAL = 0.05
STALL_GRACE = 1.5
"""An accept this long after Kafka stopped can only be one confirmed before it stopped."""


class _Writer:
    """A device that keeps updating its execution over MQTT; every accepted reply is kept for the audit,
    also one that arrives after its request timed out on this side."""

    def __init__(self, device: MqttDevice, job: str) -> None:
        self.device = device
        self.job = job
        self.accepted: list[tuple[float, dict[str, Any]]] = []
        """(when it arrived, the executionState it reports)"""
        self.version = 1
        self.sent = 0

    async def run(self, enough: Callable[[_Writer], bool]) -> None:
        late = asyncio.create_task(self._late_replies())
        try:
            while not enough(self):
                await self._update()
                await asyncio.sleep(UPDATE_INTERVAL)  # pacing: a device, not a load generator
        finally:
            late.cancel()
            await asyncio.gather(late, return_exceptions=True)

    async def _update(self) -> None:
        self.sent += 1
        body = {
            "status": "IN_PROGRESS",
            "expectedVersion": self.version,
            "statusDetails": {"n": str(self.sent)},
            "includeJobExecutionState": True,
        }
        try:
            outcome, reply = await self.device.request(f"{self.job}/update", body, DEVICE_REPLY_TIMEOUT)
        except TimeoutError:
            return  # the next request learns the version through VersionMismatch
        state = reply.get("executionState", {})
        if outcome == "accepted":
            self.accepted.append((time.monotonic(), state))
            self.version = state["versionNumber"]
        elif reply["code"] == "VersionMismatch":
            self.version = state["versionNumber"]
        else:
            raise AssertionError(f"{self.device.thing}: unexpected rejection {reply}")

    async def _late_replies(self) -> None:
        while True:
            topic, body = await self.device.untokened.get()
            if topic.endswith("/update/accepted"):
                self.accepted.append((time.monotonic(), body["executionState"]))


async def _probe(iot: Any, data: Any, job: str, thing: str) -> dict[str, tuple[float, str, int]]:
    """One round of control and device HTTP calls, concurrently: writes first, then reads."""
    calls = {
        "CreateThing": timed(iot.create_thing, thingName=unique("outage-new")),
        "UpdateJob": timed(iot.update_job, jobId=job, description=unique("during")),
        "UpdateJobExecution": timed(data.update_job_execution, thingName=thing, jobId=job, status="IN_PROGRESS"),
        "DescribeJob": timed(iot.describe_job, jobId=job),
        "GetPendingJobExecutions": timed(data.get_pending_job_executions, thingName=thing),
    }
    return dict(zip(calls, await asyncio.gather(*calls.values()), strict=True))


WRITE_PROBES = ("CreateThing", "UpdateJob", "UpdateJobExecution")


async def test_kafka_outage_gets_prompt_503s_no_false_accepts_and_the_stack_recovers(private: LocalServers) -> None:
    async with _running(private, request_timeout_seconds=REQUEST_TIMEOUT) as stack:
        things, job = await _fleet(stack, "outage", WRITERS + 1)
        http_thing, mqtt_things = things[0], things[1:]
        iot = strict_client("iot", stack.control_url, read_timeout=4 * REQUEST_TIMEOUT)
        data = strict_client("iot-jobs-data", stack.dataplane_url, read_timeout=4 * REQUEST_TIMEOUT)
        recovered_at = float("inf")
        stop = asyncio.Event()

        def enough(writer: _Writer) -> bool:  # a few updates accepted once the stack is back
            return stop.is_set() or sum(at > recovered_at for at, _state in writer.accepted) >= 3

        async with contextlib.AsyncExitStack() as held:
            writers = [_Writer(await held.enter_async_context(MqttDevice(stack, t)), job) for t in mqtt_things]
            writing = asyncio.gather(*(writer.run(enough) for writer in writers))
            held.push_async_callback(_stop, stop, writing)  # before the devices disconnect

            async def all_writing() -> bool:
                return all(writer.accepted for writer in writers)

            await until(all_writing, timeout=30, what="every device to have an update accepted before the outage")
            with private.paused("kafka"):
                paused_at = time.monotonic()
                rounds = {"at once": await _probe(iot, data, job, http_thing)}
                # again once the runtime has given up on its appends and is taking its partitions again
                await asyncio.sleep(max(0.0, paused_at + REQUEST_TIMEOUT + 1.0 - time.monotonic()))
                rounds["later"] = await _probe(iot, data, job, http_thing)
                await asyncio.sleep(max(0.0, paused_at + OUTAGE_SECONDS - time.monotonic()))  # the fault
            resumed_at = time.monotonic()
            print("answers during the outage (seconds, code, status):", rounds)
            for label, answers in rounds.items():
                for operation, (seconds, code, status) in answers.items():
                    assert seconds <= REQUEST_TIMEOUT + ANSWER_MARGIN, (label, operation, seconds, code)
                    if operation in WRITE_PROBES:
                        assert (code, status) == ("ServiceUnavailableException", 503), (label, operation, code)
                    else:  # a read may be answered from Postgres or the owner's memory
                        assert code in ("ok", "ServiceUnavailableException"), (label, operation, code, status)

            async def writes_again() -> bool:
                _seconds, code, _status = await timed(iot.create_thing, thingName=unique("after"))
                return code == "ok"

            await until(writes_again, timeout=45, what="a control-plane write to succeed after the outage")
            recovered_at = time.monotonic()
            await asyncio.wait_for(writing, 45)  # every device served again

        answered = await timed(data.update_job_execution, thingName=http_thing, jobId=job, status="IN_PROGRESS")
        assert answered[1] == "ok", answered

        updates = await _updates_of(stack, job)
        for writer in writers:
            thing = writer.device.thing
            logged = [(event.status_details.get("n"), event.version_number) for event in updates.get(thing, [])]
            assert len({version for _n, version in logged}) == len(logged), (thing, logged)
            for at, state in writer.accepted:
                assert not paused_at + STALL_GRACE < at < resumed_at, (thing, "accepted while Kafka was stopped", state)
                entry = (state["statusDetails"]["n"], state["versionNumber"])
                assert logged.count(entry) == 1, (thing, entry, logged)
        await serving_again(stack, timeout=30)


async def _stop(stop: asyncio.Event, writing: asyncio.Future[Any]) -> None:
    """End the writers also when the test failed half-way; bounded, since a cancellation can be lost in
    Python 3.11's wait_for when a reply arrives at the same moment."""
    stop.set()
    writing.cancel()
    await asyncio.wait({writing}, timeout=3 * DEVICE_REPLY_TIMEOUT)
    if writing.done() and not writing.cancelled():
        writing.exception()  # already reported by the test body, if it raised


async def test_notifications_a_killed_dataplane_never_published_are_published_by_its_successor(
    private: LocalServers,
) -> None:
    """The broker is paused while a job is released to 2,000 things: the dataplane decides and confirms
    every execution but can publish only its receive window's worth of notifications; it is killed with the
    rest unpublished. Its successor restores the things from the log and publishes them (ADR 0007)."""
    fleet = 2000
    async with _running(private) as stack:
        iot = iot_client(stack)
        group, job = unique("unpublished"), unique("unpublished-job")
        things = [f"{group}-{i:05d}" for i in range(fleet)]
        iot.create_thing_group(thingGroupName=group)
        clients = [iot_client(stack) for _ in range(16)]

        def register(index: int, thing: str) -> None:
            clients[index % 16].create_thing(thingName=thing)
            clients[index % 16].add_thing_to_thing_group(thingGroupName=group, thingName=thing)

        await asyncio.gather(*(asyncio.to_thread(register, i, t) for i, t in enumerate(things)))

        heard: set[str] = set()
        watcher = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"watch-{uuid.uuid4().hex[:8]}")

        def on_message(_client: Any, _userdata: Any, message: Any) -> None:
            if (orjson.loads(message.payload).get("execution") or {}).get("jobId") == job:
                heard.add(message.topic.split("/")[2])

        watcher.on_message = on_message
        watcher.connect("127.0.0.1", stack.settings.mqtt_port)
        watcher.subscribe("$aws/things/+/jobs/notify-next", qos=1)
        watcher.loop_start()
        try:
            with private.paused("mosquitto"):
                iot.create_job(jobId=job, targets=[group_arn(group)], document="{}")

                async def all_queued() -> bool:
                    details = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
                    return bool(details["numberOfQueuedThings"] == fleet)

                await until(all_queued, 60, f"every one of {fleet} executions QUEUED while the broker is paused")
                stack.kill("dataplane")  # with most notifications still waiting for the broker's window
            stack.spawn("dataplane")
            await stack.wait_ready(stack.dataplane_url, timeout=60)

            async def every_device_heard() -> bool:
                return len(heard) == fleet

            await until(every_device_heard, 120, f"all {fleet} devices to hear of {job}")
        finally:
            watcher.loop_stop()
            watcher.disconnect()
        assert heard == set(things)


async def test_reads_get_503_while_postgresql_restarts_and_work_again_after(private: LocalServers) -> None:
    async with _running(private) as stack:
        (_thing,), job = await _fleet(stack, "pgdown", 1)
        iot = iot_client(stack)
        await asyncio.to_thread(private.stop_server, "postgres")
        try:
            began = time.monotonic()
            with pytest.raises(ClientError) as refused:
                await asyncio.to_thread(iot.describe_job, jobId=job)
            error = refused.value.response
            assert (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]) == (
                "ServiceUnavailableException",
                503,
            )
            assert time.monotonic() - began < stack.settings.request_timeout_seconds
        finally:
            await asyncio.to_thread(private.start_server, "postgres")

        async def described() -> bool:
            try:
                return bool((await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobId"] == job)
            except ClientError as err:
                assert err.response["ResponseMetadata"]["HTTPStatusCode"] == 503, err.response
                return False

        await until(described, 60, "DescribeJob to answer again once PostgreSQL is back")


def _session(client_id: str, port: int, topic: str | None, seconds: float) -> list[dict[str, Any]]:
    """Connect with a persistent session (clean_session false), subscribe to `topic` if given, collect what
    arrives for `seconds` (or until a message has), then disconnect, leaving the session at the broker."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
    received: list[dict[str, Any]] = []
    subscribed: list[bool] = []
    client.on_message = lambda _c, _u, message: received.append(orjson.loads(message.payload))
    client.on_subscribe = lambda *_args: subscribed.append(True)
    client.connect("127.0.0.1", port, keepalive=30)
    if topic is not None:
        client.subscribe(topic, qos=1)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and client.loop(timeout=0.1) == paho.MQTT_ERR_SUCCESS:
        if received or (topic is not None and subscribed):
            break
    client.disconnect()
    return received


async def test_a_device_away_during_a_broker_restart_still_gets_what_was_queued_for_it(
    private: LocalServers,
) -> None:
    async with _running(private) as stack:
        iot = iot_client(stack)
        thing = unique("away")
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        device = f"device-{thing}"
        port = stack.settings.mqtt_port
        topic = f"$aws/things/{thing}/jobs/notify-next"
        await asyncio.to_thread(_session, device, port, topic, 10.0)  # subscribed, then away
        job = unique("away")
        async with MqttDevice(stack, thing) as watcher:  # sees the notification reach the broker
            await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
            assert (await watcher.next_notify_next(timeout=15))["execution"]["jobId"] == job
        # The broker holds a copy for the absent device's session; it must outlive the restart.
        await asyncio.to_thread(private.restart_server, "mosquitto")
        await _waithealth(stack, 200, "the dataplane to reconnect after the broker restart")
        got = await asyncio.to_thread(_session, device, port, None, 15.0)
        assert [note["execution"]["jobId"] for note in got if note.get("execution")] == [job]


async def _trickle(port: int, method: str, path: str) -> tuple[str, bytes]:
    """Send a request's headers and the first byte of a 100-byte body, then nothing: the status line and the
    body of whatever the server answers."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: 100\r\n\r\n{{".encode())
        await writer.drain()
        status = (await asyncio.wait_for(reader.readline(), 30)).decode().strip()
        rest = await asyncio.wait_for(reader.read(4096), 30)
        return status, rest
    finally:
        writer.close()


async def test_a_body_that_trickles_is_refused_once_its_time_is_up_on_both_planes(private: LocalServers) -> None:
    async with _running(private, body_read_timeout_seconds=1.0) as stack:
        control = await _trickle(stack.settings.control_port, "PUT", "/jobs/slow")
        data = await _trickle(stack.settings.dataplane_port, "POST", "/things/slow/jobs/j1")
        for status, rest in (control, data):
            assert status.startswith("HTTP/1.1 400"), status
            assert b"InvalidRequestException" in rest and b"did not arrive within 1 s" in rest, rest
