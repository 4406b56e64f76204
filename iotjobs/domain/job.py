"""The job aggregate (key `job/{id}`): configuration, status lifecycle, targets and completion."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from immutables import Map

from iotjobs.domain import tagging, targets
from iotjobs.domain.decision import Context, Decision, Done, Send
from iotjobs.domain.errors import DomainError, ErrorKind
from iotjobs.domain.execution import QUEUED, TERMINAL, ForgetExecution, RecordExecutionStatus
from iotjobs.domain.targets import group_key
from iotjobs.domain.thing import CancelExecution, DeleteExecution, QueueExecution, RemoveExecutions
from iotjobs.domain.thing import key_for as thing_key

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
CANCELED = "CANCELED"
DELETION_IN_PROGRESS = "DELETION_IN_PROGRESS"
RETRY_CONFIG = "jobExecutionsRetryConfig"
MAX_TARGETS = 100
SNAPSHOT = "SNAPSHOT"
CONTINUOUS = "CONTINUOUS"


@dataclass(frozen=True)
class JobSpec:
    """What CreateJob asked for, after validation; stored and echoed by the read model."""

    targets: list[str]
    document: str
    target_selection: str = SNAPSHOT
    description: str | None = None
    in_progress_timeout_minutes: int | None = None
    namespace_id: str | None = None
    job_template_arn: str | None = None
    tags: dict[str, str] | None = None
    """The tags CreateJob gave; the job's current tags are JobState.tags."""
    document_source: str | None = None
    config: dict[str, Any] | None = None
    """Configuration blocks stored and echoed under their wire names (presignedUrlConfig, abortConfig, ...)."""


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateJob:
    job_id: str
    spec: dict[str, Any]
    things: list[str]
    """The things named as targets (checked to exist); the target groups' members are streamed to the job."""


@dataclass(frozen=True)
class UpdateJob:
    """UpdateJob: `changes` holds JobSpec fields and their new values."""

    job_id: str
    changes: dict[str, Any]


@dataclass(frozen=True)
class CancelJob:
    job_id: str
    force: bool = False
    reason_code: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class DeleteJob:
    job_id: str
    force: bool = False


@dataclass(frozen=True)
class AssociateTargets:
    """AssociateTargetsWithJob, its targets checked to exist; `things` are those named as targets."""

    job_id: str
    targets: list[str]
    things: list[str]
    comment: str | None = None


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCreated:
    job_id: str
    spec: dict[str, Any]
    things: list[str]
    created_at: float
    release: str | None = None
    """What the target groups' streams of things carry, to tell this job from an earlier one of its id."""


@dataclass(frozen=True)
class JobTargetsReleased:
    """A chunk of a target group's things, each given a QUEUED execution. `last` ends the stream `path`,
    and `streams` are the streams of the group's children, which the job waits for as well."""

    job_id: str
    things: list[str]
    last: bool
    at: float
    path: str = ""
    streams: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobExecutionRecorded:
    job_id: str
    thing_name: str
    execution_number: int
    status: str
    at: float


@dataclass(frozen=True)
class JobUpdated:
    job_id: str
    changes: dict[str, Any]
    at: float


@dataclass(frozen=True)
class JobCanceled:
    job_id: str
    force: bool
    reason_code: str | None
    comment: str | None
    at: float


@dataclass(frozen=True)
class JobDeletionStarted:
    job_id: str
    at: float


@dataclass(frozen=True)
class JobExecutionForgotten:
    job_id: str
    thing_name: str
    at: float


@dataclass(frozen=True)
class JobTargetsAssociated:
    job_id: str
    targets: list[str]
    comment: str | None
    at: float


@dataclass(frozen=True)
class JobExecutionAdded:
    """A CONTINUOUS job released an execution to a thing that joined its targets."""

    job_id: str
    thing_name: str
    at: float


@dataclass(frozen=True)
class JobDeleted:
    job_id: str
    at: float


@dataclass(frozen=True)
class JobCompleted:
    job_id: str
    completed_at: float


# --- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCreatedReply:
    job_id: str
    description: str | None


COMMANDS = (
    CreateJob,
    RecordExecutionStatus,
    UpdateJob,
    CancelJob,
    DeleteJob,
    ForgetExecution,
    AssociateTargets,
    targets.AddThingsToJob,
    targets.ReleaseTargets,
    targets.CheckReach,
)
EVENTS = (
    JobCreated,
    JobExecutionRecorded,
    JobCompleted,
    JobUpdated,
    JobCanceled,
    JobDeletionStarted,
    JobExecutionForgotten,
    JobDeleted,
    JobTargetsAssociated,
    JobExecutionAdded,
    JobTargetsReleased,
)
REPLIES = (JobCreatedReply,)

# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobState:
    job_id: str
    status: str | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    created_at: float | None = None
    last_updated_at: float | None = None
    completed_at: float | None = None
    executions: Map[str, str] = field(default_factory=Map)
    """Status of the latest execution on each thing the job released to. A persistent map: a report
    changes one entry of 100,000 without copying the rest. Its order follows string hashes, which differ
    between processes: whatever is sent to the things goes in name order."""
    pending: int = 0
    """How many of `executions` are not terminal: completion is a count, not a scan."""
    force_canceled: bool = False
    reason_code: str | None = None
    comment: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    release: str | None = None
    """What the streams of things from its target groups must carry (see JobCreated)."""
    streams: dict[str, bool] = field(default_factory=dict)
    """Each stream of things from a target group (or a descendant) the job knows of, and whether it ended:
    a SNAPSHOT job completes only once every one has."""

    def _with_statuses(self, statuses: dict[str, str]) -> JobState:
        pending = self.pending
        executions = self.executions.mutate()
        for thing, status in statuses.items():
            before = executions.get(thing)
            pending += (status not in TERMINAL) - (before is not None and before not in TERMINAL)
            executions[thing] = status
        return replace(self, executions=executions.finish(), pending=pending)

    @property
    def exists(self) -> bool:
        return self.status is not None

    def all_terminal(self) -> bool:
        return self.pending == 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "spec": self.spec,
            "created_at": self.created_at,
            "last_updated_at": self.last_updated_at,
            "completed_at": self.completed_at,
            "executions": dict(self.executions),
            "force_canceled": self.force_canceled,
            "reason_code": self.reason_code,
            "comment": self.comment,
            "tags": self.tags,
            "release": self.release,
            "streams": self.streams,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> JobState:
        executions = Map(data["executions"])
        return JobState(**{**data, "executions": executions, "pending": _count_pending(executions)})


def _count_pending(executions: Map[str, str]) -> int:
    return sum(status not in TERMINAL for status in executions.values())


def initial(key: str) -> JobState:
    return JobState(job_id=key.removeprefix("job/"))


def key_for(job_id: str) -> str:
    return f"job/{job_id}"


def evolve(state: JobState, event: Any) -> JobState:
    match event:
        case JobCreated():
            return replace(
                state,
                status=IN_PROGRESS,
                spec=dict(event.spec),
                created_at=event.created_at,
                last_updated_at=event.created_at,
                executions=Map(),
                pending=0,
                release=event.release,
                streams=dict.fromkeys(targets.target_names(event.spec.get("targets", []))[1], False),
            )._with_statuses(dict.fromkeys(event.things, QUEUED))
        case JobTargetsReleased():
            streams = {**state.streams, **{path: state.streams.get(path, False) for path in event.streams}}
            if event.last:
                streams[event.path] = True  # a child's stream may end before its parent's names it
            return replace(state, streams=streams)._with_statuses(dict.fromkeys(event.things, QUEUED))
        case JobExecutionRecorded():
            return replace(state, last_updated_at=event.at)._with_statuses({event.thing_name: event.status})
        case JobCompleted():
            return replace(state, status=COMPLETED, completed_at=event.completed_at, last_updated_at=event.completed_at)
        case tagging.TagsChanged():
            return replace(state, tags=dict(event.tags))
        case JobUpdated():
            return replace(state, spec=_updated_spec(state.spec, event.changes), last_updated_at=event.at)
        case JobCanceled():
            return replace(
                state,
                status=CANCELED,
                force_canceled=event.force,
                reason_code=event.reason_code,
                comment=event.comment,
                last_updated_at=event.at,
                completed_at=state.completed_at or event.at,
            )
        case JobDeletionStarted():
            return replace(state, status=DELETION_IN_PROGRESS, last_updated_at=event.at)
        case JobExecutionForgotten():
            status = state.executions.get(event.thing_name)
            if status is None:
                return replace(state, last_updated_at=event.at)
            pending = state.pending - (status not in TERMINAL)
            executions = state.executions.delete(event.thing_name)
            return replace(state, executions=executions, pending=pending, last_updated_at=event.at)
        case JobDeleted():
            return initial(key_for(state.job_id))  # the id may be used again
        case JobTargetsAssociated():
            spec = {**state.spec, "targets": [*state.spec.get("targets", []), *event.targets]}
            return replace(state, spec=spec, last_updated_at=event.at)
        case JobExecutionAdded():
            return replace(state, last_updated_at=event.at)._with_statuses({event.thing_name: QUEUED})
    raise TypeError(f"job aggregate cannot apply {type(event).__name__}")


