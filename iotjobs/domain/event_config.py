"""The account's event configuration (key `account/event-configurations`): which AWS IoT events are published
on `$aws/events/...` (UpdateEventConfigurations; aws-iot-jobs.md §7.7). Every type starts disabled; of them,
JOB and JOB_EXECUTION are published (by the projector, `services/projector/job_events.py`)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from iotjobs.domain.decision import Context, Decision, Done

KEY = "account/event-configurations"
PREFIX = "account/"
EVENT_TYPES = (
    "THING",
    "THING_GROUP",
    "THING_TYPE",
    "THING_GROUP_MEMBERSHIP",
    "THING_GROUP_HIERARCHY",
    "THING_TYPE_ASSOCIATION",
    "JOB",
    "JOB_EXECUTION",
    "POLICY",
    "CERTIFICATE",
    "CA_CERTIFICATE",
)
PUBLISHED = ("JOB", "JOB_EXECUTION")


@dataclass(frozen=True)
class UpdateEventConfigurations:
    enabled: dict[str, bool]
    """Event type to whether it is enabled; types not named keep their setting."""


@dataclass(frozen=True)
class EventConfigurationsUpdated:
    enabled: dict[str, bool]
    at: float


COMMANDS = (UpdateEventConfigurations,)
EVENTS = (EventConfigurationsUpdated,)
REPLIES: tuple[type, ...] = ()


@dataclass(frozen=True)
class EventConfigState:
    enabled: dict[str, bool] = field(default_factory=dict)
    created_at: float | None = None
    updated_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "created_at": self.created_at, "updated_at": self.updated_at}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> EventConfigState:
        return EventConfigState(**data)


def initial(_key: str) -> EventConfigState:
    return EventConfigState()


def evolve(state: EventConfigState, event: Any) -> EventConfigState:
    match event:
        case EventConfigurationsUpdated():
            return replace(
                state,
                enabled={**state.enabled, **event.enabled},
                created_at=state.created_at if state.created_at is not None else event.at,
                updated_at=event.at,
            )
    raise TypeError(f"event configuration cannot apply {type(event).__name__}")


def decide(state: EventConfigState, command: Any, ctx: Context) -> Decision:
    match command:
        case UpdateEventConfigurations():
            return Decision(reply=Done(), events=(EventConfigurationsUpdated(dict(command.enabled), ctx.now),))
    raise TypeError(f"event configuration cannot handle {type(command).__name__}")
