"""The job aggregate (key `job/{id}`): configuration, status lifecycle, targets and completion."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from itertools import groupby
from operator import itemgetter
from typing import Any

from immutables import Map

from iotjobs.domain import config_blocks, quota, rollout, schedule, tagging, targets
from iotjobs.domain.decision import Context, Decision, Done, Send, Timer
from iotjobs.domain.errors import DomainError, ErrorKind
from iotjobs.domain.execution import (
    FAILED,
    QUEUED,
    REJECTED,
    SUCCEEDED,
    TERMINAL,
    TIMED_OUT,
    ForgetExecution,
    RecordExecutionStatus,
)
from iotjobs.domain.targets import group_key
from iotjobs.domain.thing import (
    CancelExecution,
    DeleteExecution,
    QueueExecution,
    RemoveExecutions,
    SetExecutionTimeout,
)
from iotjobs.domain.thing import key_for as thing_key

IN_PROGRESS = "IN_PROGRESS"
SCHEDULED = "SCHEDULED"
RUNNING = (IN_PROGRESS, SCHEDULED)
"""Statuses of a job that has not ended: SCHEDULED before its start time and outside maintenance windows."""
COMPLETED = "COMPLETED"
CANCELED = "CANCELED"
DELETION_IN_PROGRESS = "DELETION_IN_PROGRESS"
RETRY_CONFIG = "jobExecutionsRetryConfig"
ABORT_CONFIG = "abortConfig"
ABORTED = "ABORTED_BY_CRITERIA"
"""reasonCode of a job an abort criterion canceled (aws-iot-jobs.md §6.6: AWS's own string is undocumented)."""
COMPLETED_STATUSES = (SUCCEEDED, FAILED, REJECTED, TIMED_OUT)
"""What an abort criterion counts as executed (§6.6)."""
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


@dataclass(frozen=True)
class RolloutTick:
    """A job's rollout timer: the rolling minute has room again for things still waiting."""

    job_id: str


@dataclass(frozen=True)
class ScheduleTick:
    """A job's schedule timer: its start time, a maintenance window's edge or its end time has come."""

    job_id: str


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
    """A chunk of a target group's things, which join the job's rollout (JobRolledOut queues them). `last`
    ends the stream `path`, and `streams` are the streams of the group's children, which the job waits for
    as well."""

    job_id: str
    things: list[str]
    last: bool
    at: float
    path: str = ""
    streams: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class JobRolledOut:
    """The first `count` things waiting in the rollout were released at `at`, each given a QUEUED execution
    unless it already had one (a CONTINUOUS joiner); the rolling minute counts them until `until`."""

    job_id: str
    count: int
    at: float
    until: float
    next_at: float | None = None
    """The earliest time of the next slice of the rate (rollout.SLICES); None: no rate."""


@dataclass(frozen=True)
class JobRolloutProgressed:
    """The targets still being rolled out changed (jobProcessDetails.processingTargets; none: finished)."""

    job_id: str
    processing: list[str]
    at: float


@dataclass(frozen=True)
class JobScheduleChanged:
    """The schedule moved the job to `status` (SCHEDULED before its start time or outside its maintenance
    windows, IN_PROGRESS inside); `flip_at` is the next window edge, `started` whether the start time passed."""

    job_id: str
    status: str
    at: float
    flip_at: float | None
    started: bool


@dataclass(frozen=True)
class JobRolloutEnded:
    """The end time came with endBehavior STOP_ROLLOUT: nothing more rolls out; executions run on."""

    job_id: str
    at: float


@dataclass(frozen=True)
class JobThingsJoined:
    """Things that joined a target group of a CONTINUOUS job that has yet to start: they wait for it."""

    job_id: str
    things: list[str]
    via: str | None
    at: float


@dataclass(frozen=True)
class JobSlotChanged:
    """The job's place in the job-concurrency quota: `waiting` for an answer, `held`, or `released`."""

    job_id: str
    slot: str
    at: float


@dataclass(frozen=True)
class JobExecutionRetried:
    """A FAILED or TIMED_OUT execution is retried (aws-iot-jobs.md §6.5): a new QUEUED execution on the thing,
    paid for by the retry criterion `criterion`."""

    job_id: str
    thing_name: str
    criterion: str
    attempt: int
    at: float


@dataclass(frozen=True)
class JobExecutionRecorded:
    job_id: str
    thing_name: str
    execution_number: int
    status: str
    at: float
    new: bool = False
    """A new execution of the thing's (RecordExecutionStatus.new), counted beside its earlier one."""


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
    past_status: str | None = None
    """An earlier execution than the thing's latest was deleted: only the counts change."""


@dataclass(frozen=True)
class JobTargetsAssociated:
    """AssociateTargetsWithJob: `things` named as targets join the rollout, the groups stream theirs."""

    job_id: str
    targets: list[str]
    comment: str | None
    at: float
    things: list[str] = field(default_factory=list)


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
    RolloutTick,
    ScheduleTick,
    quota.SlotAnswer,
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
    JobRolledOut,
    JobRolloutProgressed,
    JobExecutionRetried,
    JobScheduleChanged,
    JobRolloutEnded,
    JobThingsJoined,
    JobSlotChanged,
)
REPLIES = (JobCreatedReply,)

