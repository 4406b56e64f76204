"""The fault matrix: one fleet job, run again under each fault, with the same checks every time.

Each row starts a stack of its own on this module's own servers (a Kafka, PostgreSQL and Mosquitto that
only this module pauses and restarts), registers a fleet of MQTT devices in one thing group, and creates a
job on the group with a rollout limit and a retry policy: every FLAKY_EVERY-th device fails its first
execution and succeeds on the retry. The devices run as gmqtt clients in this process; a device that hears
nothing back sends the very same request again (same clientToken), as a device does. Once a third of the
fleet has finished, the row's fault strikes:

- SIGKILL of control, of the dataplane, of the projector, each started again at once;
- SIGSTOP of the dataplane for longer than its consumer group's session timeout, then SIGCONT;
- a restart of Kafka, of PostgreSQL (with control-plane writes tried while it is down), and of the MQTT
  broker (with the device HTTP API used while it is down).

Meanwhile a prober sends control-plane reads and writes and records every answer. Each row then shows:

- every device finishes: its last execution is SUCCEEDED, in the log and in the read models;
- no update a device saw `/accepted` for is lost or applied twice: each is one counted event of the log;
- the job's counters (DescribeJob) agree with ListJobExecutionsForJob and with each thing's own list;
- the rollout kept its maximumPerMinute through the fault;
- the read models rebuilt from the log equal the live ones;
- the prober got only 2xx, 4xx or 503 answers (never a 500), none slower than the request timeout allows,
  and the stack serves again by itself.

A stack per row, rather than one for the whole sequence: each fault meets a fresh job mid-run, a row that
fails leaves nothing behind for the next, and a row reads on its own (`-k kafka`). Starting a stack costs a
few seconds; the rows run one after the other. The outcomes are printed as a table (`pytest -s`) and every
row is also asserted. Run it with `scripts/test.sh -m fault_matrix -s`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from iotjobs.domain.thing import ExecutionUpdated
from tests.support.clients import MqttDevice, group_arn, thing_arn, unique
from tests.support.events import read_events
from tests.support.faults import create_things, serving_again, strict_client, timed
from tests.support.rolling import most_in_window
from tests.support.servers import LocalServers
from tests.support.stack import Stack, projected_to_end, read_model_rows, rebuild_read_models, running
from tests.support.waiting import until

pytestmark = [pytest.mark.e2e, pytest.mark.fault_matrix]

DEVICES = 240
FLAKY_EVERY = 6
"""Every sixth device fails its first execution; the job's retry policy gives it a second."""
RATE = 40
"""maximumPerMinute; with a minute of one second the fleet is released over six seconds."""
MINUTE = 1.0
REQUEST_TIMEOUT = 4.0
ANSWER_MARGIN = 2.0
"""How much later than the request timeout an answer may come: the HTTP round trip and the event loop."""
SESSION_TIMEOUT = 6.0
"""The consumer groups' session timeout (iotjobs.runtime.deciders): a stall past it costs the owner its
partitions."""
ATTEMPT = 3.0
"""Seconds a device waits for a reply before it sends the same request again."""
WORK = (0.4, 1.2)
"""Seconds a device works between its updates: with the rollout's pace, a hundred or so executions are
IN_PROGRESS at any moment, so a fault finds many devices in the middle of their work."""
OUTAGE = 4.0
"""Seconds a restarted server stays down at least: long enough for devices' requests to go unanswered."""
POLL = 3.0
"""Seconds a device that has nothing to do waits for notify-next before it asks start-next again."""
FINISH_BOUND = 150.0
"""Seconds the whole fleet may take, fault included."""


OUTCOMES: list[dict[str, Any]] = []
COLUMNS = {
    "fault": 26,
    "devices finished": 16,
    "updates accepted": 16,
    "lost": 4,
    "doubled": 7,
    "503s seen": 9,
    "max request latency s": 21,
    "rebuild equal": 13,
}


def _table() -> str:
    lines = [" | ".join(name.ljust(width) for name, width in COLUMNS.items())]
    lines.append("-+-".join("-" * width for width in COLUMNS.values()))
    for row in OUTCOMES:
        lines.append(" | ".join(str(row[name]).ljust(width) for name, width in COLUMNS.items()))
    return "\n".join(lines)


