"""The registry aggregate (key `registry`): things, thing groups and their membership.

It also resolves job targets, because it alone knows which things a group holds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from iotjobs.domain.decision import Context, Decision, Done, Send
from iotjobs.domain.errors import DomainError, ErrorKind, invalid, not_found
from iotjobs.domain.job import AssociateTargets, CreateJob
from iotjobs.domain.job import key_for as job_key
from iotjobs.domain.targets import (
    REGISTRY_KEY,
    TARGETS_CHUNK,
    AddThingsToJob,
    RecordJobTargets,
    ReleaseTargets,
    chunked,
)
from iotjobs.domain.thing import RegisterThing, RemoveExecutions, UnregisterThing
from iotjobs.domain.thing import key_for as thing_key

KEY = REGISTRY_KEY
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


@dataclass(frozen=True)
class ResolveJobAssociation:
    """AssociateTargetsWithJob's first stop, like ResolveJobTargets for CreateJob."""

    job_id: str
    targets: list[str]
    thing_names: list[str]
    group_names: list[str]
    comment: str | None = None


@dataclass(frozen=True)
class DeleteThing:
    thing_name: str
    expected_version: int | None = None


@dataclass(frozen=True)
class RemoveThingFromThingGroup:
    thing_name: str
    group_name: str


@dataclass(frozen=True)
class DeleteThingGroup:
    group_name: str
    expected_version: int | None = None


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


@dataclass(frozen=True)
class ThingDeleted:
    thing_name: str


@dataclass(frozen=True)
class ThingRemovedFromThingGroup:
    thing_name: str
    group_name: str


@dataclass(frozen=True)
class ThingGroupDeleted:
    group_name: str


@dataclass(frozen=True)
class JobTargetsRecorded:
    """The targets of a job that names thing groups (a job without any leaves no record)."""

    job_id: str
    thing_names: list[str]
    group_names: list[str]
    continuous: bool = False


# --- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingGroupReply:
    group_name: str
    group_id: str


COMMANDS = (
    CreateThing,
    CreateThingGroup,
    AddThingToThingGroup,
    ResolveJobTargets,
    ResolveJobAssociation,
    DeleteThing,
    RemoveThingFromThingGroup,
    DeleteThingGroup,
    RecordJobTargets,
)
EVENTS = (
    ThingCreated,
    ThingGroupCreated,
    ThingAddedToThingGroup,
    ThingDeleted,
    ThingRemovedFromThingGroup,
    ThingGroupDeleted,
    JobTargetsRecorded,
)
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
class JobTargets:
    """A job's targets by name: a thing is reached through its own name or a group it or a descendant holds."""

    thing_names: tuple[str, ...]
    group_names: tuple[str, ...]
    continuous: bool = False


