"""The registry aggregate (key `registry`): things, thing groups and their membership.

It also resolves job targets, because it alone knows which things a group holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from iotjobs.domain.decision import Context, Decision, Done, Send
from iotjobs.domain.errors import DomainError, ErrorKind, invalid, not_found
from iotjobs.domain.job import CreateJob
from iotjobs.domain.job import key_for as job_key
from iotjobs.domain.thing import RegisterThing
from iotjobs.domain.thing import key_for as thing_key

KEY = "registry"
MAX_GROUPS_PER_THING = 10

# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateThing:
    thing_name: str
    thing_id: str
    thing_type_name: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CreateThingGroup:
    group_name: str
    group_id: str
    parent_group_name: str | None = None
    description: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AddThingToThingGroup:
    thing_name: str
    group_name: str


@dataclass(frozen=True)
class ResolveJobTargets:
    """CreateJob's first stop: check the targets exist and expand groups into things."""

    job_id: str
    spec: dict[str, Any]
    thing_names: list[str]
    group_names: list[str]


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingCreated:
    thing_name: str
    thing_id: str
    thing_type_name: str | None
    attributes: dict[str, str]


@dataclass(frozen=True)
class ThingGroupCreated:
    group_name: str
    group_id: str
    parent_group_name: str | None
    description: str | None
    attributes: dict[str, str]
    created_at: float


@dataclass(frozen=True)
class ThingAddedToThingGroup:
    thing_name: str
    group_name: str


# --- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingGroupReply:
    group_name: str
    group_id: str


COMMANDS = (CreateThing, CreateThingGroup, AddThingToThingGroup, ResolveJobTargets)
EVENTS = (ThingCreated, ThingGroupCreated, ThingAddedToThingGroup)
REPLIES = (ThingGroupReply, Done)

# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingRecord:
    thing_id: str
    thing_type_name: str | None
    attributes: dict[str, str]
    version: int = 1
    groups: tuple[str, ...] = ()


@dataclass(frozen=True)
class GroupRecord:
    group_id: str
    parent_group_name: str | None
    description: str | None
    attributes: dict[str, str]
    created_at: float
    version: int = 1