@pytest.fixture(scope="module", autouse=True)
def outcome_table() -> Iterator[None]:
    yield
    if OUTCOMES:
        print(f"\n\nfault matrix ({DEVICES} devices, 1 in {FLAKY_EVERY} retried, {RATE} per minute):\n{_table()}")


# --- the fleet --------------------------------------------------------------------------------------


@dataclass
class Device:
    """One simulated device working the job over MQTT: start-next, IN_PROGRESS twice, then SUCCEEDED (or FAILED
    on a flaky device's first execution), with every request sent again, unchanged, until it is answered."""

    thing: str
    job: str
    flaky: bool
    accepted: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(executionNumber, executionState) of every accepted update, late replies included."""
    rejected: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    """(executionNumber, status, rejection) of every update rejected."""
    resends: int = 0
    finished: bool = False

    async def run(self, mqtt: MqttDevice, finished: Callable[[], None]) -> None:
        while not self.finished:
            execution = await self._next(mqtt)
            await self._work(mqtt, execution)
        finished()

    def late_replies(self, mqtt: MqttDevice) -> None:
        """Accepted updates whose reply came after the device had stopped waiting for it."""
        while not mqtt.untokened.empty():
            topic, body = mqtt.untokened.get_nowait()
            if topic.endswith("/update/accepted") and "executionState" in body:
                self.accepted.append((int(body["clientToken"].split(".")[0]), body["executionState"]))

    async def _ask(self, mqtt: MqttDevice, suffix: str, body: dict[str, Any], token: str) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + FINISH_BOUND
        while time.monotonic() < deadline:
            try:
                return await mqtt.request(suffix, body, timeout=ATTEMPT * random.uniform(0.8, 1.2), token=token)
            except TimeoutError:
                self.resends += 1
        raise AssertionError(f"{self.thing}: {suffix} {body} never answered")

    async def _next(self, mqtt: MqttDevice) -> dict[str, Any]:
        while True:
            outcome, reply = await self._ask(mqtt, "start-next", {}, uuid.uuid4().hex)
            assert outcome == "accepted", f"{self.thing}: start-next rejected: {reply}"
            execution = reply.get("execution")
            if execution is not None:
                assert execution["jobId"] == self.job, (self.thing, execution)
                return dict(execution)
            # Not released to this device yet: wait to hear of it, or ask again in a while.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(mqtt.notify_next.get(), POLL * random.uniform(0.8, 1.2))
            while not mqtt.notify_next.empty():
                mqtt.notify_next.get_nowait()

    async def _work(self, mqtt: MqttDevice, execution: dict[str, Any]) -> None:
        number, version = execution["executionNumber"], execution["versionNumber"]
        last = "FAILED" if self.flaky and number == 1 else "SUCCEEDED"
        for step, status in enumerate(("IN_PROGRESS", "IN_PROGRESS", last), 1):
            if step > 1:
                await asyncio.sleep(random.uniform(*WORK))  # the device at work, not a wait for anything
            body = {
                "status": status,
                "expectedVersion": version,
                "executionNumber": number,
                "statusDetails": {"step": f"{number}.{step}"},
                "includeJobExecutionState": True,
            }
            # The token names the execution, so a late reply can be told apart from another execution's.
            outcome, reply = await self._ask(mqtt, f"{self.job}/update", body, f"{number}.{uuid.uuid4().hex}")
            if outcome != "accepted":
                # Applied, but its reply was lost and the execution has moved on since (a retry replaced it):
                # the device learns where it stands from start-next.
                self.rejected.append((number, status, reply))
                return
            self.accepted.append((number, reply["executionState"]))
            version = reply["executionState"]["versionNumber"]
        self.finished = last == "SUCCEEDED"


@dataclass
class Fleet:
    stack: Stack
    group: str
    devices: list[Device]
    mqtt: list[MqttDevice]
    done: int = 0
    third: asyncio.Event = field(default_factory=asyncio.Event)

    def one_finished(self) -> None:
        self.done += 1
        if self.done >= len(self.devices) // 3:
            self.third.set()


async def _fleet(stack: Stack, held: contextlib.AsyncExitStack) -> Fleet:
    iot = strict_client("iot", stack.control_url, read_timeout=30)
    group = unique("matrix")
    things = [f"{group}-{i:03d}" for i in range(DEVICES)]
    await create_things(iot, things, group, at_once=8)
    limit = asyncio.Semaphore(20)

    async def connect(thing: str) -> MqttDevice:
        async with limit:
            return await held.enter_async_context(MqttDevice(stack, thing, persistent=True))

    mqtt = await asyncio.gather(*(connect(thing) for thing in things))
    job = unique("matrix-job")
    await asyncio.to_thread(
        iot.create_job,
        jobId=job,
        targets=[group_arn(group)],
        document='{"op": "matrix"}',
        jobExecutionsRolloutConfig={"maximumPerMinute": RATE},
        jobExecutionsRetryConfig={"criteriaList": [{"failureType": "FAILED", "numberOfRetries": 1}]},
    )
    devices = [Device(thing, job, flaky=i % FLAKY_EVERY == 0) for i, thing in enumerate(things)]
    return Fleet(stack, group, devices, list(mqtt))


# --- the prober -------------------------------------------------------------------------------------


@dataclass
class Probe:
    operation: str
    seconds: float
    code: str
    status: int
    """The HTTP status; 0 when no answer came (the connection was refused or dropped)."""


@dataclass
class Prober:
    """Control-plane reads and writes, one of each kind at a time, every answer recorded."""

    stack: Stack
    job: str
    thing: str
    probes: list[Probe] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Waits longer than the server may take, so that a slow answer is measured rather than cut short.
        self.iot = strict_client("iot", self.stack.control_url, 3 * REQUEST_TIMEOUT, connect_timeout=2)

    async def _one(self, operation: str, call: Callable[..., Any], **params: Any) -> None:
        began = time.monotonic()
        try:
            seconds, code, status = await timed(call, **params)
        except BotoCoreError as err:  # no HTTP answer at all
            seconds, code, status = time.monotonic() - began, type(err).__name__, 0
        self.probes.append(Probe(operation, seconds, code, status))

    async def reads(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._one("DescribeJob", self.iot.describe_job, jobId=self.job)
            await self._one("ListJobExecutionsForJob", self.iot.list_job_executions_for_job, jobId=self.job)
            await self._one("DescribeThing", self.iot.describe_thing, thingName=self.thing)
            await _pause(stop, 0.2)

    async def writes(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self._one("CreateThing", self.iot.create_thing, thingName=unique("probe"))
            attributes = {"attributes": {"probe": uuid.uuid4().hex[:8]}}
            await self._one("UpdateThing", self.iot.update_thing, thingName=self.thing, attributePayload=attributes)
            await _pause(stop, 0.2)


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    """Pacing between probe rounds (a prober, not a load generator), cut short when the row ends."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- the faults -------------------------------------------------------------------------------------


