"""Behaviour spec of the registry aggregate (`registry`): things, groups, membership, job targets.

Given these past events, when this command, then these events / sends / reply (aws-iot-jobs.md §3.4, §6.9).
"""

from __future__ import annotations

from typing import Any

import pytest

from iotjobs.domain import registry as r
from iotjobs.domain.decision import Context, Decision, Done, Send
from iotjobs.domain.errors import Rejection
from iotjobs.domain.job import CreateJob
from iotjobs.domain.targets import TARGETS_CHUNK, RecordJobTargets, ReleaseTargets
from iotjobs.domain.thing import RegisterThing, RemoveExecutions, UnregisterThing

T0 = 1_700_000_000.0
NOW = T0 + 5
SPEC = {"targets": ["arn:aws:iot:us-east-1:123456789012:thinggroup/g1"], "document": "{}"}


def given(*events: Any) -> r.RegistryState:
    state = r.initial()
    for event in events:
        state = r.evolve(state, event)
    return state


def when(state: r.RegistryState, command: Any, now: float = NOW) -> Decision:
    return r.decide(state, command, Context(now=now))


def thing(name: str, thing_type: str | None = None, attributes: dict[str, str] | None = None) -> r.ThingCreated:
    return r.ThingCreated(name, f"id-{name}", thing_type, dict(attributes or {}))


def group(name: str, parent: str | None = None, description: str | None = None) -> r.ThingGroupCreated:
    return r.ThingGroupCreated(name, f"gid-{name}", parent, description, {}, T0)


def member(thing_name: str, group_name: str) -> r.ThingAddedToThingGroup:
    return r.ThingAddedToThingGroup(thing_name, group_name)


def rejected(decision: Decision, kind: str) -> Rejection:
    assert isinstance(decision.reply, Rejection), decision.reply
    assert decision.reply.kind == kind
    assert (decision.events, decision.sends, decision.effects) == ((), (), ())
    return decision.reply


# --- CreateThing ------------------------------------------------------------------------------


def test_create_a_new_thing_records_it_and_registers_it_with_its_aggregate() -> None:
    decision = when(given(), r.CreateThing("t1", "id-t1", "sensor", {"site": "a"}))
    assert decision == Decision(
        reply=None,
        events=(r.ThingCreated("t1", "id-t1", "sensor", {"site": "a"}),),
        sends=(Send("thing/t1", RegisterThing("t1", "id-t1"), forward_reply=True),),
    )
    record = given(*decision.events).things["t1"]
    assert record == r.ThingRecord("id-t1", "sensor", {"site": "a"}, version=1, groups=())


def test_create_an_identical_thing_again_forwards_with_the_existing_id() -> None:
    state = given(thing("t1", "sensor", {"site": "a"}))
    decision = when(state, r.CreateThing("t1", "id-new", "sensor", {"site": "a"}))
    assert decision == Decision(sends=(Send("thing/t1", RegisterThing("t1", "id-t1"), forward_reply=True),))


@pytest.mark.parametrize(
    "command",
    [
        r.CreateThing("t1", "id-new", "other-type", {"site": "a"}),
        r.CreateThing("t1", "id-new", None, {"site": "a"}),
        r.CreateThing("t1", "id-new", "sensor", {"site": "b"}),
        r.CreateThing("t1", "id-new", "sensor", {}),
    ],
    ids=["other type", "no type", "other attribute", "no attributes"],
)
def test_create_a_thing_with_a_different_configuration_already_exists(command: r.CreateThing) -> None:
    state = given(thing("t1", "sensor", {"site": "a"}))
    rejection = rejected(when(state, command), "ResourceAlreadyExists")
    assert rejection.detail == {"resourceId": "id-t1"}
    assert rejection.message == "Thing t1 already exists with a different configuration"


# --- CreateThingGroup -------------------------------------------------------------------------


def test_create_a_root_group() -> None:
    decision = when(given(), r.CreateThingGroup("g1", "gid-g1", description="fleet"))
    assert decision == Decision(
        reply=r.ThingGroupReply("g1", "gid-g1"),
        events=(r.ThingGroupCreated("g1", "gid-g1", None, "fleet", {}, NOW),),
    )


