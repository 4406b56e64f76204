"""The thing group aggregate (key `group/{name}`): the group, its place in the hierarchy, its members and
the CONTINUOUS jobs that follow it.

A thing's own record (attributes, the groups it is in) lives with the thing (`thing.py`): the thing is the
one that decides whether it joins or leaves, and tells the group. The group keeps its members so that a
job targeting it reaches them with work proportional to them, never to the registry, and so that a thing
joining it reaches the CONTINUOUS jobs that target it or an ancestor (aws-iot-jobs.md §6.9).

Work that spans groups goes down the hierarchy: a group passes a job's targeting on to its children,
each of which streams its own members to the job.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from immutables import Map

from iotjobs.domain.attributes import updated as updated_attributes
from iotjobs.domain.decision import Context, Decision, Done, Send
from iotjobs.domain.errors import DomainError, ErrorKind, check_version, invalid, not_found
from iotjobs.domain.job import key_for as job_key
from iotjobs.domain.targets import (
    GROUP_PREFIX,
    AddThingsToJob,
    ForgetJob,
    MemberJoined,
    MemberLeft,
    ReleaseTargets,
    TargetGroup,
    chunked,
    group_key,
)
from iotjobs.domain.thing import MAX_GROUPS, JoinGroup, LeaveGroup
from iotjobs.domain.thing import key_for as thing_key

PREFIX = GROUP_PREFIX
key_for = group_key

# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateThingGroup:
    group_name: str
    group_id: str
    parent_group_name: str | None = None
    description: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class AdoptChildGroup:
    """From a group being created to its parent: the parent checks it exists and takes the child in."""

    group_name: str
    child: dict[str, Any]
    """The child's CreateThingGroup, as a message."""


@dataclass(frozen=True)
class PlaceChildGroup:
    """From the parent back to the child being created: where it sits and what it inherits."""

    group_name: str
    child: dict[str, Any]
    ancestors: list[str]
    jobs: list[str]


@dataclass(frozen=True)
class DropChildGroup:
    """To the parent: this child is gone (deleted, or its creation under this parent was refused)."""

    group_name: str
    child_name: str


@dataclass(frozen=True)
class AddThingToThingGroup:
    thing_name: str
    group_name: str


@dataclass(frozen=True)
class RemoveThingFromThingGroup:
    thing_name: str
    group_name: str


@dataclass(frozen=True)
class DeleteThingGroup:
    group_name: str
    expected_version: int | None = None


@dataclass(frozen=True)
class UpdateThingGroup:
    """UpdateThingGroup: the description and attributes of the group (aws-iot-jobs.md §3.4)."""

    group_name: str
    description: str | None = None
    """None: the description stays as it is."""
    attributes: dict[str, str] | None = None
    """None: the attributes stay as they are; else merged or replacing, as `merge` says."""
    merge: bool = False
    expected_version: int | None = None


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingGroupCreated:
    group_name: str
    group_id: str
    parent_group_name: str | None
    description: str | None
    attributes: dict[str, str]
    created_at: float
    ancestors: list[str] = field(default_factory=list)
    """Root first, the parent last."""
    jobs: list[str] = field(default_factory=list)
    """The CONTINUOUS jobs targeting an ancestor when the group was created."""


@dataclass(frozen=True)
class ThingGroupDeleted:
    group_name: str


@dataclass(frozen=True)
class ThingGroupUpdated:
    """The group's properties after UpdateThingGroup (its version moves on by one)."""

    group_name: str
    description: str | None
    attributes: dict[str, str]


@dataclass(frozen=True)
class ChildGroupAdded:
    group_name: str
    child_name: str


@dataclass(frozen=True)
class ChildGroupRemoved:
    group_name: str
    child_name: str


@dataclass(frozen=True)
class GroupMemberAdded:
    group_name: str
    thing_name: str


@dataclass(frozen=True)
class GroupMemberRemoved:
    group_name: str
    thing_name: str


@dataclass(frozen=True)
class GroupJobAdded:
    """A CONTINUOUS job now targets the group or an ancestor: things that join get its execution."""

    group_name: str
    job_id: str


@dataclass(frozen=True)
class GroupJobRemoved:
    group_name: str
    job_id: str


# --- replies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ThingGroupReply:
    group_name: str
    group_id: str


@dataclass(frozen=True)
class ThingGroupVersionReply:
    """UpdateThingGroup's answer: the group's new version."""

    version: int