@dataclass
class Row:
    local: LocalServers
    stack: Stack
    fleet: Fleet
    notes: list[str] = field(default_factory=list)


async def _kill(service: str, row: Row) -> None:
    row.stack.restart(service)


async def _stall_dataplane(row: Row) -> None:
    row.stack.pause("dataplane")
    try:
        await asyncio.sleep(SESSION_TIMEOUT + 2.0)  # the fault itself: stalled past the session timeout
    finally:
        row.stack.resume("dataplane")


@contextlib.asynccontextmanager
async def _down(row: Row, server: str) -> AsyncIterator[None]:
    """The server stopped for the block, and for OUTAGE seconds at least; started again after it, on the same
    port with the same data, also when the block fails."""
    await asyncio.to_thread(row.local.stop_server, server)
    stopped_at = time.monotonic()
    try:
        yield
        await asyncio.sleep(max(0.0, stopped_at + OUTAGE - time.monotonic()))  # the outage itself
    finally:
        await asyncio.to_thread(row.local.start_server, server)


async def _restart_kafka(row: Row) -> None:
    async with _down(row, "kafka"):
        pass


async def _restart_postgres(row: Row) -> None:
    """Down for a while, during which control-plane writes go through Kafka: each is answered within the
    request timeout, with success or 503, never a 500 or a hang."""
    stack, fleet = row.stack, row.fleet
    iot = strict_client("iot", stack.control_url, 3 * REQUEST_TIMEOUT, connect_timeout=2)
    target = unique("pgdown")  # a thing of its own: a job created during the outage reaches no fleet device
    await asyncio.to_thread(iot.create_thing, thingName=target)
    async with _down(row, "postgres"):
        answers = {
            "CreateThing": await timed(iot.create_thing, thingName=unique("pgdown")),
            "CreateJob": await timed(
                iot.create_job, jobId=unique("pgdown"), targets=[thing_arn(target)], document="{}"
            ),
            "DescribeJob": await timed(iot.describe_job, jobId=fleet.devices[0].job),
        }
    row.notes.append(f"with PostgreSQL down: {answers}")
    for operation, (seconds, code, status) in answers.items():
        assert status in (200, 503), (operation, code, status)
        assert code in ("ok", "ServiceUnavailableException"), (operation, code)
        assert seconds <= REQUEST_TIMEOUT + ANSWER_MARGIN, (operation, seconds)