def test_create_a_child_group_of_an_existing_parent() -> None:
    decision = when(given(group("g1")), r.CreateThingGroup("g2", "gid-g2", parent_group_name="g1"))
    assert decision.events == (r.ThingGroupCreated("g2", "gid-g2", "g1", None, {}, NOW),)
    assert decision.reply == r.ThingGroupReply("g2", "gid-g2")


def test_create_a_group_under_a_missing_parent_is_not_found() -> None:
    rejection = rejected(
        when(given(), r.CreateThingGroup("g2", "gid-g2", parent_group_name="nope")), "ResourceNotFound"
    )
    assert rejection.message == "Parent thing group nope does not exist"


def test_create_an_identical_group_again_returns_the_same_id() -> None:
    state = given(group("g2", parent="g1", description="d"))
    assert when(state, r.CreateThingGroup("g2", "gid-other", "g1", "d")) == Decision(
        reply=r.ThingGroupReply("g2", "gid-g2")
    )


def test_create_a_group_with_a_different_configuration_already_exists() -> None:
    state = given(group("g1"), group("g2", parent="g1", description="d"))
    for command in (
        r.CreateThingGroup("g2", "x", None, "d"),
        r.CreateThingGroup("g2", "x", "g1", "other"),
        r.CreateThingGroup("g2", "x", "g1", "d", {"a": "b"}),
    ):
        assert rejected(when(state, command), "ResourceAlreadyExists").detail == {"resourceId": "gid-g2"}


# --- AddThingToThingGroup ---------------------------------------------------------------------


def test_add_a_thing_to_a_group() -> None:
    state = given(thing("t1"), group("g1"))
    decision = when(state, r.AddThingToThingGroup("t1", "g1"))
    assert decision == Decision(reply=r.Done(), events=(r.ThingAddedToThingGroup("t1", "g1"),))
    record = given(thing("t1"), group("g1"), *decision.events).things["t1"]
    assert (record.groups, record.version) == (("g1",), 2)


def test_add_a_missing_thing_or_to_a_missing_group_is_not_found() -> None:
    state = given(thing("t1"), group("g1"))
    assert rejected(when(state, r.AddThingToThingGroup("t9", "g1")), "ResourceNotFound").message == (
        "Thing t9 does not exist"
    )
    assert rejected(when(state, r.AddThingToThingGroup("t1", "g9")), "ResourceNotFound").message == (
        "Thing group g9 does not exist"
    )


def test_add_a_thing_to_a_group_it_already_belongs_to_changes_nothing() -> None:
    state = given(thing("t1"), group("g1"), member("t1", "g1"))
    assert when(state, r.AddThingToThingGroup("t1", "g1")) == Decision(reply=r.Done())


def test_a_thing_belongs_to_at_most_ten_groups() -> None:
    groups = [group(f"g{i:02}") for i in range(11)]
    tenth = given(thing("t1"), *groups, *[member("t1", f"g{i:02}") for i in range(9)])
    assert when(tenth, r.AddThingToThingGroup("t1", "g09")).events == (r.ThingAddedToThingGroup("t1", "g09"),)

    full = given(thing("t1"), *groups, *[member("t1", f"g{i:02}") for i in range(10)])
    rejection = rejected(when(full, r.AddThingToThingGroup("t1", "g10")), "InvalidRequest")
    assert rejection.message == "Thing t1 already belongs to 10 thing groups, the most allowed"
    # Re-adding one of its ten groups is still a no-op, not a limit error.
    assert when(full, r.AddThingToThingGroup("t1", "g03")) == Decision(reply=r.Done())


# --- ResolveJobTargets ------------------------------------------------------------------------


def resolve(things: list[str], groups: list[str]) -> r.ResolveJobTargets:
    return r.ResolveJobTargets("job1", SPEC, things, groups)


def create_job(things: list[str]) -> Decision:
    return Decision(sends=(Send("job/job1", CreateJob("job1", SPEC, things), forward_reply=True),))


FLEET = (
    thing("a"),
    thing("b"),
    thing("c"),
    thing("d"),
    thing("e"),
    group("root"),
    group("child", parent="root"),
    group("grandchild", parent="child"),
    group("other"),
    member("e", "root"),
    member("c", "grandchild"),
    member("b", "child"),
    member("d", "other"),
    member("c", "other"),
)


