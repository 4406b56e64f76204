"""Properties of every decider over random command sequences (hypothesis).

For every step of a random run:
  (a) replaying all emitted events from the initial state gives exactly the state the run reached,
      where the run keeps its state the way the runtime does (snapshot through JSON after each step);
  (b) decide is deterministic, also on a state restored from its snapshot;
  (c) states round-trip through to_dict/from_dict (and JSON), events, commands, replies and sent
      commands round-trip through catalog.to_message/from_message (and JSON, as on Kafka);
  (d) aggregate invariants hold (see each `_check_*`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from itertools import pairwise
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from iotjobs.domain import catalog, targets
from iotjobs.domain import group as g
from iotjobs.domain import job as j
from iotjobs.domain import thing as t
from iotjobs.domain.decision import Context, Decision, Done, Timer
from iotjobs.domain.errors import DomainError, Rejection
from iotjobs.domain.execution import (
    ALL_STATUSES,
    FAILED,
    IN_PROGRESS,
    QUEUED,
    REJECTED,
    REMOVED,
    SUCCEEDED,
    TIMED_OUT,
    ForgetExecution,
    RecordExecutionStatus,
)
from iotjobs.domain.thing import QueueExecution
from iotjobs.runtime import codec

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    database=None,
    # No Phase.explain: its tracing made a failing run take minutes instead of seconds.
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
T0 = 1_700_000_000.0
DOC = '{"op":"x"}'

# --- shared machinery -------------------------------------------------------------------------


def message_round_trip(obj: Any) -> Any:
    """What the runtime does to a command, event or reply on its way through Kafka.

    codec wraps catalog.to_message / from_message in orjson, so this checks both layers.
    """
    decoded, _envelope = codec.decode_message(codec.encode_message(obj, key="k", seq=1))
    assert decoded == obj
    return decoded


def snapshot_round_trip(aggregate: catalog.Aggregate, state: Any) -> Any:
    """What the runtime does to a state on its way through the compacted state topic."""
    data = aggregate.to_dict(state)
    assert aggregate.from_dict(data) == state
    restored = aggregate.from_dict(codec.loads(codec.dumps({"seq": 1, "state": data}))["state"])
    assert restored == state
    return restored


def replay(aggregate: catalog.Aggregate, key: str, events: list[Any]) -> Any:
    state = aggregate.initial(key)
    for event in events:
        state = aggregate.evolve(state, event)
    return state


@dataclass
class Run:
    """One aggregate instance driven the way the runtime drives it, checked against two other views.

    `state` is what the runtime keeps: the snapshot, restored from JSON after every step.
    `live` folds the decisions' event objects as they came out of decide.
    `replayed` folds the events as decoded from their Kafka messages, from the initial state.
    """

    aggregate: catalog.Aggregate
    key: str

    def __post_init__(self) -> None:
        self.state = self.aggregate.initial(self.key)
        self.live = self.state
        self.replayed = self.state
        self.events: list[Any] = []

    def step(self, command: Any, ctx: Context) -> tuple[Any, Decision]:
        before = self.state
        message_round_trip(command)
        decision = self.aggregate.decide(before, command, ctx)
        # (b) determinism: the same inputs, or the same state in another form, give the same decision.
        assert self.aggregate.decide(before, command, ctx) == decision
        assert self.aggregate.decide(self.live, command, ctx) == decision
        # (c) everything that crosses Kafka survives it.
        events = [message_round_trip(event) for event in decision.events]
        if decision.reply is not None:
            message_round_trip(decision.reply)
        for send in decision.sends:
            message_round_trip(send.command)
        if isinstance(decision.reply, Rejection):
            # A refusal changes nothing, except that a late update finds its execution timed out.
            late = [e for e in decision.events if getattr(e, "cause", None) == "timeout" and e.status == "TIMED_OUT"]
            assert list(decision.events) == late and len(late) <= 1
            # A group created meanwhile under another parent than the one that took it in tells that one.
            dropped = [s for s in decision.sends if isinstance(s.command, g.DropChildGroup)]
            if not late:
                assert (decision.sends, decision.effects) == (tuple(dropped), ())
        after = before
        for event in events:
            after = self.aggregate.evolve(after, event)
            self.replayed = self.aggregate.evolve(self.replayed, event)
        for event in decision.events:
            self.live = self.aggregate.evolve(self.live, event)
        self.state = snapshot_round_trip(self.aggregate, after)
        self.events.extend(events)
        # (a) folding every event emitted so far from the initial state gives the state the run reached.
        assert self.replayed == self.state == self.live
        return before, decision

    def finish(self) -> None:
        assert replay(self.aggregate, self.key, self.events) == self.state


# --- thing aggregate --------------------------------------------------------------------------

JOBS = ["j1", "j2", "j3"]
CURRENT = -1000  # placeholder for "the execution's current versionNumber"
FIRE_DUE = "fire due timers"

# Most commands are valid so runs get far; the "any_*" variants keep every rejection exercised.
good_details = st.sampled_from([None, None, {}, {"step": "1"}, {"step": "download", "progress": "50"}])
any_details = st.sampled_from([None, {"step": "1"}, {"bad key": "x"}, {"step": ""}, {"k": "a\nb"}])
good_step = st.sampled_from([None, None, None, -1, 1, 2])
any_step = st.sampled_from([None, -1, 1, 0, 10081])
good_status = st.sampled_from([IN_PROGRESS, IN_PROGRESS, SUCCEEDED, FAILED, REJECTED])
any_status = st.sampled_from([*ALL_STATUSES, "BOGUS"])

queue_commands = st.builds(
    t.QueueExecution,
    job_id=st.sampled_from(JOBS),
    document=st.just(DOC),
    in_progress_timeout_minutes=st.sampled_from([None, 1, 3]),
)


def updates(status: Any, status_details: Any, step: Any) -> Any:
    return st.builds(
        t.UpdateExecution,
        job_id=st.sampled_from([*JOBS, *JOBS, *JOBS, "j9"]),
        status=status,
        status_details=status_details,
        expected_version=st.sampled_from([None, None, CURRENT, CURRENT, 0, 1, 2, 7]),
        execution_number=st.sampled_from([None, None, None, None, 1, 2]),
        include_state=st.booleans(),
        include_document=st.booleans(),
        step_timeout_minutes=step,
    )


update_thing_commands = st.builds(
    t.UpdateThing,
    thing_name=st.just("t1"),
    thing_type_name=st.sampled_from([None, None, "sensor", "gateway"]),
    remove_thing_type=st.sampled_from([False, False, True]),
    attributes=st.sampled_from([None, {}, {"a": "1"}, {"a": "", "b": "2"}, {"b": "3", "c": "4"}]),
    merge=st.booleans(),
    expected_version=st.sampled_from([None, None, CURRENT, CURRENT, 1, 5]),
)

thing_commands = st.one_of(
    update_thing_commands,
    queue_commands,
    queue_commands,
    st.builds(t.StartNext, status_details=good_details, step_timeout_minutes=good_step),
    st.builds(t.StartNext, status_details=any_details, step_timeout_minutes=any_step),
    updates(good_status, good_details, good_step),
    updates(good_status, good_details, good_step),
    updates(good_status, good_details, good_step),
    updates(any_status, any_details, any_step),
    st.builds(
        t.DescribeExecution,
        job_id=st.sampled_from([*JOBS, t.NEXT]),
        execution_number=st.sampled_from([None, None, 1, 2]),
        include_document=st.booleans(),
    ),
    st.just(t.GetPending()),
    st.builds(t.FireTimeout, job_id=st.sampled_from(JOBS), execution_number=st.integers(1, 3)),
    st.just(FIRE_DUE),
    st.just(FIRE_DUE),
    st.just(t.CreateThing("t1", "id-t1")),
)

DEVICE_OR_TIMER_TRANSITIONS = {
    (QUEUED, IN_PROGRESS),
    (QUEUED, SUCCEEDED),
    (QUEUED, FAILED),
    (QUEUED, REJECTED),
    (IN_PROGRESS, IN_PROGRESS),
    (IN_PROGRESS, SUCCEEDED),
    (IN_PROGRESS, FAILED),
    (IN_PROGRESS, REJECTED),
    (IN_PROGRESS, TIMED_OUT),
}


def identity(execution: Any) -> tuple[str, int] | None:
    return None if execution is None else (execution.job_id, execution.execution_number)


def resolve_placeholders(state: t.ThingState, command: Any) -> Any:
    if isinstance(command, t.UpdateExecution) and command.expected_version == CURRENT:
        current = state.executions.get(command.job_id)
        return replace(command, expected_version=current.version_number if current else None)
    if isinstance(command, t.UpdateThing) and command.expected_version == CURRENT:
        return replace(command, expected_version=state.version)
    return command


def _check_thing_step(before: t.ThingState, command: Any, decision: Decision, after: t.ThingState, now: float) -> None:
    # Each event is legal against the state it applies to.
    state = before
    for event in decision.events:
        match event:
            case t.ThingCreated():
                assert not state.registered
            case t.ThingUpdated():
                assert state.registered
            case t.ExecutionQueued():
                prior = state.executions.get(event.job_id)
                assert prior is None or prior.is_terminal, "at most one live execution per job"
                assert event.execution_number == (prior.execution_number + 1 if prior else 1)
                assert event.seq == state.next_seq
            case t.ExecutionUpdated():
                current = state.executions[event.job_id]
                assert event.execution_number == current.execution_number
                assert not current.is_terminal, "a terminal execution never changes again"
                assert event.version_number == current.version_number + 1
                assert (current.status, event.status) in DEVICE_OR_TIMER_TRANSITIONS
                assert event.last_updated_at == now
        state = t.evolve(state, event)
    assert state == after

    # Per-execution invariants of the resulting state.
    pending = after.pending()
    assert len({e.job_id for e in pending}) == len(pending)
    # The pending list (§8): every QUEUED or IN_PROGRESS execution, IN_PROGRESS first, each group in queue order.
    assert {identity(e) for e in pending} == {
        identity(e) for e in after.executions.values() if e.status in (QUEUED, IN_PROGRESS)
    }
    order = [(e.status != IN_PROGRESS, e.seq) for e in pending]
    assert order == sorted(order) and len({e.seq for e in pending}) == len(pending)
    assert all(a.queued_at <= b.queued_at for a, b in pairwise(pending) if a.status == b.status)
    for execution in after.executions.values():
        if execution.status == QUEUED:
            assert execution.version_number == 1 and execution.started_at is None
        if execution.status == IN_PROGRESS:
            assert execution.started_at is not None
            if execution.in_progress_timeout_minutes is None:
                assert execution.in_progress_deadline is None
            else:
                assert (
                    execution.in_progress_deadline == execution.started_at + 60 * execution.in_progress_timeout_minutes
                )
        if execution.status != IN_PROGRESS:
            assert (execution.in_progress_deadline, execution.step_deadline) == (None, None)
    assert sorted(t.timers(after), key=lambda timer: timer.command.job_id) == sorted(
        (
            Timer(e.deadline, t.FireTimeout(e.job_id, e.execution_number))
            for e in after.executions.values()
            if e.status == IN_PROGRESS and e.deadline is not None
        ),
        key=lambda timer: timer.command.job_id,
    )

    # Sends: a status report for each execution whose status changed, nothing else.
    expected_sends = []
    for job_id, execution in after.executions.items():
        previous = before.executions.get(job_id)
        if previous is not None and identity(previous) == identity(execution) and previous.status != execution.status:
            expected_sends.append(RecordExecutionStatus(job_id, "t1", execution.execution_number, execution.status))
    if isinstance(command, t.QueueExecution) and not before.registered and not before.deleted:
        expected_sends.append(ForgetExecution(command.job_id, "t1", 0))  # never created: the job forgets it
    assert [s.command for s in decision.sends] == expected_sends
    assert all(s.key == f"job/{s.command.job_id}" and not s.forward_reply for s in decision.sends)

    # Effects (§8): notify when the pending membership changed, notify-next when the head changed.
    effects = list(decision.effects)
    if {identity(e) for e in before.pending()} != {identity(e) for e in pending}:
        assert effects.pop(0) == t.NotifyPending("t1", [e.to_dict() for e in pending[:10]])
    if identity(before.head()) != identity(after.head()):
        head = after.head()
        assert effects.pop(0) == t.NotifyNext("t1", head.to_dict() if head else None)
    assert effects == []

    # Replies describe the state after the command.
    match command, decision.reply:
        case t.UpdateExecution(), t.UpdateReply():
            assert decision.reply.execution == after.executions[command.job_id].to_dict()
        case t.StartNext(), t.ExecutionReply():
            new_head = after.head()
            assert decision.reply.execution == (new_head.to_dict() if new_head else None)
            assert new_head is None or new_head.status == IN_PROGRESS
        case t.DescribeExecution(), _:
            assert decision.events == ()
        case t.GetPending(), t.PendingReply():
            shown = pending[:10]
            assert decision.reply.in_progress == [e.to_dict() for e in shown if e.status == IN_PROGRESS]
            assert decision.reply.queued == [e.to_dict() for e in shown if e.status == QUEUED]
        case t.UpdateThing(), _:
            _check_update_thing(before, command, decision, after)
        case t.FireTimeout(), None:
            timed = before.executions.get(command.job_id)
            due = (
                timed is not None
                and timed.execution_number == command.execution_number
                and timed.status == IN_PROGRESS
                and timed.deadline is not None
                and timed.deadline <= now
            )
            assert [e.status for e in decision.events] == ([TIMED_OUT] if due else [])


def _check_update_thing(before: t.ThingState, command: t.UpdateThing, decision: Decision, after: t.ThingState) -> None:
    """UpdateThing changes the thing type and attributes of a registered thing, its version by one, and nothing
    else; its refusals name the reason (aws-iot-jobs.md §3.4)."""
    refused: str | None = None
    if command.remove_thing_type and command.thing_type_name is not None:
        refused = "InvalidRequest"
    elif not before.registered:
        refused = "ResourceNotFound"
    elif command.expected_version not in (None, before.version):
        refused = "VersionConflict"
    if refused is not None:
        assert isinstance(decision.reply, Rejection) and decision.reply.kind == refused
        return
    assert decision.reply == Done() and after.version == before.version + 1
    assert replace(after, thing_type_name=None, attributes={}, version=0) == replace(
        before, thing_type_name=None, attributes={}, version=0
    ), "only the thing type, the attributes and the version change"
    if command.remove_thing_type:
        assert after.thing_type_name is None
    else:
        assert after.thing_type_name == (command.thing_type_name or before.thing_type_name)
    given_attributes = command.attributes
    if given_attributes is None:
        assert after.attributes == before.attributes
        return
    assert "" not in after.attributes.values(), "an empty value removes its attribute"
    assert all(after.attributes.get(k) == value for k, value in given_attributes.items() if value)
    kept = {k: value for k, value in before.attributes.items() if k not in given_attributes}
    if command.merge:
        assert all(after.attributes.get(k) == value for k, value in kept.items() if value)
    else:
        assert set(after.attributes) == {k for k, value in given_attributes.items() if value}


@SETTINGS
@given(
    steps=st.lists(st.tuples(thing_commands, st.integers(0, 150)), min_size=10, max_size=30),
    start=st.sampled_from(["empty", "registered", "queued", "queued"]),
)
def test_thing_decider_properties(steps: list[tuple[Any, int]], start: str) -> None:
    run = Run(catalog.aggregate_for("thing/t1"), "thing/t1")
    now = T0
    if start != "empty":
        steps = [(t.CreateThing("t1", "id-t1"), 0), *steps]
    if start == "queued":
        steps = [steps[0], *((t.QueueExecution(job_id, DOC, 1), 0) for job_id in JOBS), *steps[1:]]
    versions: dict[tuple[str, int], int] = {}
    finished: dict[tuple[str, int], dict[str, Any]] = {}

    for drawn, elapsed in steps:
        now += elapsed
        ctx = Context(now=now, seconds_per_minute=60.0)
        if drawn == FIRE_DUE:
            commands: list[Any] = [timer.command for timer in t.timers(run.state) if timer.due <= now]
        else:
            commands = [resolve_placeholders(run.state, drawn)]
        for command in commands:
            before, decision = run.step(command, ctx)
            _check_thing_step(before, command, decision, run.state, now)
            for event in decision.events:
                if isinstance(event, t.ExecutionUpdated):
                    key = (event.job_id, event.execution_number)
                    assert event.version_number > versions.get(key, 1)
                    versions[key] = event.version_number
            for execution in run.state.executions.values():
                key = (execution.job_id, execution.execution_number)
                if key in finished:
                    assert execution.to_dict() == finished[key], "a terminal execution never changes again"
                elif execution.is_terminal:
                    finished[key] = execution.to_dict()
        if drawn == FIRE_DUE:
            assert [timer for timer in t.timers(run.state) if timer.due <= now] == []
    run.finish()


# --- job aggregate ----------------------------------------------------------------------------

THINGS = ["t1", "t2", "t3", "t4"]


def job_spec(selection: str) -> dict[str, Any]:
    return {"targets": ["arn"], "document": DOC, "target_selection": selection}


job_commands = st.one_of(
    st.builds(
        lambda selection, things: j.CreateJob("job1", job_spec(selection), things),
        st.sampled_from([j.SNAPSHOT, j.CONTINUOUS]),
        st.lists(st.sampled_from(THINGS), unique=True, max_size=4),
    ),
    st.builds(
        RecordExecutionStatus,
        job_id=st.just("job1"),
        thing_name=st.sampled_from([*THINGS, "t9"]),
        execution_number=st.integers(1, 2),
        status=st.sampled_from(ALL_STATUSES),
    ),
)


@SETTINGS
@given(steps=st.lists(st.tuples(job_commands, st.integers(0, 100)), min_size=2, max_size=25))
def test_job_decider_properties(steps: list[tuple[Any, int]]) -> None:
    run = Run(catalog.aggregate_for("job/job1"), "job/job1")
    now = T0
    completions = 0
    released: list[str] | None = None

    for command, elapsed in steps:
        now += elapsed
        before, decision = run.step(command, Context(now=now))
        after = run.state
        completions += sum(isinstance(e, j.JobCompleted) for e in decision.events)
        assert completions <= 1

        if isinstance(command, j.CreateJob):
            if before.exists:
                assert isinstance(decision.reply, Rejection)
                assert decision.reply.kind == "ResourceAlreadyExists"
            else:
                released = list(command.things)
                assert [s.key for s in decision.sends] == [f"thing/{name}" for name in command.things]
                assert {s.command for s in decision.sends} <= {QueueExecution("job1", DOC, queued_at=now)}
        else:
            assert decision.reply is None and decision.sends == ()

        if released is not None:
            assert set(after.executions) == set(released)
        if before.status == j.COMPLETED:
            assert after.status == j.COMPLETED and after.completed_at == before.completed_at
        snapshot = after.exists and after.spec.get("target_selection") == j.SNAPSHOT
        if any(isinstance(e, j.JobCompleted) for e in decision.events):
            assert snapshot and after.all_terminal()
        # A SNAPSHOT job never sits IN_PROGRESS once every execution is terminal.
        assert not (snapshot and after.status == j.IN_PROGRESS and after.all_terminal())
        assert not (after.exists and not snapshot and after.status == j.COMPLETED)
    run.finish()


# --- the registry across aggregates: things, groups and jobs talking through commands ----------

ACCOUNT = "arn:aws:iot:us-east-1:123456789012"
W_THINGS = ["a", "b", "c", "d"]
W_GROUPS = ["g0", "g1", "g2", "g3"]
W_JOBS = ["j1", "j2"]


def thing_arn(name: str) -> str:
    return f"{ACCOUNT}:thing/{name}"


def group_arn(name: str) -> str:
    return f"{ACCOUNT}:thinggroup/{name}"


UPDATE_GROUPS = "update thing groups for thing"


@dataclass
class World:
    """Every key of a small registry as a `Run`, and the commands between them in flight: one FIFO per
    (sender, receiver) pair, as the command topic keeps them, delivered in whatever order a test picks."""

    def __post_init__(self) -> None:
        self.runs: dict[str, Run] = {}
        self.channels: dict[tuple[str, str], deque[Any]] = {}

    def run(self, key: str) -> Run:
        if key not in self.runs:
            self.runs[key] = Run(catalog.aggregate_for(key), key)
        return self.runs[key]

    def submit(self, key: str, command: Any, now: float) -> Decision:
        _before, decision = self.run(key).step(command, Context(now=now))
        for send in decision.sends:
            self.channels.setdefault((key, send.key), deque()).append(send.command)
        return decision

    def deliver(self, pick: int, now: float) -> bool:
        busy = [pair for pair, queue in sorted(self.channels.items()) if queue]
        if not busy:
            return False
        _sender, receiver = pair = busy[pick % len(busy)]
        self.submit(receiver, self.channels[pair].popleft(), now)
        return True

    def deliver_from(self, sender: str, receiver: str, now: float) -> None:
        self.submit(receiver, self.channels[(sender, receiver)].popleft(), now)

    def drain(self, now: float) -> None:
        for _ in range(20_000):
            if not self.deliver(0, now):
                return
        raise AssertionError("commands kept causing commands")

    def state(self, key: str) -> Any:
        return self.run(key).state

    def update_groups(self, thing_name: str, adding: list[str], removing: list[str], now: float) -> None:
        """UpdateThingGroupsForThing as the control plane sends it, when it accepts it: the thing and every
        named group exist, no group is named twice and the thing stays within MAX_GROUPS."""
        thing = self.state(f"thing/{thing_name}")
        if not thing.registered or not all(self.state(f"group/{n}").exists for n in (*adding, *removing)):
            return
        try:
            changes = g.membership_changes(thing_name, list(thing.groups), adding, removing)
        except DomainError:
            return
        for change in changes:
            self.submit(g.key_for(change.group_name), change, now)

    def targets_exist(self, command: j.CreateJob | j.AssociateTargets) -> bool:
        arns = command.spec["targets"] if isinstance(command, j.CreateJob) else command.targets
        named, groups = targets.target_names(arns)
        return all(self.state(f"thing/{n}").registered for n in named) and all(
            self.state(f"group/{n}").exists for n in groups
        )


world_actions = st.one_of(
    st.tuples(st.just("deliver"), st.integers(0, 50)),
    st.tuples(st.just("deliver"), st.integers(0, 50)),
    st.tuples(st.just("deliver"), st.integers(0, 50)),
    st.builds(lambda n: ("thing/" + n, t.CreateThing(n, f"id-{n}")), st.sampled_from(W_THINGS)),
    st.builds(lambda n: ("thing/" + n, t.DeleteThing(n)), st.sampled_from(W_THINGS)),
    st.builds(
        lambda n, parent: ("group/" + n, g.CreateThingGroup(n, f"gid-{n}", parent)),
        st.sampled_from(W_GROUPS),
        st.sampled_from([None, None, "g0", "g1"]),
    ),
    st.builds(lambda n: ("group/" + n, g.DeleteThingGroup(n)), st.sampled_from(W_GROUPS)),
    st.builds(
        lambda th, gr: ("group/" + gr, g.AddThingToThingGroup(th, gr)),
        st.sampled_from(W_THINGS),
        st.sampled_from(W_GROUPS),
    ),
    st.builds(
        lambda th, gr: ("group/" + gr, g.AddThingToThingGroup(th, gr)),
        st.sampled_from(W_THINGS),
        st.sampled_from(W_GROUPS),
    ),
    st.builds(
        lambda th, gr: ("group/" + gr, g.RemoveThingFromThingGroup(th, gr)),
        st.sampled_from(W_THINGS),
        st.sampled_from(W_GROUPS),
    ),
    st.builds(
        lambda job, selection, things, groups: (
            "job/" + job,
            j.CreateJob(
                job,
                {
                    "targets": [*map(thing_arn, things), *map(group_arn, groups)],
                    "document": DOC,
                    "target_selection": selection,
                },
                things,
            ),
        ),
        st.sampled_from(W_JOBS),
        st.sampled_from([j.SNAPSHOT, j.CONTINUOUS]),
        st.lists(st.sampled_from(W_THINGS), unique=True, max_size=2),
        st.lists(st.sampled_from(W_GROUPS), unique=True, min_size=1, max_size=2),
    ),
    st.builds(
        lambda job, things, groups: (
            "job/" + job,
            j.AssociateTargets(job, [*map(thing_arn, things), *map(group_arn, groups)], things),
        ),
        st.sampled_from(W_JOBS),
        st.lists(st.sampled_from(W_THINGS), unique=True, max_size=1),
        st.lists(st.sampled_from(W_GROUPS), unique=True, min_size=1, max_size=2),
    ),
    st.builds(
        lambda th, job: ("thing/" + th, t.UpdateExecution(job, SUCCEEDED)),
        st.sampled_from(W_THINGS),
        st.sampled_from(W_JOBS),
    ),
    st.builds(
        lambda th, merge: ("thing/" + th, t.UpdateThing(th, "sensor", attributes={"a": "1", "b": ""}, merge=merge)),
        st.sampled_from(W_THINGS),
        st.booleans(),
    ),
    st.builds(
        lambda gr: ("group/" + gr, g.UpdateThingGroup(gr, "d", {"k": "v"}, merge=True)),
        st.sampled_from(W_GROUPS),
    ),
    # UpdateThingGroupsForThing: the single changes the control plane sends, submitted together here (it
    # sends each once the previous one is done), so that they interleave with everything else.
    st.builds(
        lambda th, adding, removing: (UPDATE_GROUPS, (th, adding, removing)),
        st.sampled_from(W_THINGS),
        st.lists(st.sampled_from(W_GROUPS), unique=True, max_size=3),
        st.lists(st.sampled_from(W_GROUPS), unique=True, max_size=2),
    ),
)


@SETTINGS
@given(actions=st.lists(world_actions, min_size=10, max_size=60))
def test_things_groups_and_jobs_agree_once_every_command_is_delivered(actions: list[Any]) -> None:
    world = World()
    now = T0
    for what, arg in actions:
        now += 1
        if what == "deliver":
            world.deliver(arg, now)
        elif what == UPDATE_GROUPS:
            world.update_groups(*arg, now)
        elif isinstance(arg, j.CreateJob | j.AssociateTargets) and not world.targets_exist(arg):
            continue  # the control plane refuses it: ResourceNotFound
        else:
            world.submit(what, arg, now)
    world.drain(now)

    things = {name: world.state(f"thing/{name}") for name in W_THINGS}
    groups = {name: world.state(f"group/{name}") for name in W_GROUPS}
    jobs = {name: world.state(f"job/{name}") for name in W_JOBS}
    for name, state in groups.items():
        if state.exists:
            # A group's members are the things that say they are in it.
            assert set(state.members) == {n for n, th in things.items() if th.registered and name in th.groups}
            assert all(groups[child].parent_group_name == name for child in state.children)
    for name, thing in things.items():
        assert len(thing.groups) <= t.MAX_GROUPS
        for group_name, ancestors in thing.groups.items():
            assert groups[group_name].exists, f"{name} is in {group_name}, which no longer exists"
            assert list(groups[group_name].ancestors) == ancestors
    for job_id, job in jobs.items():
        if not job.exists:
            continue
        assert all(job.streams.values()), "every stream of things ended"
        named, targeted = targets.target_names(job.spec["targets"])
        continuous = job.spec["target_selection"] == j.CONTINUOUS
        for name, thing in things.items():
            execution = thing.executions.get(job_id)
            pending = execution is not None and not execution.is_terminal
            reached = thing.registered and (name in named or bool(set(targeted) & set(thing.reach())))
            # The job and the thing agree on the execution's status.
            assert (name in job.executions) == (execution is not None), (name, job.executions, execution)
            if execution is not None:
                assert job.executions[name] == execution.status
            # A pending execution is one the job's targets reach; a CONTINUOUS job reaches every such thing.
            assert not pending or reached, f"{name} keeps {job_id} without being targeted"
            if continuous and job.status == j.IN_PROGRESS:
                # A thing back in a target group gets a new execution if its last one was REMOVED on leaving.
                live = execution is not None and execution.status != REMOVED
                assert not reached or live, f"{name} is targeted by {job_id} but has no execution: {execution}"
        if not continuous and job.status == j.IN_PROGRESS:
            assert not job.all_terminal()
    for run in world.runs.values():
        run.finish()


def snapshot_job_on(group: str) -> j.CreateJob:
    spec = {"targets": [group_arn(group)], "document": DOC, "target_selection": j.SNAPSHOT}
    return j.CreateJob("j1", spec, [])


def test_a_thing_that_leaves_the_group_while_its_execution_is_on_the_way_refuses_it() -> None:
    world = World()
    for key, command in [
        ("thing/a", t.CreateThing("a", "id-a")),
        ("group/g0", g.CreateThingGroup("g0", "gid-0")),
        ("group/g0", g.AddThingToThingGroup("a", "g0")),
    ]:
        world.submit(key, command, T0)
        world.drain(T0)
    world.submit("job/j1", snapshot_job_on("g0"), T0)
    world.deliver_from("job/j1", "group/g0", T0)  # the group streams its members
    world.deliver_from("group/g0", "job/j1", T0)  # the job sends "a" its execution
    world.submit("group/g0", g.RemoveThingFromThingGroup("a", "g0"), T0)
    world.deliver_from("group/g0", "thing/a", T0)  # "a" leaves before its execution arrives
    world.drain(T0)
    assert "j1" not in world.state("thing/a").executions
    job = world.state("job/j1")
    assert (dict(job.executions), job.status) == ({}, j.COMPLETED)


def test_a_child_stream_that_ends_before_its_parent_names_it_does_not_complete_the_job_early() -> None:
    world = World()
    for key, command in [
        ("thing/a", t.CreateThing("a", "id-a")),
        ("group/g0", g.CreateThingGroup("g0", "gid-0")),
        ("group/g1", g.CreateThingGroup("g1", "gid-1", "g0")),
        ("group/g0", g.AddThingToThingGroup("a", "g0")),
    ]:
        world.submit(key, command, T0)
        world.drain(T0)
    world.submit("job/j1", snapshot_job_on("g0"), T0)
    world.deliver_from("job/j1", "group/g0", T0)
    world.deliver_from("group/g0", "group/g1", T0)  # the child gets the targeting first
    world.deliver_from("group/g1", "job/j1", T0)  # and its (empty) stream ends at the job first
    assert world.state("job/j1").status == j.IN_PROGRESS
    world.drain(T0)
    job = world.state("job/j1")
    assert (dict(job.executions), job.streams) == ({"a": QUEUED}, {"g0": True, "g0/g1": True})


def test_a_thing_that_leaves_and_rejoins_at_once_gets_a_new_execution_of_a_continuous_job() -> None:
    world = World()
    spec = {"targets": [group_arn("g0")], "document": DOC, "target_selection": j.CONTINUOUS}
    for key, command in [
        ("thing/a", t.CreateThing("a", "id-a")),
        ("group/g0", g.CreateThingGroup("g0", "gid-0")),
        ("group/g0", g.AddThingToThingGroup("a", "g0")),
        ("job/j1", j.CreateJob("j1", spec, [])),
    ]:
        world.submit(key, command, T0)
        world.drain(T0)
    assert world.state("thing/a").executions["j1"].status == QUEUED
    world.submit("group/g0", g.RemoveThingFromThingGroup("a", "g0"), T0)
    world.deliver_from("group/g0", "thing/a", T0)  # "a" leaves: it asks the job whether it still reaches it
    world.deliver_from("thing/a", "job/j1", T0)
    world.deliver_from("job/j1", "thing/a", T0)  # it does not: the execution is REMOVED, the job not yet told
    assert world.state("thing/a").executions["j1"].status == REMOVED
    world.submit("group/g0", g.AddThingToThingGroup("a", "g0"), T0 + 1)
    world.deliver_from("group/g0", "thing/a", T0 + 1)  # "a" is back in g0
    world.deliver_from("thing/a", "group/g0", T0 + 1)  # MemberLeft
    world.deliver_from("thing/a", "group/g0", T0 + 1)  # MemberJoined: the group tells the job
    world.deliver_from("group/g0", "job/j1", T0 + 1)  # before the thing's REMOVED reaches the job
    world.drain(T0 + 1)
    execution = world.state("thing/a").executions["j1"]
    assert (execution.status, execution.execution_number) == (QUEUED, 2)
    assert world.state("job/j1").executions["a"] == QUEUED