@dataclass(frozen=True)
class RegistryState:
    things: dict[str, ThingRecord] = field(default_factory=dict)
    groups: dict[str, GroupRecord] = field(default_factory=dict)
    jobs: dict[str, JobTargets] = field(default_factory=dict)
    """Targets of the jobs that name thing groups, by job id."""

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

    def children(self, group_name: str) -> list[str]:
        return sorted(name for name, group in self.groups.items() if group.parent_group_name == group_name)

    def reaches(self, targets: JobTargets, thing_name: str) -> bool:
        """Whether a job with these targets still reaches the thing (aws-iot-jobs.md §6.9)."""
        thing = self.things.get(thing_name)
        if thing is None:
            return False
        if thing_name in targets.thing_names:
            return True
        return any(self.descendants(group).intersection(thing.groups) for group in targets.group_names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "things": {k: asdict(t) for k, t in self.things.items()},
            "groups": {k: asdict(g) for k, g in self.groups.items()},
            "jobs": {k: asdict(j) for k, j in self.jobs.items()},
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> RegistryState:
        return RegistryState(
            things={k: ThingRecord(**{**t, "groups": tuple(t["groups"])}) for k, t in data["things"].items()},
            groups={k: GroupRecord(**g) for k, g in data["groups"].items()},
            jobs={
                k: JobTargets(tuple(j["thing_names"]), tuple(j["group_names"]), j.get("continuous", False))
                for k, j in data.get("jobs", {}).items()
            },
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
        case ThingDeleted():
            return replace(state, things={k: t for k, t in state.things.items() if k != event.thing_name})
        case ThingRemovedFromThingGroup():
            thing = state.things[event.thing_name]
            left = replace(thing, groups=_without(thing.groups, event.group_name), version=thing.version + 1)
            return replace(state, things={**state.things, event.thing_name: left})
        case ThingGroupDeleted():
            things = {k: replace(t, groups=_without(t.groups, event.group_name)) for k, t in state.things.items()}
            groups = {k: g for k, g in state.groups.items() if k != event.group_name}
            return replace(state, things=things, groups=groups)
        case JobTargetsRecorded():
            jobs = {k: j for k, j in state.jobs.items() if k != event.job_id}
            if event.group_names:
                jobs[event.job_id] = JobTargets(tuple(event.thing_names), tuple(event.group_names), event.continuous)
            return replace(state, jobs=jobs)
    raise TypeError(f"registry cannot apply {type(event).__name__}")


def _without(groups: tuple[str, ...], group_name: str) -> tuple[str, ...]:
    return tuple(g for g in groups if g != group_name)


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
            return _resolve(state, command, ctx)
        case ResolveJobAssociation():
            return _resolve_association(state, command)
        case DeleteThing():
            return _delete_thing(state, command)
        case RemoveThingFromThingGroup():
            return _remove_from_group(state, command)
        case DeleteThingGroup():
            return _delete_group(state, command)
        case RecordJobTargets():
            return _record_targets(state, command)
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
    event = ThingAddedToThingGroup(command.thing_name, command.group_name)
    after = evolve(state, event)
    joined = [
        job_id
        for job_id, targets in sorted(state.jobs.items())
        if targets.continuous
        and after.reaches(targets, command.thing_name)
        and not state.reaches(targets, command.thing_name)
    ]
    # A CONTINUOUS job runs on a thing as soon as it joins one of its target groups (aws-iot-jobs.md §6.9).
    sends = tuple(Send(job_key(job_id), AddThingsToJob(job_id, [command.thing_name])) for job_id in joined)
    return Decision(reply=Done(), events=(event,), sends=sends)


def _resolved_things(state: RegistryState, thing_names: list[str], group_names: list[str]) -> list[str]:
    """The things targets reach: named things in order, then group members by name, each once."""
    for name in thing_names:
        if name not in state.things:
            raise not_found(f"Thing {name} does not exist")
    for name in group_names:
        if name not in state.groups:
            raise not_found(f"Thing group {name} does not exist")
    things = dict.fromkeys(thing_names)
    for group in group_names:
        things.update(dict.fromkeys(state.members(group)))
    return list(things)


def _resolve(state: RegistryState, command: ResolveJobTargets, ctx: Context) -> Decision:
    things = _resolved_things(state, command.thing_names, command.group_names)
    continuous = command.spec.get("target_selection") == "CONTINUOUS"
    if len(things) <= TARGETS_CHUNK or continuous:
        # A CONTINUOUS job still gets its things in one command: the registry's check for things that
        # joined while it was created needs them all at once (see _record_targets).
        create = CreateJob(command.job_id, command.spec, things)
        return Decision(sends=(Send(job_key(command.job_id), create, True),))
    # A large fleet reaches the job in chunks that follow its CreateJob in order, so no record holds it all.
    first, *rest = chunked(things)
    release = f"{command.job_id}@{ctx.now!r}"
    sends = [Send(job_key(command.job_id), CreateJob(command.job_id, command.spec, first, release), True)]
    sends += [
        Send(job_key(command.job_id), ReleaseTargets(command.job_id, chunk, release, i == len(rest) - 1))
        for i, chunk in enumerate(rest)
    ]
    return Decision(sends=tuple(sends))


def _resolve_association(state: RegistryState, command: ResolveJobAssociation) -> Decision:
    things = _resolved_things(state, command.thing_names, command.group_names)
    associate = AssociateTargets(command.job_id, list(command.targets), things, command.comment)
    return Decision(sends=(Send(job_key(command.job_id), associate, True),))


# --- deletions and removals (aws-iot-jobs.md §3.4, §6.9) ---------------------------------------


def _version_conflict(what: str, expected: int, version: int) -> DomainError:
    return DomainError(
        ErrorKind.VERSION_CONFLICT,
        f"expectedVersion {expected} does not match the current version {version} of {what}",
    )


def _removals(before: RegistryState, after: RegistryState, thing_names: list[str]) -> tuple[Send, ...]:
    """For each thing, the jobs that reached it before and no longer do: their pending executions are REMOVED."""
    sends = []
    for name in thing_names:
        lost = [
            job_id
            for job_id, targets in sorted(before.jobs.items())
            if before.reaches(targets, name) and not after.reaches(targets, name)
        ]
        if lost:
            sends.append(Send(thing_key(name), RemoveExecutions(lost)))
    return tuple(sends)


def _delete_thing(state: RegistryState, command: DeleteThing) -> Decision:
    thing = state.things.get(command.thing_name)
    if thing is None:
        return Decision(reply=Done())  # DeleteThing succeeds for a thing that does not exist
    if command.expected_version is not None and command.expected_version != thing.version:
        raise _version_conflict(f"thing {command.thing_name}", command.expected_version, thing.version)
    # The thing aggregate removes every pending execution and answers, so the caller hears back only
    # once devices of the deleted thing are refused.
    unregister = Send(thing_key(command.thing_name), UnregisterThing(command.thing_name), True)
    return Decision(events=(ThingDeleted(command.thing_name),), sends=(unregister,))


def _remove_from_group(state: RegistryState, command: RemoveThingFromThingGroup) -> Decision:
    thing = state.things.get(command.thing_name)
    if thing is None:
        raise not_found(f"Thing {command.thing_name} does not exist")
    if command.group_name not in state.groups:
        raise not_found(f"Thing group {command.group_name} does not exist")
    if command.group_name not in thing.groups:
        return Decision(reply=Done())
    event = ThingRemovedFromThingGroup(command.thing_name, command.group_name)
    after = evolve(state, event)
    return Decision(reply=Done(), events=(event,), sends=_removals(state, after, [command.thing_name]))


def _delete_group(state: RegistryState, command: DeleteThingGroup) -> Decision:
    group = state.groups.get(command.group_name)
    if group is None:
        return Decision(reply=Done())  # as AWS: deleting a missing group succeeds
    if command.expected_version is not None and command.expected_version != group.version:
        raise _version_conflict(f"thing group {command.group_name}", command.expected_version, group.version)
    children = state.children(command.group_name)
    if children:
        raise invalid(
            f"Cannot delete thing group {command.group_name}: it still has child groups "
            f"({', '.join(children)}); delete them first"
        )
    event = ThingGroupDeleted(command.group_name)
    after = evolve(state, event)
    members = sorted(name for name, thing in state.things.items() if command.group_name in thing.groups)
    return Decision(reply=Done(), events=(event,), sends=_removals(state, after, members))


def _record_targets(state: RegistryState, command: RecordJobTargets) -> Decision:
    """A job now exists: keep its targets, and remove it from released things that left them meanwhile."""
    event = JobTargetsRecorded(command.job_id, list(command.thing_names), list(command.group_names), command.continuous)
    targets = JobTargets(tuple(command.thing_names), tuple(command.group_names), command.continuous)
    known = state.jobs.get(command.job_id)
    events = () if known == targets or (known is None and not targets.group_names) else (event,)
    lost = [name for name in dict.fromkeys(command.released) if not state.reaches(targets, name)]
    remove = RemoveExecutions([command.job_id])
    sends = [Send(thing_key(name), remove) for name in lost]
    if known is None and targets.continuous:
        # Things that joined while the new job was being created have not heard of it yet.
        joined = [
            name for name in sorted(state.things) if name not in command.released and state.reaches(targets, name)
        ]
        if joined:
            sends.append(Send(job_key(command.job_id), AddThingsToJob(command.job_id, joined)))
    return Decision(events=events, sends=tuple(sends))