def decide(state: JobState, command: Any, ctx: Context) -> Decision:
    match command:
        case CreateJob():
            return _create(state, command, ctx)
        case RecordExecutionStatus():
            return _record(state, command, ctx)
        case UpdateJob():
            return _update(state, command, ctx)
        case CancelJob():
            return _cancel(state, command, ctx)
        case DeleteJob():
            return _delete(state, command, ctx)
        case ForgetExecution():
            return _forget(state, command, ctx)
        case AssociateTargets():
            return _associate(state, command, ctx)
        case targets.AddThingsToJob():
            return _add_things(state, command, ctx)
        case targets.ReleaseTargets():
            return _release_targets(state, command, ctx)
        case targets.CheckReach():
            return _check_reach(state, command)
        case tagging.TagResource() | tagging.UntagResource():
            return tagging.decide(state.exists, state.tags, command, f"Job {state.job_id}")
    raise TypeError(f"job aggregate cannot handle {type(command).__name__}")


def _create(state: JobState, command: CreateJob, ctx: Context) -> Decision:
    if state.exists:
        return Decision(
            reply=DomainError(
                ErrorKind.RESOURCE_ALREADY_EXISTS,
                f"Job {command.job_id} already exists",
                {"resourceId": command.job_id},
            ).rejection()
        )
    spec = JobSpec(**command.spec)
    release = f"{command.job_id}@{ctx.now!r}"
    created = JobCreated(command.job_id, command.spec, list(dict.fromkeys(command.things)), ctx.now, release)
    events: list[Any] = [created]
    events.extend(tagging.initial_tags(tagging.JOB, command.job_id, spec.tags))
    first = evolve(state, created)
    if _completes(first, first):
        events.append(JobCompleted(command.job_id, ctx.now))  # a SNAPSHOT job that reaches no thing at all
    # Each target group streams its members, and its descendants', to the job (targets.TargetGroup).
    continuous = spec.target_selection == CONTINUOUS
    groups = targets.target_names(spec.targets)[1]
    reach = [Send(group_key(g), targets.TargetGroup(g, command.job_id, release, continuous, g)) for g in groups]
    return Decision(
        reply=JobCreatedReply(command.job_id, spec.description),
        events=tuple(events),
        sends=(*_queue(command.job_id, command.spec, created.things), *reach),
    )


def _queue(job_id: str, spec: dict[str, Any], things: list[str], via: str | None = None) -> list[Send]:
    release = QueueExecution(
        job_id=job_id,
        document=spec["document"],
        in_progress_timeout_minutes=spec.get("in_progress_timeout_minutes"),
        namespace_id=spec.get("namespace_id"),
        via=via,
    )
    return [Send(thing_key(thing), release) for thing in things]


def _release_targets(state: JobState, command: targets.ReleaseTargets, ctx: Context) -> Decision:
    """The next chunk of a target group's things: each not yet released to gets a QUEUED execution (a
    stream for an earlier job of the same id does not match the job's release and changes nothing)."""
    if command.release != state.release or state.status != IN_PROGRESS:
        return Decision()  # canceled or being deleted meanwhile: the rest of its things are not queued
    things = [name for name in dict.fromkeys(command.thing_names) if name not in state.executions]
    released = JobTargetsReleased(command.job_id, things, command.last, ctx.now, command.path, list(command.streams))
    events: list[Any] = [released]
    if _completes(state, evolve(state, released)):
        events.append(JobCompleted(command.job_id, ctx.now))
    via = command.path.rsplit("/", 1)[-1]
    return Decision(events=tuple(events), sends=tuple(_queue(command.job_id, state.spec, things, via)))


def _check_reach(state: JobState, command: targets.CheckReach) -> Decision:
    """A thing left a group: if none of the job's targets reaches it any more, its execution is REMOVED."""
    if not state.exists or command.thing_name not in state.executions:
        return Decision()
    thing_targets, group_targets = targets.target_names(state.spec.get("targets", []))
    if command.thing_name in thing_targets or set(group_targets).intersection(command.groups):
        return Decision()
    remove = RemoveExecutions([command.job_id], group_targets)
    return Decision(sends=(Send(thing_key(command.thing_name), remove),))


