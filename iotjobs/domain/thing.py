"""The thing aggregate (key `thing/{name}`): every job execution of one thing.

It owns queue order, `$next`, versionNumber, statusDetails, timers and the notify / notify-next
payloads. Device requests from MQTT and HTTP arrive here as commands.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import orjson

from iotjobs.domain import validation as v
from iotjobs.domain.attributes import updated as updated_attributes
from iotjobs.domain.decision import Context, Decision, Done, Send, Timer
from iotjobs.domain.errors import DomainError, ErrorKind, check_version, invalid, not_found
from iotjobs.domain.execution import (
    ALL_STATUSES,
    CANCELED,
    DEVICE_SETTABLE,
    IN_PROGRESS,
    PENDING,
    QUEUED,
    REMOVED,
    TIMED_OUT,
    Execution,
    ForgetExecution,
    RecordExecutionStatus,
)
from iotjobs.domain.targets import CheckReach, MemberJoined, MemberLeft
from iotjobs.domain.targets import group_key as _group_key

NEXT = "$next"
PLAIN_JOBS = ""
"""The scope of the jobs without a namespace (no namespace id is empty)."""
APPLIED_TOKENS = 32
NOTIFY_CAP = 10
SCHEDULED_NOTIFY_CAP = 15
"""The pending list a notify or GetPendingJobExecutions shows: 10 executions, 15 when one of them belongs to
a job with a schedule (aws-iot-jobs.md §8, §9)."""

# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateThing:
    thing_name: str
    thing_id: str
    thing_type_name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteThing:
    """Every pending execution is REMOVED, devices are refused, and the thing leaves its groups."""

    thing_name: str
    expected_version: int | None = None


@dataclass(frozen=True)
class UpdateThing:
    """UpdateThing: the thing type and attributes of the registry record (aws-iot-jobs.md §3.4)."""

    thing_name: str
    thing_type_name: str | None = None
    """None: the thing type stays as it is (unless `remove_thing_type`)."""
    remove_thing_type: bool = False
    attributes: dict[str, str] | None = None
    """None: the attributes stay as they are; else merged or replacing, as `merge` says."""
    merge: bool = False
    expected_version: int | None = None


@dataclass(frozen=True)
class JoinGroup:
    """AddThingToThingGroup, from the group once it knows it exists; the thing answers."""

    thing_name: str
    group_name: str
    ancestors: list[str]


@dataclass(frozen=True)
class LeaveGroup:
    """RemoveThingFromThingGroup from the group (the thing answers), or the group's deletion."""

    thing_name: str
    group_name: str
    group_deleted: bool = False


@dataclass(frozen=True)
class QueueExecution:
    job_id: str
    document: str
    in_progress_timeout_minutes: int | None = None
    namespace_id: str | None = None
    via: str | None = None
    """The group the job reached the thing through (None: named as a target). A thing no longer in it
    refuses the execution: it left while the group's members were on their way to the job."""
    queued_at: float | None = None
    """When the job released it (its rollout counts releases by this time); None: on arrival."""
    retry_attempt: int = 0
    counted: bool = True
    """False: the job still counts an execution pending here (a CONTINUOUS joiner it may have just lost to
    REMOVED); if the thing has none pending it makes one and tells the job, else nothing happens."""
    scheduled: bool = False
    """Its job has a schedule: the thing's pending list shows up to 15 executions instead of 10."""
    presigned_url_expires_in_sec: int | None = None
    """How long the presigned URLs delivered with its document last (the job's presignedUrlConfig)."""
    joined: bool = False
    """Released because the thing joined a target group of a running CONTINUOUS job (not by its rollout)."""


@dataclass(frozen=True)
class GetPending:
    pass


@dataclass(frozen=True)
class StartNext:
    status_details: dict[str, str] | None = None
    step_timeout_minutes: int | None = None
    client_token: str | None = None


@dataclass(frozen=True)
class DescribeExecution:
    job_id: str
    execution_number: int | None = None
    include_document: bool = True
    namespace_id: str | None = None
    """Set by the namespaced topics: the job must be in this namespace (`$next` looks only there)."""


@dataclass(frozen=True)
class UpdateExecution:
    job_id: str
    status: str
    status_details: dict[str, str] | None = None
    expected_version: int | None = None
    execution_number: int | None = None
    include_state: bool = False
    include_document: bool = False
    step_timeout_minutes: int | None = None
    client_token: str | None = None
    namespace_id: str | None = None


@dataclass(frozen=True)
class FireTimeout:
    job_id: str
    execution_number: int


@dataclass(frozen=True)
class SetExecutionTimeout:
    """From a job whose in-progress timeout UpdateJob changed: a QUEUED execution starts with the new one
    (aws-iot-jobs.md §6.4; one already IN_PROGRESS keeps its deadline)."""

    job_id: str
    minutes: int | None