async def _restart_broker(row: Row) -> None:
    """Down for a while, during which a device works its own execution through the HTTP API alone."""
    stack = row.stack
    iot = strict_client("iot", stack.control_url, 30)
    data = strict_client("iot-jobs-data", stack.dataplane_url, 3 * REQUEST_TIMEOUT)
    thing, job = unique("http-device"), unique("http-job")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
    async with _down(row, "mosquitto"):
        pending = await asyncio.to_thread(data.get_pending_job_executions, thingName=thing)
        started = await asyncio.to_thread(data.start_next_pending_job_execution, thingName=thing)
        version = started["execution"]["versionNumber"]
        updated = await asyncio.to_thread(
            data.update_job_execution,
            thingName=thing,
            jobId=job,
            status="SUCCEEDED",
            expectedVersion=version,
            includeJobExecutionState=True,
        )
        after = await asyncio.to_thread(data.get_pending_job_executions, thingName=thing)
    assert [j["jobId"] for j in pending["queuedJobs"]] == [job], pending
    assert updated["executionState"]["status"] == "SUCCEEDED", updated
    assert (after["queuedJobs"], after["inProgressJobs"]) == ([], []), after
    row.notes.append("with the broker down, the device HTTP API took an execution from QUEUED to SUCCEEDED")


@dataclass(frozen=True)
class Fault:
    id: str
    name: str
    strike: Callable[[Row], Awaitable[None]]
    drops_control: bool = False
    """The fault takes control's HTTP listener away: a refused connection is then the expected answer."""


FAULTS = [
    Fault("kill-control", "SIGKILL control", lambda row: _kill("control", row), drops_control=True),
    Fault("kill-dataplane", "SIGKILL dataplane", lambda row: _kill("dataplane", row)),
    Fault("kill-projector", "SIGKILL projector", lambda row: _kill("projector", row)),
    Fault("stall-dataplane", "SIGSTOP dataplane > session", _stall_dataplane),
    Fault("restart-kafka", "restart Kafka", _restart_kafka),
    Fault("restart-postgres", "restart PostgreSQL", _restart_postgres),
    Fault("restart-broker", "restart Mosquitto", _restart_broker),
]


# --- the row ----------------------------------------------------------------------------------------


def _counted_updates(events: list[tuple[Any, dict[str, Any]]], job: str) -> dict[str, list[ExecutionUpdated]]:
    found: dict[str, list[ExecutionUpdated]] = defaultdict(list)
    for event, _envelope in events:
        if isinstance(event, ExecutionUpdated) and event.job_id == job:
            found[event.thing_name].append(event)
    return found