def test_resolve_things_forwards_create_job() -> None:
    assert when(given(*FLEET), resolve(["d", "a"], [])) == create_job(["d", "a"])


def test_resolve_a_group_includes_members_of_descendant_groups_by_name() -> None:
    assert when(given(*FLEET), resolve([], ["root"])) == create_job(["b", "c", "e"])
    assert when(given(*FLEET), resolve([], ["child"])) == create_job(["b", "c"])
    assert when(given(*FLEET), resolve([], ["grandchild"])) == create_job(["c"])


def test_resolve_lists_thing_targets_first_then_group_members_each_once() -> None:
    decision = when(given(*FLEET), resolve(["e", "a", "e"], ["other", "root"]))
    assert decision == create_job(["e", "a", "c", "d", "b"])


def test_resolve_an_empty_group_gives_no_things() -> None:
    assert when(given(group("g1")), resolve([], ["g1"])) == create_job([])


def test_resolve_a_missing_thing_or_group_is_not_found() -> None:
    state = given(*FLEET)
    assert rejected(when(state, resolve(["a", "zz"], ["root"])), "ResourceNotFound").message == (
        "Thing zz does not exist"
    )
    assert rejected(when(state, resolve(["a"], ["root", "nope"])), "ResourceNotFound").message == (
        "Thing group nope does not exist"
    )


def test_registry_state_round_trips_through_a_dict() -> None:
    state = given(*FLEET)
    assert r.RegistryState.from_dict(state.to_dict()) == state


def test_unknown_commands_and_events_are_programming_errors() -> None:
    with pytest.raises(TypeError):
        when(given(), object())
    with pytest.raises(TypeError):
        r.evolve(given(), object())


# --- DeleteThing ------------------------------------------------------------------------------


def test_delete_a_thing_drops_it_and_its_memberships_and_unregisters_it() -> None:
    state = given(thing("t1"), group("g1"), member("t1", "g1"))
    decision = when(state, r.DeleteThing("t1"))
    assert decision == Decision(
        events=(r.ThingDeleted("t1"),),
        sends=(Send("thing/t1", UnregisterThing("t1"), forward_reply=True),),
    )
    after = given(thing("t1"), group("g1"), member("t1", "g1"), *decision.events)
    assert "t1" not in after.things
    assert after.members("g1") == []


def test_delete_a_missing_thing_succeeds_and_changes_nothing() -> None:
    assert when(given(), r.DeleteThing("t1")) == Decision(reply=Done())
    assert when(given(), r.DeleteThing("t1", expected_version=7)) == Decision(reply=Done())


def test_delete_a_thing_with_its_current_version() -> None:
    state = given(thing("t1"), group("g1"), member("t1", "g1"))
    assert when(state, r.DeleteThing("t1", expected_version=2)).events == (r.ThingDeleted("t1"),)


def test_delete_a_thing_with_another_version_is_a_version_conflict() -> None:
    state = given(thing("t1"), group("g1"), member("t1", "g1"))
    rejection = rejected(when(state, r.DeleteThing("t1", expected_version=1)), "VersionConflict")
    assert rejection.message == "expectedVersion 1 does not match the current version 2 of thing t1"


def test_a_deleted_thing_can_be_created_again_with_a_new_id() -> None:
    state = given(thing("t1"), r.ThingDeleted("t1"))
    decision = when(state, r.CreateThing("t1", "id-new"))
    assert decision.events == (r.ThingCreated("t1", "id-new", None, {}),)
    assert decision.sends == (Send("thing/t1", RegisterThing("t1", "id-new"), forward_reply=True),)


# --- job targets the registry keeps (§6.9) ----------------------------------------------------


def targets_of(job_id: str, things: list[str], groups: list[str]) -> r.JobTargetsRecorded:
    return r.JobTargetsRecorded(job_id, things, groups)


def removes(thing_name: str, *job_ids: str) -> Send:
    return Send(f"thing/{thing_name}", RemoveExecutions(list(job_ids)))


def test_a_new_job_with_group_targets_is_recorded() -> None:
    state = given(*FLEET)
    decision = when(state, RecordJobTargets("job1", ["a"], ["root"], ["a", "b", "c", "e"]))
    assert decision == Decision(events=(targets_of("job1", ["a"], ["root"]),))
    assert given(*FLEET, *decision.events).jobs == {"job1": r.JobTargets(("a",), ("root",))}