COMMANDS = (
    CreateThingGroup,
    AdoptChildGroup,
    PlaceChildGroup,
    DropChildGroup,
    AddThingToThingGroup,
    RemoveThingFromThingGroup,
    DeleteThingGroup,
    UpdateThingGroup,
    MemberJoined,
    MemberLeft,
    TargetGroup,
    ForgetJob,
)
EVENTS = (
    ThingGroupCreated,
    ThingGroupDeleted,
    ChildGroupAdded,
    ChildGroupRemoved,
    GroupMemberAdded,
    GroupMemberRemoved,
    GroupJobAdded,
    GroupJobRemoved,
    ThingGroupUpdated,
)
REPLIES = (ThingGroupReply, ThingGroupVersionReply, Done)

# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupState:
    name: str
    group_id: str | None = None
    parent_group_name: str | None = None
    description: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    version: int = 0
    ancestors: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    members: Map[str, bool] = field(default_factory=Map)
    """The things in the group itself (not its descendants'). A persistent map used as a set: one thing
    joining a group of 100,000 does not copy the others. Its order follows string hashes, which differ
    between processes: whatever is sent to members goes in name order."""
    jobs: tuple[str, ...] = ()
    """The CONTINUOUS jobs targeting the group or an ancestor."""

    @property
    def exists(self) -> bool:
        return self.group_id is not None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "group_id": self.group_id,
            "parent_group_name": self.parent_group_name,
            "description": self.description,
            "attributes": self.attributes,
            "created_at": self.created_at,
            "version": self.version,
            "ancestors": list(self.ancestors),
            "children": list(self.children),
            "members": list(self.members),
            "jobs": list(self.jobs),
        }

    @staticmethod
    def from_dict(data: dict[str, Any]) -> GroupState:
        return GroupState(
            **{
                **data,
                "ancestors": tuple(data["ancestors"]),
                "children": tuple(data["children"]),
                "members": Map(dict.fromkeys(data["members"], True)),
                "jobs": tuple(data["jobs"]),
            }
        )


def initial(key: str) -> GroupState:
    return GroupState(name=key.removeprefix(PREFIX))