# --- state ------------------------------------------------------------------------------------

Waiting = tuple[str, str | None, int]
"""A thing the job reaches but has not rolled out to yet: its name, the group it came through (None: named
as a target) and the index of the job target that reaches it."""


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
    backlog: tuple[Waiting, ...] = ()
    """Things waiting to be rolled out, in rollout order: named things as given, then group members by name
    as their groups stream them (aws-iot-jobs.md §6.7). Empty unless a rollout rate holds them back."""
    waiting: Map[str, int] = field(default_factory=Map)
    """The names in `backlog` (to the index of their target), so a thing reached twice waits once."""
    waiting_by_target: dict[int, int] = field(default_factory=dict)
    """How many things wait per target index: processingTargets without scanning the backlog."""
    recent: tuple[rollout.Released, ...] = ()
    """Releases that may still be in the rolling minute (rollout.Released)."""
    next_slice_at: float | None = None
    """When the next slice of the rate may go (a tenth of a minute after the last)."""
    releases: int = 0
    """Releases so far: the position of the next in the rate's slices (rollout.slice_size)."""
    notified: int = 0
    """Things rolled out so far: what an exponential rate with numberOfNotifiedThings steps on."""
    counts: dict[str, int] = field(default_factory=dict)
    """Executions by status, every execution counted (retries too), as AWS's jobProcessDetails counts:
    what abort criteria and numberOfSucceededThings steps read."""
    retried: Map[str, dict[str, int]] = field(default_factory=Map)
    """Per thing, the retries each retry criterion (failureType) has paid for."""
    processing: tuple[str, ...] = ()
    """The targets still being rolled out, as last announced (JobRolloutProgressed)."""
    started: bool = True
    """Its start time has passed (or it has none)."""
    flip_at: float | None = None
    """The next maintenance-window edge, where the schedule moves it between SCHEDULED and IN_PROGRESS."""
    ended: bool = False
    """Its end time passed with STOP_ROLLOUT: it rolls out nothing more and completes when its executions do."""
    slot: str = ""
    """Its place in the job-concurrency quota (quota.py): "" never asked, `waiting`, `held`, `released`."""

    def _with_statuses(self, statuses: dict[str, str], new: bool = False) -> JobState:
        """`statuses` for the things' current executions, or (`new`) for new executions that follow theirs:
        a new one is counted beside the one before it, which keeps its status in `counts`."""
        pending = self.pending
        counts = dict(self.counts)
        executions = self.executions.mutate()
        for thing, status in statuses.items():
            before = executions.get(thing)
            pending += (status not in TERMINAL) - (before is not None and before not in TERMINAL)
            if before is not None and not new:
                counts[before] -= 1
            counts[status] = counts.get(status, 0) + 1
            executions[thing] = status
        counts = {status: n for status, n in counts.items() if n}
        return replace(self, executions=executions.finish(), pending=pending, counts=counts)

    def _waiting_for(self, entries: list[Waiting]) -> JobState:
        waiting = self.waiting.mutate()
        by_target = dict(self.waiting_by_target)
        for name, _via, index in entries:
            waiting[name] = index
            by_target[index] = by_target.get(index, 0) + 1
        return replace(self, backlog=(*self.backlog, *entries), waiting=waiting.finish(), waiting_by_target=by_target)

    def _rolled_out(self, event: JobRolledOut) -> JobState:
        taken, rest = self.backlog[: event.count], self.backlog[event.count :]
        waiting = self.waiting.mutate()
        by_target = dict(self.waiting_by_target)
        for name, _via, index in taken:
            del waiting[name]
            by_target[index] -= 1
        released = [name for name, _via, _index in taken if name not in self.executions]
        state = replace(
            self,
            backlog=rest,
            waiting=waiting.finish(),
            waiting_by_target={index: n for index, n in by_target.items() if n},
            recent=rollout.recorded(self.recent, event.at, event.until, len(released)),
            notified=self.notified + len(released),
        )
        return state._with_statuses(dict.fromkeys(released, QUEUED), new=True)

    def _stopped(self) -> JobState:
        """Canceled or being deleted: nothing more rolls out."""
        return replace(self, backlog=(), waiting=Map(), waiting_by_target={})

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
            "backlog": [list(entry) for entry in self.backlog],
            "recent": [list(item) for item in self.recent],
            "next_slice_at": self.next_slice_at,
            "releases": self.releases,
            "notified": self.notified,
            "counts": self.counts,
            "retried": dict(self.retried),
            "processing": list(self.processing),
            "started": self.started,
            "flip_at": self.flip_at,
            "ended": self.ended,
            "slot": self.slot,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> JobState:
        executions = Map(data["executions"])
        backlog = tuple((name, via, index) for name, via, index in data.get("backlog", []))
        by_target: dict[int, int] = {}
        for _name, _via, index in backlog:
            by_target[index] = by_target.get(index, 0) + 1
        return JobState(
            **{
                **{k: v for k, v in data.items() if k not in ("backlog", "recent", "retried", "processing")},
                "executions": executions,
                "pending": _count_pending(executions),
                "backlog": backlog,
                "waiting": Map({name: index for name, _via, index in backlog}),
                "waiting_by_target": by_target,
                "recent": tuple((until, count) for until, count in data.get("recent", [])),
                "retried": Map(data.get("retried", {})),
                "processing": tuple(data.get("processing", [])),
            }
        )