async def _all_pages(call: Callable[..., dict[str, Any]], key: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = await asyncio.to_thread(call, **params, **({"nextToken": token} if token else {}))
        items += page[key]
        token = page.get("nextToken")
        if not token:
            return items


@pytest.mark.parametrize("fault", FAULTS, ids=[fault.id for fault in FAULTS])
async def test_a_fleet_job_survives_the_fault(private: LocalServers, fault: Fault) -> None:
    async with (
        running(private.servers, seconds_per_minute=MINUTE, request_timeout_seconds=REQUEST_TIMEOUT) as stack,
        contextlib.AsyncExitStack() as held,
    ):
        print(f"\n{fault.name}: stack {stack.settings.topic_prefix}, logs in {stack.logs}")
        setup_began = time.monotonic()
        fleet = await _fleet(stack, held)
        run_began = time.monotonic()
        job = fleet.devices[0].job
        row = Row(private, stack, fleet)
        prober = Prober(stack, job, fleet.devices[1].thing)
        stop = asyncio.Event()
        probing = asyncio.gather(prober.reads(stop), prober.writes(stop))
        working = asyncio.gather(
            *(d.run(m, fleet.one_finished) for d, m in zip(fleet.devices, fleet.mqtt, strict=True))
        )
        try:
            await asyncio.wait_for(fleet.third.wait(), 60)
            struck_at = fleet.done
            began = time.monotonic()
            await fault.strike(row)
            row.notes.append(f"struck with {DEVICES - struck_at} devices unfinished; {time.monotonic() - began:.1f} s")
            try:
                await asyncio.wait_for(asyncio.shield(working), FINISH_BOUND)
            except TimeoutError:
                stuck = [(d.thing, d.resends, d.accepted[-1:], d.rejected) for d in fleet.devices if not d.finished]
                raise AssertionError(f"{len(stuck)} devices never finished; the first: {stuck[:5]}") from None
            await serving_again(stack, 60)
            await until(lambda: _writes_again(prober), 60, "a control-plane write to succeed again")
        finally:
            stop.set()
            working.cancel()
            await asyncio.gather(probing, working, return_exceptions=True)
        for device, mqtt in zip(fleet.devices, fleet.mqtt, strict=True):
            device.late_replies(mqtt)
        assert struck_at < DEVICES, "the fault struck after the fleet had finished"

        iot = strict_client("iot", stack.control_url, 30)
        audit_began = time.monotonic()
        outcome = await _audit(stack, iot, fleet, job)
        row.notes.append(
            f"seconds: fleet set up {run_began - setup_began:.1f}, run {audit_began - run_began:.1f}, "
            f"audit {time.monotonic() - audit_began:.1f}"
        )
        probes = prober.probes
        bad = [p for p in probes if not _allowed(p, fault)]
        slow = [p for p in probes if p.seconds > REQUEST_TIMEOUT + ANSWER_MARGIN]
        outcome.update(
            {
                "fault": fault.name,
                "503s seen": sum(p.status == 503 for p in probes),
                "max request latency s": f"{max(p.seconds for p in probes):.2f}",
            }
        )
        OUTCOMES.append(outcome)
        print(_table_line(outcome, probes, fleet, row.notes))
        assert probes, "the prober sent nothing"
        assert not bad, f"answers outside 2xx/4xx/503: {bad}"
        assert not slow, f"answers slower than the request timeout allows: {slow}"
        assert outcome["devices finished"] == DEVICES, outcome
        assert outcome["lost"] == 0 and outcome["doubled"] == 0, outcome
        assert outcome["rebuild equal"] is True, outcome


def _table_line(outcome: dict[str, Any], probes: list[Probe], fleet: Fleet, notes: list[str]) -> str:
    codes = Counter((p.status, p.code) for p in probes)
    resends = sum(d.resends for d in fleet.devices)
    return "\n".join([str(outcome), f"probe answers {dict(codes)}, device resends {resends}", *notes])


def _allowed(probe: Probe, fault: Fault) -> bool:
    if probe.status == 0:
        return fault.drops_control and probe.code in ("EndpointConnectionError", "ConnectionClosedError")
    return 200 <= probe.status < 300 or 400 <= probe.status < 500 or probe.status == 503


async def _writes_again(prober: Prober) -> bool:
    _seconds, code, _status = await timed(prober.iot.create_thing, thingName=unique("after"))
    return code == "ok"


async def _audit(stack: Stack, iot: Any, fleet: Fleet, job: str) -> dict[str, Any]:
    """What the log, the read models and a rebuild say about the run, as one row of the table."""
    devices = fleet.devices
    flaky = sum(d.flaky for d in devices)

    async def completed() -> bool:
        try:
            return bool((await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["status"] == "COMPLETED")
        except ClientError:
            return False

    await until(completed, 60, f"{job} to complete")
    await projected_to_end(stack, timeout=60)

    updates = _counted_updates(await read_events(stack.settings), job)
    accepted = {(d.thing, number, state["versionNumber"]): state for d in devices for number, state in d.accepted}
    lost = doubled = 0
    for (thing, number, version), state in accepted.items():
        matching = [
            e
            for e in updates[thing]
            if (e.execution_number, e.version_number) == (number, version)
            and (e.status, e.status_details) == (state["status"], state["statusDetails"])
        ]
        lost += not matching
    for events in updates.values():
        steps = Counter(e.status_details.get("step") for e in events if e.cause == "update")
        doubled += sum(times - 1 for times in steps.values() if times > 1)
        at = Counter((e.execution_number, e.version_number) for e in events)
        doubled += sum(times - 1 for times in at.values() if times > 1)

    # every device finished: its last execution SUCCEEDED, in the log and in each thing's own list
    finished = 0
    for device in devices:
        last = max(updates[device.thing], key=lambda e: (e.execution_number, e.version_number))
        expected = [(1, "FAILED"), (2, "SUCCEEDED")] if device.flaky else [(1, "SUCCEEDED")]
        listed = await _all_pages(iot.list_job_executions_for_thing, "executionSummaries", thingName=device.thing)
        seen = sorted(
            (s["jobExecutionSummary"]["executionNumber"], s["jobExecutionSummary"]["status"])
            for s in listed
            if s["jobId"] == job
        )
        assert seen == expected, (device.thing, seen, device.rejected)
        for number, status, reply in device.rejected:
            # The one rejection a device may meet: its FAILED applied, the reply was lost, and the retry that
            # replaced the execution answers the resend.
            assert (device.flaky, number, status, reply["code"]) == (True, 1, "FAILED", "ResourceNotFound"), (
                device.thing,
                number,
                status,
                reply,
            )
        finished += device.finished and last.status == "SUCCEEDED" and last.execution_number == expected[-1][0]

    # the job's counters agree with its executions
    described = (await asyncio.to_thread(iot.describe_job, jobId=job))["job"]["jobProcessDetails"]
    summaries = await _all_pages(iot.list_job_executions_for_job, "executionSummaries", jobId=job, maxResults=250)
    statuses = Counter(s["jobExecutionSummary"]["status"] for s in summaries)
    assert statuses == Counter({"SUCCEEDED": DEVICES, "FAILED": flaky}), statuses
    counters = {k: v for k, v in described.items() if k.startswith("number") and v}
    assert counters == {"numberOfSucceededThings": DEVICES, "numberOfFailedThings": flaky}, described
    # the rollout kept its pace through the fault (retries are not paced); timestamps travel in milliseconds
    released = [
        s["jobExecutionSummary"]["queuedAt"].timestamp()
        for s in summaries
        if s["jobExecutionSummary"]["executionNumber"] == 1
    ]
    most = most_in_window(released, MINUTE - 0.002)
    assert most <= RATE, f"{most} executions released within one minute, over maximumPerMinute {RATE}"

    # a rebuild from the log gives the live rows
    live = await read_model_rows(stack.settings.pg_dsn)
    stack.processes["projector"].terminate()
    await asyncio.to_thread(stack.processes["projector"].wait, 15)
    rebuilt = await rebuild_read_models(stack)
    assert rebuilt.returncode == 0, rebuilt.stderr
    again = await read_model_rows(stack.settings.pg_dsn)
    differing = [table for table in live if live[table] != again.get(table)]
    return {
        "devices finished": finished,
        "updates accepted": len(accepted),
        "lost": lost,
        "doubled": doubled,
        "rebuild equal": not differing or f"no: {differing}",
    }