def _record(state: JobState, command: RecordExecutionStatus, ctx: Context) -> Decision:
    if not state.exists or command.thing_name not in state.executions:
        return Decision()  # the job was deleted meanwhile; nothing left to count
    if state.executions[command.thing_name] == command.status:
        return Decision()
    events: list[Any] = [
        JobExecutionRecorded(command.job_id, command.thing_name, command.execution_number, command.status, ctx.now)
    ]
    after = evolve(state, events[0])
    if _completes(state, after):
        events.append(JobCompleted(command.job_id, ctx.now))
    return Decision(events=tuple(events))


def _missing(job_id: str) -> Decision:
    return Decision(reply=DomainError(ErrorKind.RESOURCE_NOT_FOUND, f"Job {job_id} does not exist").rejection())


def _refused(kind: ErrorKind, message: str) -> Decision:
    return Decision(reply=DomainError(kind, message).rejection())


def _update(state: JobState, command: UpdateJob, ctx: Context) -> Decision:
    if not state.exists:
        return _missing(command.job_id)
    if state.status == DELETION_IN_PROGRESS:
        return _refused(ErrorKind.INVALID_REQUEST, f"Job {command.job_id} is being deleted and cannot be updated")
    unknown = set(command.changes) - set(JobSpec.__dataclass_fields__)
    if unknown:
        raise TypeError(f"UpdateJob cannot change {sorted(unknown)}")
    if not command.changes:
        return Decision(reply=Done())
    retry = (command.changes.get("config") or {}).get(RETRY_CONFIG)
    if retry is not None:
        problem = _retry_change_problem((state.spec.get("config") or {}).get(RETRY_CONFIG), retry)
        if problem:
            return _refused(ErrorKind.INVALID_REQUEST, f"{RETRY_CONFIG}: {problem}")
    return Decision(reply=Done(), events=(JobUpdated(command.job_id, dict(command.changes), ctx.now),))