def _count_pending(executions: Map[str, str]) -> int:
    return sum(status not in TERMINAL for status in executions.values())


def initial(key: str) -> JobState:
    return JobState(job_id=key.removeprefix("job/"))


def key_for(job_id: str) -> str:
    return f"job/{job_id}"


def _target_indexes(arns: list[str]) -> dict[str, int]:
    """Each target's resource part ("thing/name", "thinggroup/name") to its index among the job's targets."""
    indexes: dict[str, int] = {}
    for i, arn in enumerate(arns):
        indexes.setdefault(arn.split(":", 5)[-1], i)
    return indexes


def _named(arns: list[str], things: list[str]) -> list[Waiting]:
    indexes = _target_indexes(arns)
    return [(name, None, indexes.get(f"thing/{name}", 0)) for name in things]


def evolve(state: JobState, event: Any) -> JobState:
    match event:
        case JobCreated():
            arns = event.spec.get("targets", [])
            return replace(
                initial(key_for(state.job_id)),
                status=IN_PROGRESS,
                spec=dict(event.spec),
                created_at=event.created_at,
                last_updated_at=event.created_at,
                tags=state.tags,
                release=event.release,
                streams=dict.fromkeys(targets.target_names(arns)[1], False),
                started=schedule.bounds(event.spec.get("config"))[0] is None,
            )._waiting_for(_named(arns, event.things))
        case JobTargetsReleased():
            streams = {**state.streams, **{path: state.streams.get(path, False) for path in event.streams}}
            if event.last:
                streams[event.path] = True  # a child's stream may end before its parent's names it
            root, _, _ = event.path.partition("/")
            index = _target_indexes(state.spec.get("targets", [])).get(f"thinggroup/{root}", 0)
            via = event.path.rsplit("/", 1)[-1]
            entries: list[Waiting] = [(name, via, index) for name in event.things]
            return replace(state, streams=streams)._waiting_for(entries)
        case JobRolledOut():
            after = replace(state, last_updated_at=event.at, next_slice_at=event.next_at, releases=state.releases + 1)
            return after._rolled_out(event)
        case JobRolloutProgressed():
            return replace(state, processing=tuple(event.processing))
        case JobScheduleChanged():
            return replace(state, status=event.status, flip_at=event.flip_at, started=event.started)
        case JobRolloutEnded():
            return replace(state, status=IN_PROGRESS, ended=True, flip_at=None, last_updated_at=event.at)._stopped()
        case JobSlotChanged():
            return replace(state, slot=event.slot)
        case JobThingsJoined():
            index = _target_indexes(state.spec.get("targets", [])).get(f"thinggroup/{event.via}", 0)
            joined: list[Waiting] = [(name, event.via, index) for name in event.things]
            return replace(state, last_updated_at=event.at)._waiting_for(joined)
        case JobExecutionRetried():
            used = dict(state.retried.get(event.thing_name, {}))
            used[event.criterion] = used.get(event.criterion, 0) + 1
            retried = state.retried.set(event.thing_name, used)
            after = replace(state, retried=retried, last_updated_at=event.at)
            return after._with_statuses({event.thing_name: QUEUED}, new=True)
        case JobExecutionRecorded():
            after = replace(state, last_updated_at=event.at)
            return after._with_statuses({event.thing_name: event.status}, new=event.new)
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
            )._stopped()
        case JobDeletionStarted():
            return replace(state, status=DELETION_IN_PROGRESS, last_updated_at=event.at)._stopped()
        case JobExecutionForgotten() if event.past_status is not None:
            counts = {**state.counts, event.past_status: state.counts.get(event.past_status, 0) - 1}
            return replace(state, counts={s: n for s, n in counts.items() if n > 0}, last_updated_at=event.at)
        case JobExecutionForgotten():
            status = state.executions.get(event.thing_name)
            if status is None:
                return replace(state, last_updated_at=event.at)
            pending = state.pending - (status not in TERMINAL)
            executions = state.executions.delete(event.thing_name)
            counts = {s: n for s, n in {**state.counts, status: state.counts.get(status, 0) - 1}.items() if n > 0}
            return replace(state, executions=executions, pending=pending, counts=counts, last_updated_at=event.at)
        case JobDeleted():
            return initial(key_for(state.job_id))  # the id may be used again
        case JobTargetsAssociated():
            arns = [*state.spec.get("targets", []), *event.targets]
            spec = {**state.spec, "targets": arns}
            return replace(state, spec=spec, last_updated_at=event.at)._waiting_for(_named(arns, event.things))
        case JobExecutionAdded():
            # A thing that joins a CONTINUOUS job's group starts over: its retry budget too (§6.5).
            retried = state.retried.delete(event.thing_name) if event.thing_name in state.retried else state.retried
            after = replace(state, last_updated_at=event.at, retried=retried)
            return after._with_statuses({event.thing_name: QUEUED}, new=True)
    raise TypeError(f"job aggregate cannot apply {type(event).__name__}")