@dataclass(frozen=True)
class CancelExecution:
    """CancelJobExecution from the control plane (replies), or CancelJob fanned out by the job (does not)."""

    job_id: str
    force: bool = False
    expected_version: int | None = None
    status_details: dict[str, str] | None = None
    from_job: bool = False
    aborted: bool = False
    """From a job an abort criterion canceled (its abortConfig), not from CancelJob."""


@dataclass(frozen=True)
class DeleteExecution:
    """DeleteJobExecution (an exact executionNumber), or DeleteJob fanned out by the job (any number)."""

    job_id: str
    execution_number: int | None = None
    force: bool = False
    from_job: bool = False


@dataclass(frozen=True)
class RemoveExecutions:
    """From a job: the thing is no longer reached by its targets (aws-iot-jobs.md §6.9). `unless_in` are the
    job's target groups: a thing that is in one of them (or a descendant) again by now keeps its execution."""

    job_ids: list[str]
    unless_in: list[str] = field(default_factory=list)


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingCreated:
    thing_name: str
    thing_id: str
    thing_type_name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ThingDeleted:
    thing_name: str


@dataclass(frozen=True)
class ThingUpdated:
    """The registry record after UpdateThing (its version moves on by one)."""

    thing_name: str
    thing_type_name: str | None
    attributes: dict[str, str]


@dataclass(frozen=True)
class ThingAddedToThingGroup:
    thing_name: str
    group_name: str
    ancestors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ThingRemovedFromThingGroup:
    thing_name: str
    group_name: str


@dataclass(frozen=True)
class ExecutionQueued:
    thing_name: str
    job_id: str
    execution_number: int
    seq: int
    queued_at: float
    document: str
    in_progress_timeout_minutes: int | None = None
    namespace_id: str | None = None
    retry_attempt: int = 0
    scheduled: bool = False
    presigned_url_expires_in_sec: int | None = None
    joined: bool = False
    """QueueExecution.joined: the thing joined a target group of a CONTINUOUS job."""


@dataclass(frozen=True)
class ExecutionUpdated:
    """The execution's mutable fields after a change, and what caused it."""

    thing_name: str
    job_id: str
    execution_number: int
    status: str
    status_details: dict[str, str]
    version_number: int
    last_updated_at: float
    started_at: float | None
    in_progress_deadline: float | None
    step_deadline: float | None
    cause: str
    force_canceled: bool = False
    request_key: str | None = None
    """The device request's clientToken and a digest of its contents: a redelivery of that very request is
    answered again instead of applied twice (see `_already_applied`)."""


@dataclass(frozen=True)
class ExecutionTimeoutChanged:
    thing_name: str
    job_id: str
    execution_number: int
    minutes: int | None


@dataclass(frozen=True)
class ExecutionDeleted:
    thing_name: str
    job_id: str
    execution_number: int
    at: float | None = None
    """When it was deleted (None in logs written before the execution history kept it)."""


# --- replies and effects ----------------------------------------------------------------------


@dataclass(frozen=True)
class ThingCreatedReply:
    thing_name: str
    thing_id: str


@dataclass(frozen=True)
class PendingReply:
    in_progress: list[dict[str, Any]]
    queued: list[dict[str, Any]]


@dataclass(frozen=True)
class ExecutionReply:
    """start-next and describe: the execution (None when nothing is pending)."""

    execution: dict[str, Any] | None
    include_document: bool = True


@dataclass(frozen=True)
class UpdateReply:
    execution: dict[str, Any]
    include_state: bool
    include_document: bool


@dataclass(frozen=True)
class NotifyPending:
    """`notify`: the pending list changed membership."""

    thing_name: str
    executions: list[dict[str, Any]]
    namespace_id: str | None = None
    """Set for `notify-namespace-<ns>`: the namespace's own pending list."""


@dataclass(frozen=True)
class NotifyNext:
    """`notify-next`: the head of the pending list is another execution (None: the list is empty)."""

    thing_name: str
    execution: dict[str, Any] | None
    namespace_id: str | None = None


COMMANDS = (
    CreateThing,
    DeleteThing,
    UpdateThing,
    JoinGroup,
    LeaveGroup,
    QueueExecution,
    GetPending,
    StartNext,
    DescribeExecution,
    UpdateExecution,
    FireTimeout,
    CancelExecution,
    DeleteExecution,
    RemoveExecutions,
    SetExecutionTimeout,
)
EVENTS = (
    ThingCreated,
    ExecutionQueued,
    ExecutionUpdated,
    ExecutionDeleted,
    ThingDeleted,
    ThingAddedToThingGroup,
    ThingRemovedFromThingGroup,
    ThingUpdated,
    ExecutionTimeoutChanged,
)
REPLIES = (ThingCreatedReply, PendingReply, ExecutionReply, UpdateReply)
MAX_GROUPS = 10
"""Thing groups a thing may belong to at once."""

# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingState:
    name: str
    thing_id: str | None = None
    executions: dict[str, Execution] = field(default_factory=dict)
    """The latest execution of each job on this thing."""
    next_seq: int = 0
    execution_numbers: dict[str, int] = field(default_factory=dict)
    """The last executionNumber given per job: numbers are never reused, even after a deletion."""
    applied_tokens: dict[str, list[Any]] = field(default_factory=dict)
    """request key -> [job id, versionNumber it produced] for the latest device changes, oldest first (at
    most APPLIED_TOKENS)."""
    deleted: bool = False
    """DeleteThing unregistered it: an execution released to it late is REMOVED at once."""
    thing_type_name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    version: int = 0
    """The registry version: 1 when created, one more on each update and each group it joins or leaves."""
    groups: dict[str, list[str]] = field(default_factory=dict)
    """The groups it is in, each with its ancestors (root first)."""
    past: dict[str, dict[str, str]] = field(default_factory=dict)
    """Per job, the earlier executions (executionNumber as text, to its terminal status) a retry or a re-run
    followed: each stays until DeleteJobExecution or DeleteJob deletes it (every execution is kept)."""

    @property
    def registered(self) -> bool:
        return self.thing_id is not None

    def pending(self, namespace_id: str | None = None) -> list[Execution]:
        """IN_PROGRESS first, then QUEUED, each in the order they were queued: all jobs (None), one namespace's,
        or the jobs without a namespace (PLAIN_JOBS)."""
        live = [
            e
            for e in self.executions.values()
            if e.status in PENDING and (namespace_id is None or e.namespace_id == (namespace_id or None))
        ]
        return sorted(live, key=lambda e: (e.status != IN_PROGRESS, e.seq))

    def head(self, namespace_id: str | None = None) -> Execution | None:
        pending = self.pending(namespace_id)
        return pending[0] if pending else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "thing_id": self.thing_id,
            "executions": {k: e.to_dict() for k, e in self.executions.items()},
            "next_seq": self.next_seq,
            "execution_numbers": self.execution_numbers,
            "deleted": self.deleted,
            "applied_tokens": self.applied_tokens,
            "thing_type_name": self.thing_type_name,
            "attributes": self.attributes,
            "version": self.version,
            "groups": self.groups,
            "past": self.past,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> ThingState:
        return ThingState(
            name=data["name"],
            thing_id=data["thing_id"],
            executions={k: Execution.from_dict(e) for k, e in data["executions"].items()},
            next_seq=data["next_seq"],
            execution_numbers=data.get("execution_numbers", {}),
            deleted=data.get("deleted", False),
            applied_tokens=data.get("applied_tokens", {}),
            thing_type_name=data.get("thing_type_name"),
            attributes=data.get("attributes", {}),
            version=data.get("version", 0),
            groups=data.get("groups", {}),
            past=data.get("past", {}),
        )

    def reach(self) -> list[str]:
        """The groups the thing is in and their ancestors: what a job's group targets reach it through."""
        return sorted({name for group, ancestors in self.groups.items() for name in (group, *ancestors)})


def initial(key: str) -> ThingState:
    return ThingState(name=key.removeprefix("thing/"))


def key_for(thing_name: str) -> str:
    return f"thing/{thing_name}"


# --- evolve -----------------------------------------------------------------------------------


def evolve(state: ThingState, event: Any) -> ThingState:
    match event:
        case ThingCreated():
            return replace(
                state,
                thing_id=event.thing_id,
                deleted=False,
                thing_type_name=event.thing_type_name,
                attributes=dict(event.attributes),
                version=1,
                groups={},
            )
        case ThingDeleted():
            return replace(state, thing_id=None, deleted=True, attributes={}, thing_type_name=None, groups={})
        case ThingUpdated():
            return replace(
                state,
                thing_type_name=event.thing_type_name,
                attributes=dict(event.attributes),
                version=state.version + 1,
            )
        case ThingAddedToThingGroup():
            groups = {**state.groups, event.group_name: list(event.ancestors)}
            return replace(state, groups=groups, version=state.version + 1)
        case ThingRemovedFromThingGroup():
            groups = {g: a for g, a in state.groups.items() if g != event.group_name}
            return replace(state, groups=groups, version=state.version + 1)
        case ExecutionQueued():
            execution = Execution(
                job_id=event.job_id,
                thing_name=event.thing_name,
                execution_number=event.execution_number,
                status=QUEUED,
                queued_at=event.queued_at,
                last_updated_at=event.queued_at,
                version_number=1,
                seq=event.seq,
                document=event.document,
                in_progress_timeout_minutes=event.in_progress_timeout_minutes,
                namespace_id=event.namespace_id,
                retry_attempt=event.retry_attempt,
                scheduled=event.scheduled,
                presigned_url_expires_in_sec=event.presigned_url_expires_in_sec,
            )
            past = state.past
            earlier = state.executions.get(event.job_id)
            if earlier is not None:
                kept = {**past.get(event.job_id, {}), str(earlier.execution_number): earlier.status}
                past = {**past, event.job_id: kept}
            return replace(
                state,
                executions={**state.executions, event.job_id: execution},
                next_seq=max(state.next_seq, event.seq + 1),
                execution_numbers={**state.execution_numbers, event.job_id: event.execution_number},
                past=past,
            )
        case ExecutionUpdated():
            current = state.executions[event.job_id]
            updated = replace(
                current,
                status=event.status,
                status_details=dict(event.status_details),
                version_number=event.version_number,
                last_updated_at=event.last_updated_at,
                started_at=event.started_at,
                in_progress_deadline=event.in_progress_deadline,
                step_deadline=event.step_deadline,
                force_canceled=event.force_canceled,
            )
            tokens = state.applied_tokens
            if event.request_key is not None:
                tokens = dict(tokens)
                tokens.pop(event.request_key, None)  # re-inserted last: the most recent is kept longest
                while len(tokens) >= APPLIED_TOKENS:
                    del tokens[next(iter(tokens))]  # the oldest
                tokens[event.request_key] = [event.job_id, event.version_number]
            return replace(state, executions={**state.executions, event.job_id: updated}, applied_tokens=tokens)
        case ExecutionTimeoutChanged():
            current = state.executions[event.job_id]
            changed = replace(current, in_progress_timeout_minutes=event.minutes)
            return replace(state, executions={**state.executions, event.job_id: changed})
        case ExecutionDeleted():
            latest = state.executions.get(event.job_id)
            if latest is not None and latest.execution_number == event.execution_number:
                remaining = {k: e for k, e in state.executions.items() if k != event.job_id}
                return replace(state, executions=remaining)
            others = {
                n: status for n, status in state.past.get(event.job_id, {}).items() if n != str(event.execution_number)
            }
            past = {job: kept for job, kept in {**state.past, event.job_id: others}.items() if kept}
            return replace(state, past=past)
    raise TypeError(f"thing aggregate cannot apply {type(event).__name__}")