def test_the_same_targets_again_record_nothing() -> None:
    state = given(*FLEET, targets_of("job1", [], ["root"]))
    assert when(state, RecordJobTargets("job1", [], ["root"], ["b", "c", "e"])) == Decision()


def test_a_job_without_group_targets_leaves_no_record() -> None:
    assert when(given(*FLEET), RecordJobTargets("job1", ["a"], [], ["a"])) == Decision()


def test_a_job_id_used_again_replaces_the_old_record() -> None:
    # DeleteJob lets a job id be used again; the new job's targets are the ones that count.
    state = given(*FLEET, targets_of("job1", [], ["root"]))
    assert when(state, RecordJobTargets("job1", ["a"], [], ["a"])).events == (targets_of("job1", ["a"], []),)
    assert given(*FLEET, targets_of("job1", [], ["root"]), targets_of("job1", ["a"], [])).jobs == {}
    assert when(state, RecordJobTargets("job1", [], ["other"], ["c", "d"])).events == (
        targets_of("job1", [], ["other"]),
    )


def test_a_released_thing_that_left_the_targets_meanwhile_loses_its_execution() -> None:
    # ResolveJobTargets saw b and c in root; by the time the job exists, b left and c was deleted.
    state = given(*FLEET, r.ThingRemovedFromThingGroup("b", "child"), r.ThingDeleted("c"))
    decision = when(state, RecordJobTargets("job1", [], ["root"], ["b", "c", "e"]))
    assert decision.events == (targets_of("job1", [], ["root"]),)
    assert decision.sends == (removes("b", "job1"), removes("c", "job1"))


def test_resolving_targets_records_nothing_so_a_duplicate_create_job_cannot_touch_the_record() -> None:
    # Only the job aggregate, once the job exists, sends RecordJobTargets; a duplicate is refused there.
    state = given(*FLEET, targets_of("job1", [], ["root"]))
    decision = when(state, resolve(["d"], ["other"]))
    assert decision.events == ()
    assert given(*FLEET, targets_of("job1", [], ["root"]), *decision.events).jobs["job1"].group_names == ("root",)


# --- RemoveThingFromThingGroup ----------------------------------------------------------------


def test_remove_a_thing_from_a_group() -> None:
    state = given(thing("t1"), group("g1"), group("g2"), member("t1", "g1"), member("t1", "g2"))
    decision = when(state, r.RemoveThingFromThingGroup("t1", "g1"))
    assert decision == Decision(reply=Done(), events=(r.ThingRemovedFromThingGroup("t1", "g1"),))
    record = given(thing("t1"), group("g1"), group("g2"), member("t1", "g1"), member("t1", "g2"), *decision.events)
    assert (record.things["t1"].groups, record.things["t1"].version) == (("g2",), 4)


def test_remove_a_thing_that_is_not_a_member_changes_nothing() -> None:
    assert when(given(thing("t1"), group("g1")), r.RemoveThingFromThingGroup("t1", "g1")) == Decision(reply=Done())


def test_remove_a_missing_thing_or_from_a_missing_group_is_not_found() -> None:
    state = given(thing("t1"), group("g1"))
    assert rejected(when(state, r.RemoveThingFromThingGroup("t9", "g1")), "ResourceNotFound").message == (
        "Thing t9 does not exist"
    )
    assert rejected(when(state, r.RemoveThingFromThingGroup("t1", "g9")), "ResourceNotFound").message == (
        "Thing group g9 does not exist"
    )


def test_leaving_the_target_group_removes_the_things_execution_of_that_job() -> None:
    state = given(*FLEET, targets_of("job1", [], ["root"]), targets_of("job2", [], ["other"]))
    decision = when(state, r.RemoveThingFromThingGroup("e", "root"))
    assert decision.sends == (removes("e", "job1"),)


def test_leaving_a_descendant_of_the_target_group_removes_it_too() -> None:
    state = given(*FLEET, targets_of("job1", [], ["root"]), targets_of("job2", [], ["child"]))
    assert when(state, r.RemoveThingFromThingGroup("c", "grandchild")).sends == (removes("c", "job1", "job2"),)


