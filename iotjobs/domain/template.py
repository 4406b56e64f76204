"""The job template aggregate (key `template/{id}`): one job template, its lifetime and its tags.

A template is a snapshot: CreateJobTemplate stores the document and configuration blocks it was given (or
copied from a job) in their wire form, and jobs created from it copy them in turn, so deleting a template
leaves those jobs alone (aws-iot-jobs.md §3.3).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from iotjobs.domain import tagging
from iotjobs.domain.decision import Context, Decision, Done
from iotjobs.domain.errors import DomainError, ErrorKind, not_found

PREFIX = "template/"

# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateJobTemplate:
    template_id: str
    spec: dict[str, Any]
    """DescribeJobTemplate's members besides the ARN, id and createdAt, as validated wire values."""
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DeleteJobTemplate:
    template_id: str


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobTemplateCreated:
    template_id: str
    spec: dict[str, Any]
    created_at: float


@dataclass(frozen=True)
class JobTemplateDeleted:
    template_id: str
    deleted_at: float


# --- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobTemplateCreatedReply:
    template_id: str


COMMANDS = (CreateJobTemplate, DeleteJobTemplate)
EVENTS = (JobTemplateCreated, JobTemplateDeleted)
REPLIES = (JobTemplateCreatedReply,)

# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateState:
    template_id: str
    spec: dict[str, Any] | None = None
    created_at: float | None = None
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.spec is not None

    def to_dict(self) -> dict[str, Any]:
        return {"template_id": self.template_id, "spec": self.spec, "created_at": self.created_at, "tags": self.tags}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> TemplateState:
        return TemplateState(**data)


def key_for(template_id: str) -> str:
    return f"{PREFIX}{template_id}"


def initial(key: str) -> TemplateState:
    return TemplateState(template_id=key.removeprefix(PREFIX))


def evolve(state: TemplateState, event: Any) -> TemplateState:
    match event:
        case JobTemplateCreated():
            return replace(state, spec=dict(event.spec), created_at=event.created_at, tags={})
        case JobTemplateDeleted():
            return TemplateState(template_id=state.template_id)  # the id may be used again
        case tagging.TagsChanged():
            return replace(state, tags=dict(event.tags))
    raise TypeError(f"template aggregate cannot apply {type(event).__name__}")


def decide(state: TemplateState, command: Any, ctx: Context) -> Decision:
    match command:
        case CreateJobTemplate():
            return _create(state, command, ctx)
        case DeleteJobTemplate():
            return _delete(state, command, ctx)
        case tagging.TagResource() | tagging.UntagResource():
            return tagging.decide(state.exists, state.tags, command, f"Job template {state.template_id}")
    raise TypeError(f"template aggregate cannot handle {type(command).__name__}")


def _create(state: TemplateState, command: CreateJobTemplate, ctx: Context) -> Decision:
    if state.exists:
        conflict = DomainError(
            ErrorKind.CONFLICT,
            f"Job template {command.template_id} already exists",
            {"resourceId": command.template_id},
        )
        return Decision(reply=conflict.rejection())
    events = (
        JobTemplateCreated(command.template_id, dict(command.spec), ctx.now),
        *tagging.initial_tags(tagging.TEMPLATE, command.template_id, command.tags),
    )
    return Decision(reply=JobTemplateCreatedReply(command.template_id), events=events)


def _delete(state: TemplateState, command: DeleteJobTemplate, ctx: Context) -> Decision:
    if not state.exists:
        return Decision(reply=not_found(f"Job template {command.template_id} does not exist").rejection())
    return Decision(reply=Done(), events=(JobTemplateDeleted(command.template_id, ctx.now),))