def fold(state: ThingState, events: tuple[Any, ...] | list[Any]) -> ThingState:
    for event in events:
        state = evolve(state, event)
    return state


# --- decide -----------------------------------------------------------------------------------


def decide(state: ThingState, command: Any, ctx: Context) -> Decision:
    try:
        events, reply = _decide(state, command, ctx)
    except DomainError as err:
        return Decision(reply=err.rejection())
    after = fold(state, events)
    return Decision(
        reply=reply,
        events=tuple(events),
        sends=(*_status_reports(state, after, command), *_registry_sends(state, after, command)),
        effects=tuple(_notifications(state, after, _plain(ctx))),
    )


def _plain(ctx: Context) -> str | None:
    """What the plain (not namespaced) device topics see: every job, or only those without a namespace."""
    return PLAIN_JOBS if ctx.per_namespace_queues else None


def _decide(state: ThingState, command: Any, ctx: Context) -> tuple[list[Any], Any]:
    match command:
        case CreateThing():
            return _create(state, command, ctx)
        case DeleteThing():
            return _delete_thing(state, command, ctx), Done()
        case UpdateThing():
            return _update_thing(state, command), Done()
        case JoinGroup():
            return _join(state, command), Done()
        case LeaveGroup():
            if not state.registered and not command.group_deleted:
                raise not_found(f"Thing {state.name} does not exist")
            if command.group_name not in state.groups:
                return [], Done()
            return [ThingRemovedFromThingGroup(state.name, command.group_name)], Done()
        case QueueExecution():
            return _queue(state, command, ctx), None
        case GetPending():
            _require_thing(state)
            pending = _capped(state.pending(_plain(ctx)))
            return [], PendingReply(
                in_progress=[e.to_dict() for e in pending if e.status == IN_PROGRESS],
                queued=[e.to_dict() for e in pending if e.status == QUEUED],
            )
        case StartNext():
            return _start_next(state, command, ctx)
        case DescribeExecution():
            return [], _describe(state, command, ctx)
        case UpdateExecution():
            return _update(state, command, ctx)
        case FireTimeout():
            return _fire_timeout(state, command, ctx), None
        case CancelExecution():
            return _cancel(state, command, ctx)
        case DeleteExecution():
            return _delete(state, command, ctx)
        case SetExecutionTimeout():
            execution = state.executions.get(command.job_id)
            if execution is None or execution.status != QUEUED:
                return [], None
            return [
                ExecutionTimeoutChanged(state.name, command.job_id, execution.execution_number, command.minutes)
            ], None
        case RemoveExecutions():
            if set(command.unless_in).intersection(state.reach()):
                return [], None  # it joined one of the job's groups again since it asked
            return _remove(state, command.job_ids, ctx), None
    raise TypeError(f"thing aggregate cannot handle {type(command).__name__}")


def _require_thing(state: ThingState) -> None:
    if not state.registered:
        raise not_found(f"Thing {state.name} does not exist")