def _with(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return items if item in items else (*items, item)


def _without(items: tuple[str, ...], item: str) -> tuple[str, ...]:
    return tuple(i for i in items if i != item)


def evolve(state: GroupState, event: Any) -> GroupState:
    match event:
        case ThingGroupCreated():
            return GroupState(
                name=state.name,
                group_id=event.group_id,
                parent_group_name=event.parent_group_name,
                description=event.description,
                attributes=dict(event.attributes),
                created_at=event.created_at,
                version=1,
                ancestors=tuple(event.ancestors),
                jobs=tuple(event.jobs),
            )
        case ThingGroupDeleted():
            return initial(key_for(state.name))  # the name may be used again
        case ThingGroupUpdated():
            return replace(
                state, description=event.description, attributes=dict(event.attributes), version=state.version + 1
            )
        case ChildGroupAdded():
            return replace(state, children=_with(state.children, event.child_name))
        case ChildGroupRemoved():
            return replace(state, children=_without(state.children, event.child_name))
        case GroupMemberAdded():
            return replace(state, members=state.members.set(event.thing_name, True))
        case GroupMemberRemoved():
            return replace(state, members=state.members.delete(event.thing_name))
        case GroupJobAdded():
            return replace(state, jobs=_with(state.jobs, event.job_id))
        case GroupJobRemoved():
            return replace(state, jobs=_without(state.jobs, event.job_id))
    raise TypeError(f"thing group aggregate cannot apply {type(event).__name__}")


# --- decide -----------------------------------------------------------------------------------


def decide(state: GroupState, command: Any, ctx: Context) -> Decision:
    try:
        return _decide(state, command, ctx)
    except DomainError as err:
        return Decision(reply=err.rejection())


def _decide(state: GroupState, command: Any, ctx: Context) -> Decision:
    match command:
        case CreateThingGroup():
            return _create(state, command, ctx)
        case AdoptChildGroup():
            return _adopt(state, command)
        case PlaceChildGroup():
            return _place(state, command, ctx)
        case DropChildGroup():
            if command.child_name not in state.children:
                return Decision()
            return Decision(events=(ChildGroupRemoved(state.name, command.child_name),))
        case AddThingToThingGroup():
            _require(state)
            join = JoinGroup(command.thing_name, state.name, [*state.ancestors])
            return Decision(sends=(Send(thing_key(command.thing_name), join, True),))
        case RemoveThingFromThingGroup():
            _require(state)
            leave = LeaveGroup(command.thing_name, state.name)
            return Decision(sends=(Send(thing_key(command.thing_name), leave, True),))
        case DeleteThingGroup():
            return _delete(state, command)
        case UpdateThingGroup():
            return _update(state, command)
        case MemberJoined():
            return _member_joined(state, command)
        case MemberLeft():
            if command.thing_name not in state.members:
                return Decision()
            return Decision(events=(GroupMemberRemoved(state.name, command.thing_name),))
        case TargetGroup():
            return _target(state, command)
        case ForgetJob():
            events = (GroupJobRemoved(state.name, command.job_id),) if command.job_id in state.jobs else ()
            forward = tuple(Send(key_for(child), ForgetJob(child, command.job_id)) for child in state.children)
            return Decision(events=events, sends=forward)
    raise TypeError(f"thing group aggregate cannot handle {type(command).__name__}")


def _require(state: GroupState) -> None:
    if not state.exists:
        raise not_found(f"Thing group {state.name} does not exist")


def _same(state: GroupState, command: CreateThingGroup) -> bool:
    return (
        state.parent_group_name == command.parent_group_name
        and state.description == command.description
        and state.attributes == command.attributes
    )


def _existing(state: GroupState, command: CreateThingGroup) -> Decision:
    """CreateThingGroup of a group that exists: the same again is answered as created, anything else refused."""
    if _same(state, command):
        return Decision(reply=ThingGroupReply(state.name, state.group_id or ""))
    raise DomainError(
        ErrorKind.RESOURCE_ALREADY_EXISTS,
        f"Thing group {state.name} already exists with a different configuration",
        {"resourceId": state.group_id},
    )


def _created(
    state: GroupState, command: CreateThingGroup, ctx: Context, ancestors: list[str], jobs: list[str]
) -> Decision:
    event = ThingGroupCreated(
        state.name,
        command.group_id,
        command.parent_group_name,
        command.description,
        dict(command.attributes),
        ctx.now,
        ancestors,
        jobs,
    )
    return Decision(reply=ThingGroupReply(state.name, command.group_id), events=(event,))


def _create(state: GroupState, command: CreateThingGroup, ctx: Context) -> Decision:
    if state.exists:
        return _existing(state, command)
    if command.parent_group_name is None:
        return _created(state, command, ctx, [], [])
    if command.parent_group_name == state.name:
        raise invalid(f"Thing group {state.name} cannot be its own parent")
    # The parent answers if it does not exist; else it takes the child in and sends it back its place.
    adopt = AdoptChildGroup(command.parent_group_name, asdict(command))
    return Decision(sends=(Send(key_for(command.parent_group_name), adopt, True),))


def _adopt(state: GroupState, command: AdoptChildGroup) -> Decision:
    child = CreateThingGroup(**command.child)
    if not state.exists:
        raise not_found(f"Parent thing group {state.name} does not exist")
    events = () if child.group_name in state.children else (ChildGroupAdded(state.name, child.group_name),)
    place = PlaceChildGroup(child.group_name, command.child, [*state.ancestors, state.name], [*state.jobs])
    return Decision(events=events, sends=(Send(key_for(child.group_name), place, True),))


def _place(state: GroupState, command: PlaceChildGroup, ctx: Context) -> Decision:
    child = CreateThingGroup(**command.child)
    if state.exists:
        # Created meanwhile by another request: under another parent, this one must not keep it as a child.
        decision = decide(state, child, ctx)
        if state.parent_group_name != child.parent_group_name and child.parent_group_name is not None:
            drop = DropChildGroup(child.parent_group_name, state.name)
            return replace(decision, sends=(*decision.sends, Send(key_for(child.parent_group_name), drop)))
        return decision
    return _created(state, child, ctx, list(command.ancestors), list(command.jobs))


def _delete(state: GroupState, command: DeleteThingGroup) -> Decision:
    if not state.exists:
        return Decision(reply=Done())  # as AWS: deleting a missing group succeeds
    check_version(command.expected_version, state.version, f"thing group {state.name}")
    if state.children:
        raise invalid(
            f"Cannot delete thing group {state.name}: it still has child groups "
            f"({', '.join(sorted(state.children))}); delete them first"
        )
    # Each member leaves on its own key: its record, and the jobs that no longer reach it (§6.9).
    sends = [Send(thing_key(t), LeaveGroup(t, state.name, group_deleted=True)) for t in sorted(state.members)]
    if state.parent_group_name is not None:
        sends.append(Send(key_for(state.parent_group_name), DropChildGroup(state.parent_group_name, state.name)))
    return Decision(reply=Done(), events=(ThingGroupDeleted(state.name),), sends=tuple(sends))


def _update(state: GroupState, command: UpdateThingGroup) -> Decision:
    _require(state)
    check_version(command.expected_version, state.version, f"thing group {state.name}")
    description = state.description if command.description is None else command.description
    attributes = state.attributes
    if command.attributes is not None:
        attributes = updated_attributes(state.attributes, command.attributes, command.merge)
    event = ThingGroupUpdated(state.name, description, attributes)
    return Decision(reply=ThingGroupVersionReply(state.version + 1), events=(event,))


def _member_joined(state: GroupState, command: MemberJoined) -> Decision:
    if not state.exists:
        # The thing joined while the group was being deleted: it leaves again.
        leave = LeaveGroup(command.thing_name, state.name, group_deleted=True)
        return Decision(sends=(Send(thing_key(command.thing_name), leave),))
    if command.thing_name in state.members:
        return Decision()
    # A CONTINUOUS job runs on a thing as soon as it joins one of its target groups (aws-iot-jobs.md §6.9).
    add = [Send(job_key(job), AddThingsToJob(job, [command.thing_name], state.name)) for job in state.jobs]
    return Decision(events=(GroupMemberAdded(state.name, command.thing_name),), sends=tuple(add))


def _target(state: GroupState, command: TargetGroup) -> Decision:
    """A job targets this group (or an ancestor): its members go to the job in bounded chunks, the last one
    naming the streams the children will send; a CONTINUOUS job is kept, so later joiners reach it."""
    to_job = job_key(command.job_id)
    if not state.exists:
        done = ReleaseTargets(command.job_id, [], command.release, True, command.path, [])
        return Decision(sends=(Send(to_job, done),))
    kept = command.continuous and command.job_id not in state.jobs
    events = (GroupJobAdded(state.name, command.job_id),) if kept else ()
    paths = [f"{command.path}/{child}" for child in state.children]
    *middle, final = chunked(sorted(state.members)) or [[]]
    releases = [ReleaseTargets(command.job_id, chunk, command.release, False, command.path) for chunk in middle]
    releases.append(ReleaseTargets(command.job_id, final, command.release, True, command.path, paths))
    sends = [Send(to_job, release) for release in releases]
    sends += [
        Send(key_for(child), TargetGroup(child, command.job_id, command.release, command.continuous, path))
        for child, path in zip(state.children, paths, strict=True)
    ]
    return Decision(events=events, sends=tuple(sends))


# --- UpdateThingGroupsForThing ----------------------------------------------------------------


def membership_changes(
    thing_name: str, groups: Collection[str], to_add: list[str], to_remove: list[str]
) -> list[AddThingToThingGroup | RemoveThingFromThingGroup]:
    """UpdateThingGroupsForThing as the single membership operations it stands for, in order, given the
    groups the thing is in (aws-iot-jobs.md §3.4, §6.9).

    Joins go first, so a thing moving between two groups one job reaches (two children of its target group)
    never leaves the job's reach and keeps its execution; only joins that would take the thing past
    MAX_GROUPS wait until the removals have made room. Every named group gets its command, even one the
    thing seems to be in (or out of) already: `groups` may be a moment old, and the thing decides.
    """
    adding = list(dict.fromkeys(to_add))
    removing = list(dict.fromkeys(to_remove))
    if both := sorted(set(adding) & set(removing)):
        raise invalid(
            f"thingGroupsToAdd and thingGroupsToRemove both name {', '.join(both)}: "
            "name each thing group in one of them only"
        )
    current = set(groups)
    after = (current | set(adding)) - set(removing)
    if len(after) > MAX_GROUPS:
        raise invalid(
            f"thingGroupsToAdd would put thing {thing_name} in {len(after)} thing groups; "
            f"a thing belongs to at most {MAX_GROUPS}"
        )
    room = MAX_GROUPS - len(current)
    first = len(adding)
    joining = 0
    for index, name in enumerate(adding):
        if name not in current:
            if joining >= room:
                first = index
                break
            joining += 1
    return [
        *(AddThingToThingGroup(thing_name, name) for name in adding[:first]),
        *(RemoveThingFromThingGroup(thing_name, name) for name in removing),
        *(AddThingToThingGroup(thing_name, name) for name in adding[first:]),
    ]