@dataclass(frozen=True)
class RegistryState:
    things: dict[str, ThingRecord] = field(default_factory=dict)
    groups: dict[str, GroupRecord] = field(default_factory=dict)

    def members(self, group_name: str) -> list[str]:
        """Things in the group or any of its descendants, by name."""
        family = self.descendants(group_name)
        return sorted(name for name, thing in self.things.items() if family.intersection(thing.groups))

    def descendants(self, group_name: str) -> set[str]:
        family = {group_name}
        grew = True
        while grew:
            grew = False
            for name, group in self.groups.items():
                if group.parent_group_name in family and name not in family:
                    family.add(name)
                    grew = True
        return family

    def to_dict(self) -> dict[str, Any]:
        return {
            "things": {k: asdict(t) for k, t in self.things.items()},
            "groups": {k: asdict(g) for k, g in self.groups.items()},
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RegistryState:
        return RegistryState(
            things={k: ThingRecord(**{**t, "groups": tuple(t["groups"])}) for k, t in data["things"].items()},
            groups={k: GroupRecord(**g) for k, g in data["groups"].items()},
        )


def initial(key: str = KEY) -> RegistryState:
    return RegistryState()


def evolve(state: RegistryState, event: Any) -> RegistryState:
    match event:
        case ThingCreated():
            record = ThingRecord(event.thing_id, event.thing_type_name, dict(event.attributes))
            return replace(state, things={**state.things, event.thing_name: record})
        case ThingGroupCreated():
            group = GroupRecord(
                event.group_id, event.parent_group_name, event.description, dict(event.attributes), event.created_at
            )
            return replace(state, groups={**state.groups, event.group_name: group})
        case ThingAddedToThingGroup():
            thing = state.things[event.thing_name]
            moved = replace(thing, groups=(*thing.groups, event.group_name), version=thing.version + 1)
            return replace(state, things={**state.things, event.thing_name: moved})
    raise TypeError(f"registry cannot apply {type(event).__name__}")


def decide(state: RegistryState, command: Any, ctx: Context) -> Decision:
    try:
        return _decide(state, command, ctx)
    except DomainError as err:
        return Decision(reply=err.rejection())


def _decide(state: RegistryState, command: Any, ctx: Context) -> Decision:
    match command:
        case CreateThing():
            return _create_thing(state, command)
        case CreateThingGroup():
            return _create_group(state, command, ctx)
        case AddThingToThingGroup():
            return _add_to_group(state, command)
        case ResolveJobTargets():
            return _resolve(state, command)
    raise TypeError(f"registry cannot handle {type(command).__name__}")


def _create_thing(state: RegistryState, command: CreateThing) -> Decision:
    existing = state.things.get(command.thing_name)
    if existing is not None:
        if existing.thing_type_name == command.thing_type_name and existing.attributes == command.attributes:
            known = RegisterThing(command.thing_name, existing.thing_id)
            return Decision(sends=(Send(thing_key(command.thing_name), known, True),))
        raise DomainError(
            ErrorKind.RESOURCE_ALREADY_EXISTS,
            f"Thing {command.thing_name} already exists with a different configuration",
            {"resourceId": existing.thing_id},
        )
    event = ThingCreated(command.thing_name, command.thing_id, command.thing_type_name, dict(command.attributes))
    # The thing aggregate answers, so the caller hears back only once devices can use the thing.
    register = Send(thing_key(command.thing_name), RegisterThing(command.thing_name, command.thing_id), True)
    return Decision(events=(event,), sends=(register,))


def _create_group(state: RegistryState, command: CreateThingGroup, ctx: Context) -> Decision:
    existing = state.groups.get(command.group_name)
    if existing is not None:
        same = (
            existing.parent_group_name == command.parent_group_name
            and existing.description == command.description
            and existing.attributes == command.attributes
        )
        if same:
            return Decision(reply=ThingGroupReply(command.group_name, existing.group_id))
        raise DomainError(
            ErrorKind.RESOURCE_ALREADY_EXISTS,
            f"Thing group {command.group_name} already exists with a different configuration",
            {"resourceId": existing.group_id},
        )
    if command.parent_group_name is not None and command.parent_group_name not in state.groups:
        raise not_found(f"Parent thing group {command.parent_group_name} does not exist")
    event = ThingGroupCreated(
        command.group_name,
        command.group_id,
        command.parent_group_name,
        command.description,
        dict(command.attributes),
        ctx.now,
    )
    return Decision(reply=ThingGroupReply(command.group_name, command.group_id), events=(event,))


def _add_to_group(state: RegistryState, command: AddThingToThingGroup) -> Decision:
    thing = state.things.get(command.thing_name)
    if thing is None:
        raise not_found(f"Thing {command.thing_name} does not exist")
    if command.group_name not in state.groups:
        raise not_found(f"Thing group {command.group_name} does not exist")
    if command.group_name in thing.groups:
        return Decision(reply=Done())
    if len(thing.groups) >= MAX_GROUPS_PER_THING:
        raise invalid(
            f"Thing {command.thing_name} already belongs to {MAX_GROUPS_PER_THING} thing groups, the most allowed"
        )
    return Decision(reply=Done(), events=(ThingAddedToThingGroup(command.thing_name, command.group_name),))


def _resolve(state: RegistryState, command: ResolveJobTargets) -> Decision:
    for name in command.thing_names:
        if name not in state.things:
            raise not_found(f"Thing {name} does not exist")
    for name in command.group_names:
        if name not in state.groups:
            raise not_found(f"Thing group {name} does not exist")
    things = dict.fromkeys(command.thing_names)
    for group in command.group_names:
        things.update(dict.fromkeys(state.members(group)))
    create = CreateJob(command.job_id, command.spec, list(things))
    return Decision(sends=(Send(job_key(command.job_id), create, True),))