def _queue(state: ThingState, command: QueueExecution, ctx: Context) -> list[Any]:
    current = state.executions.get(command.job_id)
    if current is not None and not current.is_terminal:
        return []  # one live execution per job and thing: a repeated release changes nothing
    if _refuses(state, command):
        return []
    events: list[Any] = [
        ExecutionQueued(
            thing_name=state.name,
            job_id=command.job_id,
            execution_number=state.execution_numbers.get(command.job_id, 0) + 1,
            seq=state.next_seq,
            queued_at=ctx.now if command.queued_at is None else command.queued_at,
            document=command.document,
            in_progress_timeout_minutes=command.in_progress_timeout_minutes,
            namespace_id=command.namespace_id,
            retry_attempt=command.retry_attempt,
            scheduled=command.scheduled,
            presigned_url_expires_in_sec=command.presigned_url_expires_in_sec,
            joined=command.joined,
        )
    ]
    if state.deleted:
        # Released before DeleteThing reached the job: the thing is gone, so the execution is REMOVED
        # at once (aws-iot-jobs.md §6.9) and the job hears so.
        queued = fold(state, events).executions[command.job_id]
        events.append(_changed(queued, ctx, "thing-deleted", status=REMOVED))
    return events


def _refuses(state: ThingState, command: QueueExecution) -> bool:
    """An execution for a thing never created, or through a group the thing has left since: the job
    forgets it (`_registry_sends`). A deleted thing takes it and REMOVES it, so the job hears why."""
    if not state.registered:
        return not state.deleted
    return command.via is not None and command.via not in state.groups


def _create(state: ThingState, command: CreateThing, ctx: Context) -> tuple[list[Any], Any]:
    if state.registered:
        if state.thing_type_name == command.thing_type_name and state.attributes == command.attributes:
            return [], ThingCreatedReply(state.name, state.thing_id or "")
        raise DomainError(
            ErrorKind.RESOURCE_ALREADY_EXISTS,
            f"Thing {state.name} already exists with a different configuration",
            {"resourceId": state.thing_id},
        )
    created = ThingCreated(state.name, command.thing_id, command.thing_type_name, dict(command.attributes))
    # A thing created again under a deleted one's name inherits none of its executions (aws-iot-jobs.md
    # §6.9): they are deleted, and their jobs stop counting them. Their numbers are still not used again.
    gone = [
        ExecutionDeleted(state.name, job_id, int(number), ctx.now)
        for job_id, earlier in sorted(state.past.items())
        for number in sorted(earlier, key=int)
    ]
    gone += [ExecutionDeleted(state.name, e.job_id, e.execution_number, ctx.now) for e in state.executions.values()]
    return [*gone, created], ThingCreatedReply(state.name, command.thing_id)


def _delete_thing(state: ThingState, command: DeleteThing, ctx: Context) -> list[Any]:
    """Pending executions become REMOVED; executions stay, so numbers are never reused."""
    if not state.registered:
        return []  # DeleteThing succeeds for a thing that does not exist
    check_version(command.expected_version, state.version, f"thing {state.name}")
    events: list[Any] = [_changed(e, ctx, "thing-deleted", status=REMOVED) for e in state.pending()]
    return [*events, ThingDeleted(state.name)]


def _update_thing(state: ThingState, command: UpdateThing) -> list[Any]:
    if command.remove_thing_type and command.thing_type_name is not None:
        raise invalid("thingTypeName and removeThingType=true cannot be given together: set a thing type or remove it")
    _require_thing(state)
    check_version(command.expected_version, state.version, f"thing {state.name}")
    type_name = None if command.remove_thing_type else command.thing_type_name or state.thing_type_name
    attributes = state.attributes
    if command.attributes is not None:
        attributes = updated_attributes(state.attributes, command.attributes, command.merge)
    return [ThingUpdated(state.name, type_name, attributes)]


def _join(state: ThingState, command: JoinGroup) -> list[Any]:
    _require_thing(state)
    if command.group_name in state.groups:
        return []
    if len(state.groups) >= MAX_GROUPS:
        raise invalid(f"Thing {state.name} already belongs to {MAX_GROUPS} thing groups, the most allowed")
    return [ThingAddedToThingGroup(state.name, command.group_name, list(command.ancestors))]


def _registry_sends(before: ThingState, after: ThingState, command: Any) -> list[Send]:
    """What the groups and jobs hear of the thing's registry record changing."""
    match command:
        case JoinGroup() if command.group_name in after.groups and command.group_name not in before.groups:
            return [Send(_group_key(command.group_name), MemberJoined(command.group_name, after.name))]
        case LeaveGroup() if command.group_name in before.groups and command.group_name not in after.groups:
            sends = (
                []
                if command.group_deleted
                else [Send(_group_key(command.group_name), MemberLeft(command.group_name, after.name))]
            )
            # Each job with an execution pending here decides whether its targets still reach the thing.
            reach = after.reach()
            sends += [Send(f"job/{e.job_id}", CheckReach(e.job_id, after.name, reach)) for e in after.pending()]
            return sends
        case DeleteThing() if before.registered and not after.registered:
            return [Send(_group_key(group), MemberLeft(group, after.name)) for group in before.groups]
        case QueueExecution() if command.counted and _refuses(before, command):
            return [Send(f"job/{command.job_id}", ForgetExecution(command.job_id, after.name, 0))]
    return []