def fold(state: JobState, events: list[Any] | tuple[Any, ...]) -> JobState:
    for event in events:
        state = evolve(state, event)
    return state


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
        case RolloutTick():
            return _settled(state, ctx, release=True) if state.exists else Decision()
        case ScheduleTick():
            return _on_schedule(state, ctx)
        case quota.SlotAnswer():
            return _on_slot(state, command, ctx)
        case tagging.TagResource() | tagging.UntagResource():
            return tagging.decide(state.exists, state.tags, command, f"Job {state.job_id}")
    raise TypeError(f"job aggregate cannot handle {type(command).__name__}")


def _settled(
    state: JobState,
    ctx: Context,
    events: list[Any] | None = None,
    sends: list[Send] | None = None,
    reply: Any = None,
    release: bool = False,
    deniable: bool = False,
) -> Decision:
    """A decision's `events` followed by what they lead to: if `release` (a rollout tick, or things joining the
    rollout), the things the rollout rate lets go now; the targets still rolling out; completion.

    A rate that changes (UpdateJob, an exponential rate's step) applies from the next tick, as AWS words it:
    the rollout releases at its ticks and when things arrive, not whenever a count moves."""
    events = list(events or [])
    sends = list(sends or [])
    after = fold(state, events)
    concurrency = ctx.max_concurrent_jobs
    if concurrency and after.slot in ("", "released") and after.status == IN_PROGRESS and _rolling(after):
        # It starts rolling out: it takes a slot, or (at a scheduled start) asks for one and waits.
        wait = deniable and after.slot == ""
        claimed = JobSlotChanged(after.job_id, "waiting" if wait else "held", ctx.now)
        events.append(claimed)
        after = evolve(after, claimed)
        sends.append(Send(quota.KEY, quota.ClaimSlot(after.job_id, concurrency, force=not wait)))
    if release and after.status == IN_PROGRESS and after.backlog and after.slot != "waiting":
        limit = rollout.rate(after.spec.get("config"), after.notified, after.counts.get(SUCCEEDED, 0))
        room = rollout.allowance(limit, after.recent, ctx.now)
        if limit is not None and room is not None:
            # A slice at a time, a tenth of a minute apart, and only a whole one: releasing what one expired
            # release freed would split the rate into ever smaller slices.
            early = after.next_slice_at is not None and ctx.now < after.next_slice_at
            room = 0 if early or room < _slice(after, limit) else _slice(after, limit)
        count, released = _take(after, room)
        if count:
            until = ctx.now + ctx.minutes(1) + rollout.DELIVERY_SECONDS
            next_at = None if limit is None else ctx.now + ctx.minutes(1) / rollout.SLICES
            rolled = JobRolledOut(after.job_id, count, ctx.now, until, next_at)
            # One command per group the things came through (a chunk shares one), not one per thing.
            queued = [
                send
                for via, names in groupby(released, key=itemgetter(1))
                for send in _queue(after.job_id, after.spec, [name for name, _via in names], via, ctx.now)
            ]
            sends = [*queued, *sends]
            events.append(rolled)
            after = evolve(after, rolled)
    processing = _processing(after)
    if tuple(processing) != after.processing:
        progressed = JobRolloutProgressed(after.job_id, processing, ctx.now)
        events.append(progressed)
        after = evolve(after, progressed)
    if after.slot == "held" and (after.status not in RUNNING or not _rolling(after)):
        freed = JobSlotChanged(after.job_id, "released", ctx.now)
        events.append(freed)
        after = evolve(after, freed)
        sends.append(Send(quota.KEY, quota.ReleaseSlot(after.job_id)))
    if _completes(state, after):
        events.append(JobCompleted(state.job_id, ctx.now))
    return Decision(reply=reply, events=tuple(events), sends=tuple(sends))


