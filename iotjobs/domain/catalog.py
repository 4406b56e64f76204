"""Every aggregate and message type, so the runtime can route keys and (de)serialise by name."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from iotjobs.domain import event_config, group, job, quota, tagging, template, thing
from iotjobs.domain.decision import Context, Decision, Timer
from iotjobs.domain.errors import Rejection
from iotjobs.domain.execution import RecordExecutionStatus


def _no_timers(_state: Any) -> list[Timer]:
    return []


def _nothing_to_publish(_state: Any, _ctx: Context) -> list[Any]:
    return []


@dataclass(frozen=True)
class Aggregate:
    name: str
    initial: Callable[[str], Any]
    decide: Callable[[Any, Any, Context], Decision]
    evolve: Callable[[Any, Any], Any]
    timers: Callable[[Any], list[Timer]]
    to_dict: Callable[[Any], dict[str, Any]]
    from_dict: Callable[[dict[str, Any]], Any]
    restored: Callable[[Any, Context], list[Any]] = _nothing_to_publish
    """Effects to publish again for a key whose state a restore moved past its snapshot."""


THING = Aggregate(
    "thing",
    thing.initial,
    thing.decide,
    thing.evolve,
    thing.timers,
    thing.ThingState.to_dict,
    thing.ThingState.from_dict,
    thing.restored_notifications,
)
JOB = Aggregate("job", job.initial, job.decide, job.evolve, job.timers, job.JobState.to_dict, job.JobState.from_dict)
GROUP = Aggregate(
    "group",
    group.initial,
    group.decide,
    group.evolve,
    _no_timers,
    group.GroupState.to_dict,
    group.GroupState.from_dict,
)

TEMPLATE = Aggregate(
    "template",
    template.initial,
    template.decide,
    template.evolve,
    _no_timers,
    template.TemplateState.to_dict,
    template.TemplateState.from_dict,
)

EVENT_CONFIG = Aggregate(
    "event-configurations",
    event_config.initial,
    event_config.decide,
    event_config.evolve,
    _no_timers,
    event_config.EventConfigState.to_dict,
    event_config.EventConfigState.from_dict,
)

QUOTA = Aggregate(
    "quota", quota.initial, quota.decide, quota.evolve, _no_timers, quota.QuotaState.to_dict, quota.QuotaState.from_dict
)


def aggregate_for(key: str) -> Aggregate:
    if key.startswith("thing/"):
        return THING
    if key.startswith("job/"):
        return JOB
    if key.startswith(group.PREFIX):
        return GROUP
    if key.startswith(template.PREFIX):
        return TEMPLATE
    if key.startswith(event_config.PREFIX):
        return EVENT_CONFIG
    if key.startswith(quota.PREFIX):
        return QUOTA
    raise KeyError(f"no aggregate owns key {key!r}")


MESSAGE_TYPES: dict[str, type] = {
    cls.__name__: cls
    for cls in (
        *thing.COMMANDS,
        *thing.EVENTS,
        *thing.REPLIES,
        *job.COMMANDS,
        *job.EVENTS,
        *job.REPLIES,
        *group.COMMANDS,
        *group.EVENTS,
        *group.REPLIES,
        *template.COMMANDS,
        *template.EVENTS,
        *template.REPLIES,
        *tagging.COMMANDS,
        *tagging.EVENTS,
        *event_config.COMMANDS,
        *event_config.EVENTS,
        *quota.COMMANDS,
        *quota.EVENTS,
        quota.SlotAnswer,
        RecordExecutionStatus,
        Rejection,
    )
}


def to_message(obj: Any) -> dict[str, Any]:
    if not is_dataclass(obj) or isinstance(obj, type):
        raise TypeError(f"{obj!r} is not a message")
    return {"type": type(obj).__name__, "data": asdict(obj)}


def serialisable_message(obj: Any) -> dict[str, Any]:
    """`to_message` for the hot path, to be passed to orjson: it serialises the dataclass itself, in C, to
    the same JSON."""
    return {"type": type(obj).__name__, "data": obj}


def from_message(message: dict[str, Any]) -> Any:
    return MESSAGE_TYPES[message["type"]](**message["data"])