def _remove(state: ThingState, job_ids: list[str], ctx: Context) -> list[Any]:
    """The thing left every target of these jobs: their pending executions become REMOVED."""
    pending = {e.job_id: e for e in state.pending()}
    leaving = [pending[job_id] for job_id in dict.fromkeys(job_ids) if job_id in pending]
    return [_changed(execution, ctx, "removed", status=REMOVED) for execution in leaving]


def _changed(
    execution: Execution,
    ctx: Context,
    cause: str,
    *,
    status: str | None = None,
    status_details: dict[str, str] | None = None,
    step_timeout_minutes: int | None = None,
    force_canceled: bool = False,
) -> ExecutionUpdated:
    """The event for one persisted change: versionNumber moves on every one."""
    new_status = status or execution.status
    started_at = execution.started_at
    in_progress_deadline = execution.in_progress_deadline
    step_deadline = execution.step_deadline
    if execution.status == QUEUED and new_status == IN_PROGRESS:
        started_at = ctx.now
        if execution.in_progress_timeout_minutes is not None:
            in_progress_deadline = ctx.now + ctx.minutes(execution.in_progress_timeout_minutes)
    if step_timeout_minutes is not None:
        step_deadline = (
            None if step_timeout_minutes == v.CANCEL_STEP_TIMER else ctx.now + ctx.minutes(step_timeout_minutes)
        )
    if new_status != IN_PROGRESS:
        in_progress_deadline = step_deadline = None
    return ExecutionUpdated(
        thing_name=execution.thing_name,
        job_id=execution.job_id,
        execution_number=execution.execution_number,
        status=new_status,
        status_details=dict(execution.status_details if status_details is None else status_details),
        version_number=execution.version_number + 1,
        last_updated_at=ctx.now,
        started_at=started_at,
        in_progress_deadline=in_progress_deadline,
        step_deadline=step_deadline,
        cause=cause,
        force_canceled=force_canceled or execution.force_canceled,
    )


def _start_next(state: ThingState, command: StartNext, ctx: Context) -> tuple[list[Any], Any]:
    details = None if command.status_details is None else v.check_status_details(command.status_details)
    step = None if command.step_timeout_minutes is None else v.check_step_timeout(command.step_timeout_minutes)
    _require_thing(state)
    request_key = _request_key(command)
    if (replayed := _already_applied(state, request_key)) is not None:
        return [], ExecutionReply(replayed.to_dict())
    head = state.head(_plain(ctx))
    if head is None:
        return [], ExecutionReply(None)
    if head.status == IN_PROGRESS:
        return [], ExecutionReply(head.to_dict())
    event = replace(
        _changed(head, ctx, "start-next", status=IN_PROGRESS, status_details=details, step_timeout_minutes=step),
        request_key=request_key,
    )
    return [event], ExecutionReply(evolve(state, event).executions[head.job_id].to_dict())


def _request_key(command: StartNext | UpdateExecution) -> str | None:
    """clientToken plus a digest of what the request asks, so a reused token with other contents is a new
    request; None when the device sent no token (nothing to recognise a redelivery by)."""
    if command.client_token is None:
        return None
    contents = orjson.dumps(command)  # a dataclass: its fields in declaration order
    return f"{command.client_token}#{hashlib.sha256(contents).hexdigest()[:16]}"


def _already_applied(state: ThingState, request_key: str | None) -> Execution | None:
    """The execution this very request already changed, if nothing has changed it since: a QoS 1
    redelivery is answered again from that state, never applied twice."""
    applied = state.applied_tokens.get(request_key) if request_key is not None else None
    if applied is None:
        return None
    execution = state.executions.get(applied[0])
    return execution if execution is not None and execution.version_number == applied[1] else None


def _find(state: ThingState, job_id: str, execution_number: int | None, namespace_id: str | None = None) -> Execution:
    execution = state.executions.get(job_id)
    if execution is None or (namespace_id is not None and execution.namespace_id != namespace_id):
        where = f" in namespace {namespace_id}" if namespace_id is not None else ""
        raise not_found(f"Job execution for job {job_id}{where} on thing {state.name} does not exist")
    if execution_number is not None and execution_number != execution.execution_number:
        raise not_found(f"Job execution {execution_number} of job {job_id} on thing {state.name} does not exist")
    return execution


def _describe(state: ThingState, command: DescribeExecution, ctx: Context) -> ExecutionReply:
    if command.job_id != NEXT:
        v.check_job_id(command.job_id)
    _require_thing(state)
    if command.job_id == NEXT:
        head = state.head(_plain(ctx) if command.namespace_id is None else command.namespace_id)
        return ExecutionReply(head.to_dict() if head else None, command.include_document)
    earlier = state.past.get(command.job_id, {}).get(str(command.execution_number))
    if earlier is not None:
        # An execution a retry or a re-run followed: terminal, like any the device asks about too late.
        raise DomainError(
            ErrorKind.TERMINAL_STATE,
            f"Job execution {command.execution_number} of job {command.job_id} on thing {state.name} is in "
            f"terminal state {earlier}",
        )
    execution = _find(state, command.job_id, command.execution_number, command.namespace_id)
    if execution.is_terminal:
        raise DomainError(
            ErrorKind.TERMINAL_STATE,
            f"Job execution {execution.job_id} on thing {state.name} is in terminal state {execution.status}",
        )
    return ExecutionReply(execution.to_dict(), command.include_document)