def test_a_thing_still_reached_through_another_target_keeps_its_execution() -> None:
    state = given(
        *FLEET,
        member("c", "root"),
        targets_of("by-two-groups", [], ["child", "other"]),
        targets_of("by-ancestor", [], ["root"]),
        targets_of("by-name", ["c"], ["grandchild"]),
        targets_of("by-group", [], ["grandchild"]),
    )
    decision = when(state, r.RemoveThingFromThingGroup("c", "grandchild"))
    # child no longer reaches c; other still does. root reaches c directly. "by-name" names c itself.
    assert decision.sends == (removes("c", "by-group"),)


def test_leaving_a_group_no_job_targets_removes_nothing() -> None:
    state = given(*FLEET, targets_of("job1", [], ["root"]))
    assert when(state, r.RemoveThingFromThingGroup("d", "other")).sends == ()


# --- DeleteThingGroup -------------------------------------------------------------------------


def test_delete_a_group_drops_it_and_its_memberships() -> None:
    state = given(*FLEET)
    decision = when(state, r.DeleteThingGroup("other"))
    assert decision == Decision(reply=Done(), events=(r.ThingGroupDeleted("other"),))
    after = given(*FLEET, *decision.events)
    assert "other" not in after.groups
    assert (after.things["c"].groups, after.things["d"].groups) == (("grandchild",), ())
    assert after.things["d"].version == state.things["d"].version


def test_delete_a_missing_group_succeeds_and_changes_nothing() -> None:
    assert when(given(), r.DeleteThingGroup("g1")) == Decision(reply=Done())
    assert when(given(), r.DeleteThingGroup("g1", expected_version=3)) == Decision(reply=Done())


def test_delete_a_group_with_another_version_is_a_version_conflict() -> None:
    rejection = rejected(when(given(group("g1")), r.DeleteThingGroup("g1", expected_version=2)), "VersionConflict")
    assert rejection.message == "expectedVersion 2 does not match the current version 1 of thing group g1"
    assert when(given(group("g1")), r.DeleteThingGroup("g1", expected_version=1)).events == (r.ThingGroupDeleted("g1"),)


def test_delete_a_group_with_child_groups_is_an_invalid_request() -> None:
    rejection = rejected(when(given(*FLEET), r.DeleteThingGroup("root")), "InvalidRequest")
    assert rejection.message == "Cannot delete thing group root: it still has child groups (child); delete them first"


def test_delete_a_target_group_removes_its_members_executions() -> None:
    state = given(*FLEET, targets_of("job1", [], ["other"]), targets_of("job2", [], ["root"]))
    decision = when(state, r.DeleteThingGroup("other"))
    # c stays in root's family through grandchild, but job1 reached it only through other.
    assert decision.sends == (removes("c", "job1"), removes("d", "job1"))


def test_a_group_can_be_created_again_after_its_deletion() -> None:
    state = given(group("g1"), r.ThingGroupDeleted("g1"))
    assert when(state, r.CreateThingGroup("g1", "gid-new")).events == (
        r.ThingGroupCreated("g1", "gid-new", None, None, {}, NOW),
    )


def test_registry_state_with_job_targets_round_trips_through_a_dict() -> None:
    state = given(*FLEET, targets_of("job1", ["a"], ["root", "other"]))
    assert r.RegistryState.from_dict(state.to_dict()) == state


def test_a_job_on_a_large_group_gets_its_things_in_chunks_after_its_create_job() -> None:
    names = [f"t{i:04d}" for i in range(2500)]
    state = given(group("g1"), *(thing(n) for n in names), *(r.ThingAddedToThingGroup(n, "g1") for n in names))
    decision = when(state, r.ResolveJobTargets("j1", SPEC, [], ["g1"]))
    create, *chunks = [send.command for send in decision.sends]
    assert isinstance(create, CreateJob) and len(create.things) == TARGETS_CHUNK and create.release is not None
    assert [type(c) for c in chunks] == [ReleaseTargets, ReleaseTargets]
    assert [c.last for c in chunks] == [False, True] and {c.release for c in chunks} == {create.release}
    assert create.things + [n for c in chunks for n in c.thing_names] == names
    assert decision.sends[0].forward_reply and not any(s.forward_reply for s in decision.sends[1:])