def _updated_spec(spec: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """Changed fields replace the old; changed configuration blocks replace theirs, the others stay."""
    updated = {**spec, **changes}
    if "config" in changes:
        updated["config"] = {**(spec.get("config") or {}), **changes["config"]}
    return updated


def _retry_change_problem(current: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """After creation a retry count may only be lowered to 0 (aws-iot-jobs.md §6.5); unchanged is fine."""
    before = {c["failureType"]: c["numberOfRetries"] for c in (current or {}).get("criteriaList", [])}
    after = {c["failureType"]: c["numberOfRetries"] for c in wanted.get("criteriaList", [])}
    if set(after) != set(before):
        return "the failure types of the retry criteria cannot change after the job is created"
    changed = [kind for kind, count in after.items() if count not in (before[kind], 0)]
    if changed:
        return f"numberOfRetries of {', '.join(sorted(changed))} can only be lowered to 0 after the job is created"
    return None


def _pending_things(state: JobState) -> list[str]:
    return sorted(thing for thing, status in state.executions.items() if status not in TERMINAL)


def _cancel(state: JobState, command: CancelJob, ctx: Context) -> Decision:
    if not state.exists:
        return _missing(command.job_id)
    reply = JobCreatedReply(command.job_id, state.spec.get("description"))
    if state.status == DELETION_IN_PROGRESS:
        return _refused(ErrorKind.INVALID_REQUEST, f"Job {command.job_id} is being deleted and cannot be canceled")
    if state.status == COMPLETED:
        return _refused(ErrorKind.INVALID_REQUEST, f"Job {command.job_id} is already COMPLETED")
    if state.status == CANCELED and (state.force_canceled or not command.force):
        return Decision(reply=reply)  # nothing more to cancel
    fan_out = CancelExecution(command.job_id, force=command.force, from_job=True)
    canceled = JobCanceled(
        command.job_id,
        command.force,
        command.reason_code if state.status != CANCELED else state.reason_code,
        command.comment if state.status != CANCELED else state.comment,
        ctx.now,
    )
    return Decision(
        reply=reply,
        events=(canceled,),
        sends=tuple(Send(thing_key(thing), fan_out) for thing in _pending_things(state)),
    )


def _delete(state: JobState, command: DeleteJob, ctx: Context) -> Decision:
    if not state.exists:
        return _missing(command.job_id)
    if state.status == DELETION_IN_PROGRESS:
        return _refused(ErrorKind.INVALID_STATE_TRANSITION, f"Job {command.job_id} is already being deleted")
    if not command.force and state.status not in (COMPLETED, CANCELED):
        return _refused(
            ErrorKind.INVALID_STATE_TRANSITION,
            f"Job {command.job_id} is {state.status}; "
            "only COMPLETED or CANCELED jobs can be deleted without force=true",
        )
    events: list[Any] = [JobDeletionStarted(command.job_id, ctx.now)]
    sends = [
        Send(thing_key(thing), DeleteExecution(command.job_id, force=True, from_job=True))
        for thing in sorted(state.executions)
    ]
    if not state.executions:
        events.append(JobDeleted(command.job_id, ctx.now))
        sends.extend(_forget_groups(state))
    return Decision(reply=Done(), events=tuple(events), sends=tuple(sends))


def _forget_groups(state: JobState) -> list[Send]:
    """A deleted job must not follow its id into a new job: the groups it targeted stop following it."""
    groups = targets.target_names(state.spec.get("targets", []))[1]
    return [Send(group_key(g), targets.ForgetJob(g, state.job_id)) for g in groups]


def _forget(state: JobState, command: ForgetExecution, ctx: Context) -> Decision:
    if not state.exists or command.thing_name not in state.executions:
        return Decision()
    events: list[Any] = [JobExecutionForgotten(command.job_id, command.thing_name, ctx.now)]
    after = evolve(state, events[0])
    if state.status == DELETION_IN_PROGRESS and not after.executions:
        events.append(JobDeleted(command.job_id, ctx.now))
        return Decision(events=tuple(events), sends=tuple(_forget_groups(state)))
    if _completes(state, after):
        events.append(JobCompleted(command.job_id, ctx.now))
    return Decision(events=tuple(events))


def _completes(before: JobState, after: JobState) -> bool:
    """A SNAPSHOT job completes when every execution it still tracks is terminal."""
    snapshot = after.spec.get("target_selection", SNAPSHOT) == SNAPSHOT
    streamed = all(after.streams.values())
    return before.status == IN_PROGRESS and snapshot and streamed and after.all_terminal()


def _release(
    state: JobState, thing_names: list[str], ctx: Context, via: str | None = None
) -> tuple[list[Any], list[Send]]:
    """Queue an execution on each thing that has none pending for this job."""
    things = [
        thing
        for thing in dict.fromkeys(thing_names)
        if (status := state.executions.get(thing)) is None or status in TERMINAL
    ]
    events: list[Any] = [JobExecutionAdded(state.job_id, thing, ctx.now) for thing in things]
    return events, _queue(state.job_id, state.spec, things, via)


def _add_things(state: JobState, command: targets.AddThingsToJob, ctx: Context) -> Decision:
    if state.status != IN_PROGRESS or state.spec.get("target_selection") != CONTINUOUS:
        return Decision()  # only a running CONTINUOUS job follows its groups
    events, sends = _release(state, command.thing_names, ctx, command.via)
    return Decision(events=tuple(events), sends=tuple(sends))


def _associate(state: JobState, command: AssociateTargets, ctx: Context) -> Decision:
    if not state.exists:
        return _missing(command.job_id)
    if state.spec.get("target_selection") != CONTINUOUS or state.status != IN_PROGRESS:
        return _refused(
            ErrorKind.INVALID_REQUEST,
            f"Job {command.job_id} is {state.spec.get('target_selection')} and {state.status}; targets can be "
            "associated only with a CONTINUOUS job that is IN_PROGRESS",
        )
    current = list(state.spec.get("targets", []))
    new = [arn for arn in dict.fromkeys(command.targets) if arn not in current]
    if len(current) + len(new) > MAX_TARGETS:
        return _refused(
            ErrorKind.INVALID_REQUEST,
            f"Job {command.job_id} would have {len(current) + len(new)} targets; at most {MAX_TARGETS} are allowed",
        )
    reply = JobCreatedReply(command.job_id, state.spec.get("description"))
    if not new:
        return Decision(reply=reply)
    events: list[Any] = [JobTargetsAssociated(command.job_id, new, command.comment, ctx.now)]
    released, sends = _release(state, command.things, ctx)
    known = set(targets.target_names(current)[1])
    release = state.release or ""
    reach = [
        Send(group_key(g), targets.TargetGroup(g, command.job_id, release, True, g))
        for g in targets.target_names(new)[1]
        if g not in known
    ]
    return Decision(reply=reply, events=(*events, *released), sends=(*sends, *reach))