def _update(state: ThingState, command: UpdateExecution, ctx: Context) -> tuple[list[Any], Any]:
    v.check_job_id(command.job_id)
    if command.status in ALL_STATUSES and command.status not in DEVICE_SETTABLE:
        # AWS's answer (docs/compatibility.md), before any look-up: a state only the service sets.
        raise DomainError(
            ErrorKind.INVALID_STATE_TRANSITION, f"The status of job execution cannot be changed to be {command.status}"
        )
    if command.status not in DEVICE_SETTABLE:
        raise invalid(f"status '{command.status}' cannot be set by a device; use one of {', '.join(DEVICE_SETTABLE)}")
    details = None if command.status_details is None else v.check_status_details(command.status_details)
    step = None if command.step_timeout_minutes is None else v.check_step_timeout(command.step_timeout_minutes)
    _require_thing(state)
    request_key = _request_key(command)
    if (replayed := _already_applied(state, request_key)) is not None:
        return [], UpdateReply(replayed.to_dict(), command.include_state, command.include_document)
    execution = _find(state, command.job_id, command.execution_number, command.namespace_id)
    if command.expected_version is not None and command.expected_version != execution.version_number:
        raise DomainError(
            ErrorKind.VERSION_MISMATCH,
            f"expectedVersion {command.expected_version} does not match the current versionNumber "
            f"{execution.version_number} of job execution {execution.job_id} on thing {state.name}",
            {"executionState": execution.state_view()},
        )
    if execution.is_terminal:
        raise DomainError(
            ErrorKind.INVALID_STATE_TRANSITION,
            f"Job execution {execution.job_id} on thing {state.name} is already {execution.status} and "
            f"cannot move to {command.status}",
            {"executionState": execution.state_view()},
        )
    if execution.deadline is not None and execution.deadline <= ctx.now:
        # The timer is due but has not fired yet: the device is late, whatever the timer task's lag.
        timed_out = _changed(execution, ctx, "timeout", status=TIMED_OUT)
        late = evolve(state, timed_out).executions[execution.job_id]
        return [timed_out], DomainError(
            ErrorKind.INVALID_STATE_TRANSITION,
            f"Job execution {execution.job_id} on thing {state.name} timed out before this update arrived",
            {"executionState": late.state_view()},
        ).rejection()
    event = replace(
        _changed(execution, ctx, "update", status=command.status, status_details=details, step_timeout_minutes=step),
        request_key=request_key,
    )
    updated = evolve(state, event).executions[execution.job_id]
    return [event], UpdateReply(updated.to_dict(), command.include_state, command.include_document)


def _fire_timeout(state: ThingState, command: FireTimeout, ctx: Context) -> list[Any]:
    execution = state.executions.get(command.job_id)
    if (
        execution is None
        or execution.execution_number != command.execution_number
        or execution.status != IN_PROGRESS
        or execution.deadline is None
        or execution.deadline > ctx.now
    ):
        return []  # the timer was reset, cleared or overtaken by the device
    return [_changed(execution, ctx, "timeout", status=TIMED_OUT)]


def _cancel(state: ThingState, command: CancelExecution, ctx: Context) -> tuple[list[Any], Any]:
    details = None if command.status_details is None else v.check_status_details(command.status_details)
    execution = state.executions.get(command.job_id)
    if command.from_job:
        # CancelJob: QUEUED executions always, IN_PROGRESS ones only when forced; the rest stay as they are.
        if execution is None or execution.status not in (QUEUED, IN_PROGRESS):
            return [], None
        if execution.status == IN_PROGRESS and not command.force:
            return [], None
        cause = "abort" if command.aborted else "cancel"  # an abort criterion, or CancelJob
        return [_changed(execution, ctx, cause, status=CANCELED, force_canceled=command.force)], None
    execution = _find(state, command.job_id, None)
    if command.expected_version is not None and command.expected_version != execution.version_number:
        raise DomainError(
            ErrorKind.VERSION_CONFLICT,
            f"expectedVersion {command.expected_version} does not match the current versionNumber "
            f"{execution.version_number} of job execution {execution.job_id} on thing {state.name}",
        )
    if execution.is_terminal:
        raise DomainError(
            ErrorKind.INVALID_STATE_TRANSITION,
            f"Job execution {execution.job_id} on thing {state.name} is {execution.status} and cannot be canceled",
        )
    if execution.status == IN_PROGRESS and not command.force:
        raise DomainError(
            ErrorKind.INVALID_STATE_TRANSITION,
            f"Job execution {execution.job_id} on thing {state.name} is IN_PROGRESS; cancel it with force=true",
        )
    event = _changed(execution, ctx, "cancel", status=CANCELED, status_details=details, force_canceled=command.force)
    return [event], Done()