def _slice(state: JobState, limit: int) -> int:
    """What the next release takes: a tenth of the rate, or what is left of the backlog if less."""
    return min(rollout.slice_size(limit, state.releases), len(state.backlog))


def _rolling(state: JobState) -> bool:
    """It has things to roll out, or target groups still to hear from."""
    return not state.ended and (bool(state.backlog) or not all(state.streams.values()))


def _on_slot(state: JobState, answer: quota.SlotAnswer, ctx: Context) -> Decision:
    """The quota's answer to a scheduled start: roll out, or be CANCELED (aws-iot-jobs.md §6.1)."""
    if state.slot != "waiting":
        if answer.granted and state.slot != "held":
            return Decision(sends=(Send(quota.KEY, quota.ReleaseSlot(state.job_id)),))  # no longer wanted
        return Decision()
    if answer.granted:
        return _settled(state, ctx, [JobSlotChanged(state.job_id, "held", ctx.now)], release=True)
    comment = f"The job concurrency limit of {answer.limit} was reached when the job was to start"
    decision = _cancel(state, CancelJob(state.job_id, comment=comment), ctx)
    return replace(decision, events=(JobSlotChanged(state.job_id, "", ctx.now), *decision.events))


def _take(state: JobState, room: int | None) -> tuple[int, list[tuple[str, str | None]]]:
    """How many backlog entries the next release takes, and the things among them that get an execution
    (a CONTINUOUS joiner may have got its own meanwhile): at most `room` of them (None: all)."""
    released: list[tuple[str, str | None]] = []
    count = 0
    for name, via, _index in state.backlog:
        if room is not None and len(released) >= room:
            break
        count += 1
        if name not in state.executions:
            released.append((name, via))
    return count, released


def _processing(state: JobState) -> list[str]:
    """jobProcessDetails.processingTargets: the targets with things still to roll out or still to hear of."""
    if state.status != IN_PROGRESS:
        return []
    open_roots = {path.partition("/")[0] for path, ended in state.streams.items() if not ended}
    processing = []
    for i, arn in enumerate(state.spec.get("targets", [])):
        kind, _, name = arn.split(":", 5)[-1].partition("/")
        if state.waiting_by_target.get(i) or (kind == "thinggroup" and name in open_roots):
            processing.append(arn)
    return processing


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
    # Each target group streams its members, and its descendants', to the job (targets.TargetGroup).
    continuous = spec.target_selection == CONTINUOUS
    groups = targets.target_names(spec.targets)[1]
    reach = [Send(group_key(g), targets.TargetGroup(g, command.job_id, release, continuous, g)) for g in groups]
    events.extend(_schedule_changes(evolve(state, created), ctx))
    reply = JobCreatedReply(command.job_id, spec.description)
    return _settled(state, ctx, events, reach, reply=reply, release=True)


