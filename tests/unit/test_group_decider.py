"""Behaviour spec of the thing group aggregate (`group/{name}`): the group, its children, its members and the
CONTINUOUS jobs that follow it.

Given these past events, when this command, then these events / sends / reply (aws-iot-jobs.md §3.4, §6.9).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import pytest

from iotjobs.domain import group as g
from iotjobs.domain.decision import Context, Decision, Done, Send
from iotjobs.domain.errors import DomainError, Rejection
from iotjobs.domain.targets import (
    TARGETS_CHUNK,
    AddThingsToJob,
    ForgetJob,
    MemberJoined,
    MemberLeft,
    ReleaseTargets,
    TargetGroup,
)
from iotjobs.domain.thing import JoinGroup, LeaveGroup

T0 = 1_700_000_000.0
NOW = T0 + 5
NAME = "g1"


def given(*events: Any, name: str = NAME) -> g.GroupState:
    state = g.initial(g.key_for(name))
    for event in events:
        state = g.evolve(state, event)
    return state


def when(state: g.GroupState, command: Any) -> Decision:
    return g.decide(state, command, Context(now=NOW))


def created(
    name: str = NAME, parent: str | None = None, ancestors: tuple[str, ...] = (), jobs: tuple[str, ...] = ()
) -> g.ThingGroupCreated:
    return g.ThingGroupCreated(name, f"gid-{name}", parent, None, {}, T0, list(ancestors), list(jobs))


def rejected(decision: Decision, kind: str) -> Rejection:
    assert isinstance(decision.reply, Rejection), decision.reply
    assert decision.reply.kind == kind
    return decision.reply


# --- CreateThingGroup -------------------------------------------------------------------------


def test_create_a_root_group() -> None:
    decision = when(given(), g.CreateThingGroup(NAME, "gid-g1", description="d"))
    assert decision == Decision(
        reply=g.ThingGroupReply(NAME, "gid-g1"),
        events=(g.ThingGroupCreated(NAME, "gid-g1", None, "d", {}, NOW, [], []),),
    )
    assert given(*decision.events).version == 1


def test_create_an_identical_group_again_answers_with_its_id() -> None:
    assert when(given(created()), g.CreateThingGroup(NAME, "other")) == Decision(
        reply=g.ThingGroupReply(NAME, "gid-g1")
    )


def test_create_a_group_with_a_different_configuration_already_exists() -> None:
    rejection = rejected(
        when(given(created()), g.CreateThingGroup(NAME, "x", description="d")), "ResourceAlreadyExists"
    )
    assert rejection.message == f"Thing group {NAME} already exists with a different configuration"
    assert rejection.detail == {"resourceId": "gid-g1"}


def test_a_group_cannot_be_its_own_parent() -> None:
    assert rejected(when(given(), g.CreateThingGroup(NAME, "x", NAME)), "InvalidRequest")


def test_a_child_group_asks_its_parent_to_take_it_in_and_the_parent_answers_if_missing() -> None:
    command = g.CreateThingGroup("c", "gid-c", "p")
    decision = when(given(name="c"), command)
    assert decision == Decision(sends=(Send("group/p", g.AdoptChildGroup("p", asdict(command)), True),))
    missing = when(given(name="p"), g.AdoptChildGroup("p", asdict(command)))
    assert rejected(missing, "ResourceNotFound").message == "Parent thing group p does not exist"


def test_the_parent_takes_the_child_in_and_sends_it_its_ancestors_and_the_continuous_jobs_to_follow() -> None:
    command = g.CreateThingGroup("c", "gid-c", "p")
    parent = given(created("p", "root", ("root",), ("cont",)), name="p")
    decision = when(parent, g.AdoptChildGroup("p", asdict(command)))
    place = g.PlaceChildGroup("c", asdict(command), ["root", "p"], ["cont"])
    assert decision == Decision(events=(g.ChildGroupAdded("p", "c"),), sends=(Send("group/c", place, True),))
    placed = when(given(name="c"), place)
    assert placed == Decision(
        reply=g.ThingGroupReply("c", "gid-c"),
        events=(g.ThingGroupCreated("c", "gid-c", "p", None, {}, NOW, ["root", "p"], ["cont"]),),
    )


def test_a_child_created_meanwhile_under_another_parent_is_dropped_by_the_one_that_took_it_in() -> None:
    command = g.CreateThingGroup("c", "gid-c", "p")
    elsewhere = given(created("c", "q", ("q",)), name="c")
    decision = when(elsewhere, g.PlaceChildGroup("c", asdict(command), ["p"], []))
    assert rejected(decision, "ResourceAlreadyExists")
    assert decision.sends == (Send("group/p", g.DropChildGroup("p", "c")),)


# --- membership -------------------------------------------------------------------------------


def test_add_a_thing_goes_to_the_thing_with_the_groups_ancestors_and_the_thing_answers() -> None:
    state = given(created(NAME, "root", ("root",)))
    assert when(state, g.AddThingToThingGroup("t1", NAME)) == Decision(
        sends=(Send("thing/t1", JoinGroup("t1", NAME, ["root"]), True),)
    )
    assert when(state, g.RemoveThingFromThingGroup("t1", NAME)) == Decision(
        sends=(Send("thing/t1", LeaveGroup("t1", NAME), True),)
    )


@pytest.mark.parametrize("command", [g.AddThingToThingGroup("t1", NAME), g.RemoveThingFromThingGroup("t1", NAME)])
def test_membership_changes_of_a_missing_group_are_not_found(command: Any) -> None:
    assert rejected(when(given(), command), "ResourceNotFound").message == f"Thing group {NAME} does not exist"


def test_a_joined_member_is_kept_and_reaches_the_continuous_jobs_the_group_follows() -> None:
    state = given(created(jobs=("c1", "c2")))
    decision = when(state, MemberJoined(NAME, "t1"))
    assert decision == Decision(
        events=(g.GroupMemberAdded(NAME, "t1"),),
        sends=(
            Send("job/c1", AddThingsToJob("c1", ["t1"], NAME)),
            Send("job/c2", AddThingsToJob("c2", ["t1"], NAME)),
        ),
    )
    assert when(given(created(), g.GroupMemberAdded(NAME, "t1")), MemberJoined(NAME, "t1")) == Decision()


def test_a_thing_that_joined_a_group_being_deleted_leaves_it_again() -> None:
    assert when(given(), MemberJoined(NAME, "t1")) == Decision(
        sends=(Send("thing/t1", LeaveGroup("t1", NAME, group_deleted=True)),)
    )


def test_a_member_that_left_is_dropped() -> None:
    state = given(created(), g.GroupMemberAdded(NAME, "t1"))
    assert when(state, MemberLeft(NAME, "t1")).events == (g.GroupMemberRemoved(NAME, "t1"),)
    assert when(given(created()), MemberLeft(NAME, "t1")) == Decision()


# --- DeleteThingGroup -------------------------------------------------------------------------


def test_delete_a_group_makes_each_member_leave_and_its_parent_drop_it() -> None:
    state = given(created(NAME, "p", ("p",)), g.GroupMemberAdded(NAME, "t1"), g.GroupMemberAdded(NAME, "t2"))
    decision = when(state, g.DeleteThingGroup(NAME))
    assert decision == Decision(
        reply=Done(),
        events=(g.ThingGroupDeleted(NAME),),
        sends=(
            Send("thing/t1", LeaveGroup("t1", NAME, group_deleted=True)),
            Send("thing/t2", LeaveGroup("t2", NAME, group_deleted=True)),
            Send("group/p", g.DropChildGroup("p", NAME)),
        ),
    )
    assert given(*[*_history(state), *decision.events]) == g.initial(g.key_for(NAME)), "the name may be used again"


def _history(state: g.GroupState) -> list[Any]:
    return [created(NAME, "p", ("p",)), *(g.GroupMemberAdded(NAME, m) for m in state.members)]


def test_delete_a_missing_group_succeeds_and_changes_nothing() -> None:
    assert when(given(), g.DeleteThingGroup(NAME)) == Decision(reply=Done())


def test_delete_a_group_with_another_version_is_a_version_conflict() -> None:
    rejection = rejected(when(given(created()), g.DeleteThingGroup(NAME, 2)), "VersionConflict")
    assert rejection.message == f"expectedVersion 2 does not match the current version 1 of thing group {NAME}"


def test_delete_a_group_with_child_groups_is_an_invalid_request() -> None:
    state = given(created(), g.ChildGroupAdded(NAME, "c2"), g.ChildGroupAdded(NAME, "c1"))
    rejection = rejected(when(state, g.DeleteThingGroup(NAME)), "InvalidRequest")
    assert (
        rejection.message == f"Cannot delete thing group {NAME}: it still has child groups (c1, c2); delete them first"
    )
    after = when(state, g.DropChildGroup(NAME, "c1"))
    assert after.events == (g.ChildGroupRemoved(NAME, "c1"),)


# --- a job targeting the group ----------------------------------------------------------------


def test_a_group_streams_its_members_in_bounded_chunks_and_passes_the_job_on_to_its_children() -> None:
    members = [f"t{i:05}" for i in range(TARGETS_CHUNK + 5)]
    state = given(
        created(),
        *(g.GroupMemberAdded(NAME, m) for m in members),
        g.ChildGroupAdded(NAME, "c1"),
        g.ChildGroupAdded(NAME, "c2"),
    )
    decision = when(state, TargetGroup(NAME, "j1", "r1", False, "top/g1"))
    assert decision.events == ()
    streamed = [s.command for s in decision.sends if s.key == "job/j1"]
    assert all(isinstance(c, ReleaseTargets) and c.release == "r1" and c.path == "top/g1" for c in streamed)
    assert [len(c.thing_names) for c in streamed] == [TARGETS_CHUNK, 5]
    assert sorted(name for c in streamed for name in c.thing_names) == members
    assert [(c.last, c.streams) for c in streamed] == [(False, []), (True, ["top/g1/c1", "top/g1/c2"])]
    assert [s for s in decision.sends if s.key != "job/j1"] == [
        Send("group/c1", TargetGroup("c1", "j1", "r1", False, "top/g1/c1")),
        Send("group/c2", TargetGroup("c2", "j1", "r1", False, "top/g1/c2")),
    ]


def test_an_empty_or_missing_group_ends_its_stream_at_once() -> None:
    ended = Send("job/j1", ReleaseTargets("j1", [], "r1", True, NAME, []))
    assert when(given(created()), TargetGroup(NAME, "j1", "r1", False, NAME)).sends == (ended,)
    assert when(given(), TargetGroup(NAME, "j1", "r1", False, NAME)) == Decision(sends=(ended,))


def test_a_continuous_job_is_followed_once_and_forgotten_down_the_hierarchy() -> None:
    state = given(created(), g.ChildGroupAdded(NAME, "c1"))
    followed = when(state, TargetGroup(NAME, "cont", "r1", True, NAME))
    assert followed.events == (g.GroupJobAdded(NAME, "cont"),)
    after = given(created(), g.ChildGroupAdded(NAME, "c1"), *followed.events)
    assert when(after, TargetGroup(NAME, "cont", "r1", True, "p/g1")).events == ()
    forgotten = when(after, ForgetJob(NAME, "cont"))
    assert forgotten == Decision(
        events=(g.GroupJobRemoved(NAME, "cont"),), sends=(Send("group/c1", ForgetJob("c1", "cont")),)
    )


# --- UpdateThingGroup -------------------------------------------------------------------------


def described(description: str | None, attributes: dict[str, str]) -> g.ThingGroupCreated:
    return g.ThingGroupCreated(NAME, f"gid-{NAME}", None, description, attributes, T0)


def test_update_a_groups_description_and_merge_its_attributes() -> None:
    state = given(described("old", {"k": "v", "gone": "x"}))
    command = g.UpdateThingGroup(NAME, "new", {"k": "w", "n": "1", "gone": ""}, merge=True)
    decision = when(state, command)
    assert decision == Decision(
        reply=g.ThingGroupVersionReply(2),
        events=(g.ThingGroupUpdated(NAME, "new", {"k": "w", "n": "1"}),),
    )
    after = given(described("old", {"k": "v", "gone": "x"}), *decision.events)
    assert (after.description, after.attributes, after.version) == ("new", {"k": "w", "n": "1"}, 2)
    assert when(after, g.UpdateThingGroup(NAME)).reply == g.ThingGroupVersionReply(3)


def test_update_a_group_without_merge_replaces_its_attributes_and_keeps_what_is_not_given() -> None:
    state = given(described("d", {"k": "v", "x": "y"}))
    assert when(state, g.UpdateThingGroup(NAME, attributes={"a": "1"})).events == (
        g.ThingGroupUpdated(NAME, "d", {"a": "1"}),
    )
    assert when(state, g.UpdateThingGroup(NAME, description="")).events == (
        g.ThingGroupUpdated(NAME, "", {"k": "v", "x": "y"}),
    )


def test_update_a_group_with_another_version_is_a_version_conflict() -> None:
    state = given(created())
    assert when(state, g.UpdateThingGroup(NAME, "d", expected_version=1)).reply == g.ThingGroupVersionReply(2)
    rejection = rejected(when(state, g.UpdateThingGroup(NAME, "d", expected_version=2)), "VersionConflict")
    assert rejection.message == f"expectedVersion 2 does not match the current version 1 of thing group {NAME}"


def test_update_a_missing_group_is_not_found() -> None:
    rejection = rejected(when(given(), g.UpdateThingGroup(NAME, "d")), "ResourceNotFound")
    assert rejection.message == f"Thing group {NAME} does not exist"


def test_an_updated_group_keeps_its_members_children_and_jobs_and_tells_no_one() -> None:
    state = given(created(jobs=("cont",)), g.GroupMemberAdded(NAME, "t1"), g.ChildGroupAdded(NAME, "c"))
    decision = when(state, g.UpdateThingGroup(NAME, "d", {"a": "1"}))
    assert decision.sends == ()
    (event,) = decision.events
    after = g.evolve(state, event)
    assert (dict(after.members), after.children, after.jobs) == ({"t1": True}, ("c",), ("cont",))


def test_a_group_version_moves_on_with_updates_only_and_delete_checks_it() -> None:
    state = given(created(), g.ThingGroupUpdated(NAME, None, {}), g.GroupMemberAdded(NAME, "t1"))
    assert state.version == 2
    assert rejected(when(state, g.DeleteThingGroup(NAME, 1)), "VersionConflict")
    assert when(state, g.DeleteThingGroup(NAME, 2)).events == (g.ThingGroupDeleted(NAME),)


# --- UpdateThingGroupsForThing as single membership changes -----------------------------------


def add(*names: str) -> list[Any]:
    return [g.AddThingToThingGroup("t1", n) for n in names]


def remove(*names: str) -> list[Any]:
    return [g.RemoveThingFromThingGroup("t1", n) for n in names]


def test_membership_changes_join_first_then_leave() -> None:
    assert g.membership_changes("t1", ["a"], ["b", "c"], ["a"]) == [*add("b", "c"), *remove("a")]


def test_membership_changes_name_each_group_once_and_every_named_group() -> None:
    # Groups the thing seems to be in already (or not in) still get their command: the thing decides.
    assert g.membership_changes("t1", ["a"], ["a", "b", "b"], ["c", "c"]) == [*add("a", "b"), *remove("c")]
    assert g.membership_changes("t1", [], [], []) == []


def test_membership_changes_let_joins_past_the_limit_wait_for_the_removals() -> None:
    full = [f"g{i}" for i in range(g.MAX_GROUPS - 1)]
    changes = g.membership_changes("t1", full, ["x", "y", "g0"], ["g1", "g2"])
    assert changes == [*add("x"), *remove("g1", "g2"), *add("y", "g0")]


def test_membership_changes_past_ten_groups_are_an_invalid_request() -> None:
    full = [f"g{i}" for i in range(g.MAX_GROUPS)]
    with pytest.raises(DomainError) as caught:
        g.membership_changes("t1", full[:-1], ["x", "y"], [])
    assert caught.value.kind == "InvalidRequest"
    assert caught.value.message == (
        "thingGroupsToAdd would put thing t1 in 11 thing groups; a thing belongs to at most 10"
    )
    assert g.membership_changes("t1", full, ["x"], ["g0"]) == [*remove("g0"), *add("x")]


def test_membership_changes_cannot_add_and_remove_one_group() -> None:
    with pytest.raises(DomainError) as caught:
        g.membership_changes("t1", [], ["a", "b", "c"], ["c", "b"])
    assert caught.value.kind == "InvalidRequest"
    assert caught.value.message.startswith("thingGroupsToAdd and thingGroupsToRemove both name b, c")


def test_group_state_round_trips_through_a_dict() -> None:
    state = given(created(NAME, "p", ("p",), ("cont",)), g.GroupMemberAdded(NAME, "t1"), g.ChildGroupAdded(NAME, "c"))
    assert g.GroupState.from_dict(state.to_dict()) == state
    updated = g.evolve(state, g.ThingGroupUpdated(NAME, "d", {"a": "1"}))
    assert g.GroupState.from_dict(updated.to_dict()) == updated


def test_unknown_commands_and_events_are_programming_errors() -> None:
    with pytest.raises(TypeError):
        when(given(), object())
    with pytest.raises(TypeError):
        g.evolve(given(), object())
