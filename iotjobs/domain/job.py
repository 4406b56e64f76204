"""The job aggregate (key `job/{id}`): configuration, status lifecycle, targets and completion."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from iotjobs.domain.decision import Context, Decision, Send
from iotjobs.domain.errors import DomainError, ErrorKind
from iotjobs.domain.execution import QUEUED, TERMINAL, RecordExecutionStatus
from iotjobs.domain.thing import QueueExecution
from iotjobs.domain.thing import key_for as thing_key

IN_PROGRESS = "IN_PROGRESS"
COMPLETED = "COMPLETED"
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


# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateJob:
    job_id: str
    spec: dict[str, Any]
    things: list[str]


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobCreated:
    job_id: str
    spec: dict[str, Any]
    things: list[str]
    created_at: float


@dataclass(frozen=True)
class JobExecutionRecorded:
    job_id: str
    thing_name: str
    execution_number: int
    status: str
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


COMMANDS = (CreateJob, RecordExecutionStatus)
EVENTS = (JobCreated, JobExecutionRecorded, JobCompleted)
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
    executions: dict[str, str] = field(default_factory=dict)
    """Status of the latest execution on each thing the job released to."""

    @property
    def exists(self) -> bool:
        return self.status is not None

    def all_terminal(self) -> bool:
        return all(status in TERMINAL for status in self.executions.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "status": self.status,
            "spec": self.spec,
            "created_at": self.created_at,
            "last_updated_at": self.last_updated_at,
            "completed_at": self.completed_at,
            "executions": self.executions,
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> JobState:
        return JobState(**data)


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
                executions=dict.fromkeys(event.things, QUEUED),
            )
        case JobExecutionRecorded():
            return replace(
                state,
                executions={**state.executions, event.thing_name: event.status},
                last_updated_at=event.at,
            )
        case JobCompleted():
            return replace(state, status=COMPLETED, completed_at=event.completed_at, last_updated_at=event.completed_at)
    raise TypeError(f"job aggregate cannot apply {type(event).__name__}")


def decide(state: JobState, command: Any, ctx: Context) -> Decision:
    match command:
        case CreateJob():
            return _create(state, command, ctx)
        case RecordExecutionStatus():
            return _record(state, command, ctx)
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
    events: list[Any] = [JobCreated(command.job_id, command.spec, list(command.things), ctx.now)]
    if spec.target_selection == SNAPSHOT and not command.things:
        events.append(JobCompleted(command.job_id, ctx.now))
    release = QueueExecution(
        job_id=command.job_id,
        document=spec.document,
        in_progress_timeout_minutes=spec.in_progress_timeout_minutes,
        namespace_id=spec.namespace_id,
    )
    return Decision(
        reply=JobCreatedReply(command.job_id, spec.description),
        events=tuple(events),
        sends=tuple(Send(thing_key(thing), release) for thing in command.things),
    )


def _record(state: JobState, command: RecordExecutionStatus, ctx: Context) -> Decision:
    if not state.exists or command.thing_name not in state.executions:
        return Decision()  # the job was deleted meanwhile; nothing left to count
    if state.executions[command.thing_name] == command.status:
        return Decision()
    events: list[Any] = [
        JobExecutionRecorded(command.job_id, command.thing_name, command.execution_number, command.status, ctx.now)
    ]
    after = evolve(state, events[0])
    if (
        state.status == IN_PROGRESS
        and after.spec.get("target_selection", SNAPSHOT) == SNAPSHOT
        and after.all_terminal()
    ):
        events.append(JobCompleted(command.job_id, ctx.now))
    return Decision(events=tuple(events))