def _queue(
    job_id: str,
    spec: dict[str, Any],
    things: list[str],
    via: str | None = None,
    queued_at: float | None = None,
    retry_attempt: int = 0,
    counted: bool = True,
    joined: bool = False,
) -> list[Send]:
    """One QueueExecution, shared by every thing in `things`."""
    release = QueueExecution(
        job_id=job_id,
        document=spec["document"],
        in_progress_timeout_minutes=spec.get("in_progress_timeout_minutes"),
        namespace_id=spec.get("namespace_id"),
        via=via,
        queued_at=queued_at,
        retry_attempt=retry_attempt,
        scheduled=schedule.is_scheduled(spec.get("config")),
        presigned_url_expires_in_sec=config_blocks.presigned_url_expiry(spec.get("config")),
        counted=counted,
        joined=joined,
    )
    return [Send(thing_key(thing), release) for thing in things]


def _release_targets(state: JobState, command: targets.ReleaseTargets, ctx: Context) -> Decision:
    """The next chunk of a target group's things joins the rollout (a stream for an earlier job of the same
    id does not match the job's release and changes nothing)."""
    if command.release != state.release or state.status not in RUNNING or state.ended:
        return Decision()  # ended, canceled or being deleted meanwhile: the rest of its things are not queued
    things = _newcomers(state, command.thing_names)
    released = JobTargetsReleased(command.job_id, things, command.last, ctx.now, command.path, list(command.streams))
    return _settled(state, ctx, [released], release=True)


def _newcomers(state: JobState, names: list[str]) -> list[str]:
    """The things among `names` the job has neither released to nor holds in its rollout, each once."""
    return [name for name in dict.fromkeys(names) if name not in state.executions and name not in state.waiting]


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
    if not state.exists or (command.thing_name not in state.executions and not command.new):
        return Decision()  # the job was deleted meanwhile; nothing left to count
    if not command.new and state.executions[command.thing_name] == command.status:
        return Decision()
    recorded = JobExecutionRecorded(
        command.job_id, command.thing_name, command.execution_number, command.status, ctx.now, command.new
    )
    events: list[Any] = [recorded]
    sends: list[Send] = []
    after = evolve(state, recorded)
    if after.status in RUNNING and command.status in COMPLETED_STATUSES:
        aborted = _abort(after, ctx)
        if aborted is not None:
            canceled, cancels = aborted
            events.append(canceled)
            sends.extend(cancels)
        elif command.status in (FAILED, TIMED_OUT):
            events_, sends_ = _retry(after, command, ctx)
            events.extend(events_)
            sends.extend(sends_)
    return _settled(state, ctx, events, sends)


def _abort(state: JobState, ctx: Context) -> tuple[JobCanceled, list[Send]] | None:
    """The first abort criterion that holds (aws-iot-jobs.md §6.6), as the cancellation it causes: the job is
    CANCELED and its QUEUED executions with it; IN_PROGRESS ones run on."""
    criteria = ((state.spec.get("config") or {}).get(ABORT_CONFIG) or {}).get("criteriaList", [])
    executed = sum(state.counts.get(status, 0) for status in COMPLETED_STATUSES)
    for criterion in criteria:
        if executed < int(criterion["minNumberOfExecutedThings"]):
            continue
        kind = criterion["failureType"]
        kinds = (FAILED, REJECTED, TIMED_OUT) if kind == "ALL" else (kind,)
        failed = sum(state.counts.get(status, 0) for status in kinds)
        threshold = float(criterion["thresholdPercentage"])
        if failed * 100 >= threshold * executed:
            comment = (
                f"Aborted by abortConfig: {failed} of {executed} executed things were {kind} "
                f"({failed * 100 / executed:.2f}%), at or above the threshold of {threshold:g}%"
            )
            canceled = JobCanceled(state.job_id, False, ABORTED, comment, ctx.now)
            cancel = CancelExecution(state.job_id, force=False, from_job=True, aborted=True)
            return canceled, [Send(thing_key(thing), cancel) for thing in _pending_things(state)]
    return None


