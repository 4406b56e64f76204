"""Behaviour spec of the registry aggregate (`registry`): things, groups, membership, job targets.

Given these past events, when this command, then these events / sends / reply (aws-iot-jobs.md §3.4, §6.9).
"""

from __future__ import annotations

from typing import Any

import pytest

from iotjobs.domain import registry as r
from iotjobs.domain.decision import Context, Decision, Send
from iotjobs.domain.errors import Rejection
from iotjobs.domain.job import CreateJob
from iotjobs.domain.thing import RegisterThing

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