def _delete(state: ThingState, command: DeleteExecution, ctx: Context) -> tuple[list[Any], Any]:
    execution = state.executions.get(command.job_id)
    earlier = state.past.get(command.job_id, {})
    if command.from_job:
        # DeleteJob: every execution of the job here, the earlier ones first.
        events = [ExecutionDeleted(state.name, command.job_id, int(n), ctx.now) for n in sorted(earlier, key=int)]
        if execution is not None:
            events.append(ExecutionDeleted(state.name, command.job_id, execution.execution_number, ctx.now))
        return events, None
    if str(command.execution_number) in earlier:
        return [ExecutionDeleted(state.name, command.job_id, int(command.execution_number or 0), ctx.now)], Done()
    if execution is None or execution.execution_number != command.execution_number:
        raise not_found(
            f"Job execution {command.execution_number} of job {command.job_id} on thing {state.name} does not exist"
        )
    if not execution.is_terminal and not command.force:
        raise DomainError(
            ErrorKind.INVALID_STATE_TRANSITION,
            f"Job execution {execution.job_id} on thing {state.name} is {execution.status}; "
            "only a terminal execution can be deleted without force=true",
        )
    return [ExecutionDeleted(state.name, command.job_id, execution.execution_number, ctx.now)], Done()


# --- consequences of a change -----------------------------------------------------------------


def _status_reports(before: ThingState, after: ThingState, command: Any = None) -> list[Send]:
    uncounted = isinstance(command, QueueExecution) and not command.counted
    sends = [
        Send(f"job/{job_id}", ForgetExecution(job_id, after.name, int(number), status, past=True))
        for job_id, earlier in before.past.items()
        for number, status in earlier.items()
        if number not in after.past.get(job_id, {})  # deleted: an earlier execution never comes back
    ]
    sends += [
        Send(f"job/{job_id}", ForgetExecution(job_id, after.name, gone.execution_number))
        for job_id, gone in before.executions.items()
        if job_id not in after.executions
    ]
    for job_id, execution in after.executions.items():
        previous = before.executions.get(job_id)
        if previous is None or previous.execution_number != execution.execution_number:
            if execution.status != QUEUED or uncounted:
                # released and settled in one step (a late release to a deleted thing), or one the job has
                # yet to count
                record = RecordExecutionStatus(
                    job_id, after.name, execution.execution_number, execution.status, new=uncounted
                )
                sends.append(Send(f"job/{job_id}", record))
            continue  # a new execution: the job counted it when it released it
        if previous.status != execution.status:
            sends.append(
                Send(
                    f"job/{job_id}",
                    RecordExecutionStatus(job_id, after.name, execution.execution_number, execution.status),
                )
            )
    return sends


def _capped(pending: list[Execution]) -> list[Execution]:
    cap = SCHEDULED_NOTIFY_CAP if any(e.scheduled for e in pending) else NOTIFY_CAP
    return pending[:cap]


def _identity(execution: Execution | None) -> tuple[str, int] | None:
    return None if execution is None else (execution.job_id, execution.execution_number)


def _notifications(before: ThingState, after: ThingState, plain: str | None = None) -> list[Any]:
    """notify and notify-next over every job (one queue per thing, as AWS has it), and the same for each
    namespace touched, computed over that namespace's jobs alone, for its namespaced topics."""
    effects: list[Any] = []
    namespaces = {e.namespace_id for e in (*before.executions.values(), *after.executions.values())}
    for namespace in [None, *sorted(n for n in namespaces if n is not None)]:
        scope = plain if namespace is None else namespace
        pending_before = before.pending(scope)
        pending_after = after.pending(scope)
        if {_identity(e) for e in pending_before} != {_identity(e) for e in pending_after}:
            listed = [e.to_dict() for e in _capped(pending_after)]
            effects.append(NotifyPending(after.name, listed, namespace))
        head_before = pending_before[0] if pending_before else None
        head_after = pending_after[0] if pending_after else None
        if _identity(head_before) != _identity(head_after):
            effects.append(NotifyNext(after.name, head_after.to_dict() if head_after else None, namespace))
    return effects


def restored_notifications(state: ThingState, ctx: Context) -> list[Any]:
    """What a new owner publishes for a thing whose state it restored past its last snapshot: the former
    owner may have gone before publishing it. Devices may hear a notification twice, never miss one."""
    return _notifications(initial(key_for(state.name)), state, _plain(ctx))


# --- timers -----------------------------------------------------------------------------------


def timers(state: ThingState) -> list[Timer]:
    return [
        Timer(e.deadline, FireTimeout(e.job_id, e.execution_number))
        for e in state.executions.values()
        if e.status == IN_PROGRESS and e.deadline is not None
    ]