def _retry(state: JobState, command: RecordExecutionStatus, ctx: Context) -> tuple[list[Any], list[Send]]:
    """A FAILED or TIMED_OUT execution with retry budget left is followed by a new QUEUED one at once; the
    criterion of its own failure type pays first, then ALL (aws-iot-jobs.md §6.5)."""
    criteria = ((state.spec.get("config") or {}).get(RETRY_CONFIG) or {}).get("criteriaList", [])
    budget = {c["failureType"]: int(c["numberOfRetries"]) for c in criteria}
    used = state.retried.get(command.thing_name, {})
    for criterion in (command.status, "ALL"):
        if used.get(criterion, 0) < budget.get(criterion, 0):
            attempt = sum(used.values()) + 1
            retried = JobExecutionRetried(command.job_id, command.thing_name, criterion, attempt, ctx.now)
            sends = _queue(command.job_id, state.spec, [command.thing_name], queued_at=ctx.now, retry_attempt=attempt)
            return [retried], sends
    return [], []


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
    sends: list[Send] = []
    if "in_progress_timeout_minutes" in command.changes:
        # Executions not started yet start with the new timeout (aws-iot-jobs.md §6.4, §10 #13).
        minutes = command.changes["in_progress_timeout_minutes"]
        queued = sorted(thing for thing, status in state.executions.items() if status == QUEUED)
        sends = [Send(thing_key(thing), SetExecutionTimeout(command.job_id, minutes)) for thing in queued]
    return _settled(state, ctx, [JobUpdated(command.job_id, dict(command.changes), ctx.now)], sends, reply=Done())


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
    sends = [Send(thing_key(thing), fan_out) for thing in _pending_things(state)]
    return _settled(state, ctx, [canceled], sends, reply=reply)


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
    if command.past and command.status is not None and state.exists:
        return Decision(events=(JobExecutionForgotten(command.job_id, command.thing_name, ctx.now, command.status),))
    if not state.exists or command.thing_name not in state.executions:
        return Decision()
    events: list[Any] = [JobExecutionForgotten(command.job_id, command.thing_name, ctx.now)]
    after = evolve(state, events[0])
    if state.status == DELETION_IN_PROGRESS and not after.executions:
        events.append(JobDeleted(command.job_id, ctx.now))
        return Decision(events=tuple(events), sends=tuple(_forget_groups(state)))
    return _settled(state, ctx, events)


def _completes(before: JobState, after: JobState) -> bool:
    """A SNAPSHOT job completes when it has rolled out to everything it reaches and every execution it
    still tracks is terminal; a job whose end time stopped its rollout (CONTINUOUS too) once the executions
    it made are."""
    snapshot = after.spec.get("target_selection", SNAPSHOT) == SNAPSHOT
    streamed = (all(after.streams.values()) and not after.backlog) or after.ended
    running = before.status in (None, *RUNNING) and after.status in RUNNING  # None: created just now
    return running and after.started and (snapshot or after.ended) and streamed and after.all_terminal()


# --- schedule ---------------------------------------------------------------------------------


def _on_schedule(state: JobState, ctx: Context) -> Decision:
    """The start time, a window edge or the end time: the job's status follows its schedule, and what it
    may roll out now goes."""
    if state.status not in RUNNING or state.ended:
        return Decision()
    the_plan = schedule.plan(state.spec.get("config"), ctx.seconds_per_minute)
    if the_plan.end_at is not None and ctx.now >= the_plan.end_at:
        if the_plan.end_behavior == schedule.STOP_ROLLOUT:
            return _settled(state, ctx, [JobRolloutEnded(state.job_id, ctx.now)])
        force = the_plan.end_behavior == schedule.FORCE_CANCEL
        return _cancel(state, CancelJob(state.job_id, force=force, comment="endTime reached"), ctx)
    return _settled(state, ctx, _schedule_changes(state, ctx), release=True, deniable=True)


def _schedule_changes(state: JobState, ctx: Context) -> list[Any]:
    """JobScheduleChanged if the schedule puts the job in another status (or names another window edge) now."""
    config = state.spec.get("config")
    if not schedule.is_scheduled(config):
        return []
    the_plan = schedule.plan(config, ctx.seconds_per_minute)
    started = the_plan.start_at is None or ctx.now >= the_plan.start_at
    status, flip_at = IN_PROGRESS, None
    if not started:
        status = SCHEDULED
    elif the_plan.windows:
        closes = the_plan.open_until(ctx.now)
        status, flip_at = (IN_PROGRESS, closes) if closes is not None else (SCHEDULED, the_plan.next_open(ctx.now))
    if (status, flip_at, started) == (state.status, state.flip_at, state.started):
        return []
    return [JobScheduleChanged(state.job_id, status, ctx.now, flip_at, started)]


def _release(
    state: JobState, thing_names: list[str], ctx: Context, via: str | None = None
) -> tuple[list[Any], list[Send]]:
    """Queue an execution at once (no rollout rate) on each thing that has none pending for this job. One the
    job believes pending is asked too, uncounted: its execution may have been REMOVED on its way back into
    the group, and the thing says so if it makes a new one."""
    things: list[str] = []
    pending: list[str] = []
    for thing in dict.fromkeys(thing_names):
        status = state.executions.get(thing)
        (things if status is None or status in TERMINAL else pending).append(thing)
    events: list[Any] = [JobExecutionAdded(state.job_id, thing, ctx.now) for thing in things]
    sends = _queue(state.job_id, state.spec, things, via, queued_at=ctx.now, joined=True)
    sends += _queue(state.job_id, state.spec, pending, via, queued_at=ctx.now, counted=False, joined=True)
    return events, sends


def _add_things(state: JobState, command: targets.AddThingsToJob, ctx: Context) -> Decision:
    if state.status not in RUNNING or state.ended or state.spec.get("target_selection") != CONTINUOUS:
        return Decision()  # only a running CONTINUOUS job follows its groups
    if not state.started:
        joiners = _newcomers(state, command.thing_names)
        return _settled(state, ctx, [JobThingsJoined(state.job_id, joiners, command.via, ctx.now)] if joiners else [])
    events, sends = _release(state, command.thing_names, ctx, command.via)
    return _settled(state, ctx, events, sends)


def _associate(state: JobState, command: AssociateTargets, ctx: Context) -> Decision:
    if not state.exists:
        return _missing(command.job_id)
    if state.spec.get("target_selection") != CONTINUOUS or state.status not in RUNNING:
        return _refused(
            ErrorKind.INVALID_REQUEST,
            f"Job {command.job_id} is {state.spec.get('target_selection')} and {state.status}; targets can be "
            "associated only with a CONTINUOUS job that is IN_PROGRESS or SCHEDULED",
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
    # Things named here go through the rollout like those CreateJob named (aws-iot-jobs.md §6.7).
    things = _newcomers(state, command.things)
    associated = JobTargetsAssociated(command.job_id, new, command.comment, ctx.now, things)
    known = set(targets.target_names(current)[1])
    release = state.release or ""
    reach = [
        Send(group_key(g), targets.TargetGroup(g, command.job_id, release, True, g))
        for g in targets.target_names(new)[1]
        if g not in known
    ]
    return _settled(state, ctx, [associated], reach, reply=reply, release=True)


# --- timers -----------------------------------------------------------------------------------


def timers(state: JobState) -> list[Timer]:
    """The next schedule edge (start, window, end), and the next rollout tick while things wait for room in
    the rolling minute."""
    found: list[Timer] = []
    if state.status in RUNNING and not state.ended:
        start, end = schedule.bounds(state.spec.get("config"))
        edges = [at for at in (None if state.started else start, end, state.flip_at) if at is not None]
        if edges:
            found.append(Timer(min(edges), ScheduleTick(state.job_id)))
    return found + _rollout_timers(state)


def _rollout_timers(state: JobState) -> list[Timer]:
    if state.status != IN_PROGRESS or not state.backlog:
        return []
    limit = rollout.rate(state.spec.get("config"), state.notified, state.counts.get(SUCCEEDED, 0))
    due = rollout.next_release(limit, state.recent, _slice(state, limit) if limit is not None else 1)
    if due is None:
        # There is room in the window: the next slice goes a tenth of a minute after the last (or at once).
        due = state.next_slice_at if state.next_slice_at is not None else (state.last_updated_at or 0.0)
    elif state.next_slice_at is not None:
        due = max(due, state.next_slice_at)
    return [Timer(due, RolloutTick(state.job_id))]
