"""Behaviour spec of the job template aggregate (`template/{id}`) and of tagging, which it shares with jobs.

Given these past events, when this command, then these events / reply (aws-iot-jobs.md §3.3, §5.4).
"""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from iotjobs.domain import catalog, tagging
from iotjobs.domain import job as j
from iotjobs.domain import template as tp
from iotjobs.domain.decision import Context, Decision, Done
from iotjobs.domain.errors import DomainError, Rejection

T0 = 1_700_000_000.0
NOW = T0 + 30
TEMPLATE = "tmpl1"
KEY = f"template/{TEMPLATE}"
SPEC = {"description": "reboot all", "document": '{"op":"reboot"}', "timeoutConfig": {"inProgressTimeoutInMinutes": 5}}


def given(*events: Any) -> tp.TemplateState:
    state = tp.initial(KEY)
    for event in events:
        state = tp.evolve(state, event)
    return state


def when(state: tp.TemplateState, command: Any, now: float = NOW) -> Decision:
    return tp.decide(state, command, Context(now=now))


def created(spec: dict[str, Any] | None = None, at: float = T0) -> tp.JobTemplateCreated:
    return tp.JobTemplateCreated(TEMPLATE, dict(spec or SPEC), at)


def tagged(tags: dict[str, str]) -> tagging.TagsChanged:
    return tagging.TagsChanged(tagging.TEMPLATE, TEMPLATE, tags)


def rejected(decision: Decision, kind: str) -> Rejection:
    assert isinstance(decision.reply, Rejection), decision.reply
    assert decision.reply.kind == kind
    assert (decision.events, decision.sends, decision.effects) == ((), (), ())
    return decision.reply


def on_the_wire(message: Any) -> Any:
    """As Kafka carries it: catalogued, JSON, and back."""
    return catalog.from_message(orjson.loads(orjson.dumps(catalog.to_message(message))))


# --- CreateJobTemplate ------------------------------------------------------------------------


def test_create_records_the_spec_as_given_and_answers_with_the_id() -> None:
    decision = when(given(), tp.CreateJobTemplate(TEMPLATE, SPEC))
    assert decision == Decision(reply=tp.JobTemplateCreatedReply(TEMPLATE), events=(created(at=NOW),))
    state = given(*decision.events)
    assert (state.exists, state.spec, state.created_at, state.tags) == (True, SPEC, NOW, {})


def test_create_with_tags_also_records_the_tags() -> None:
    decision = when(given(), tp.CreateJobTemplate(TEMPLATE, SPEC, {"team": "ops", "tier": ""}))
    assert decision.events == (created(at=NOW), tagged({"team": "ops", "tier": ""}))
    assert given(*decision.events).tags == {"team": "ops", "tier": ""}


def test_a_duplicate_id_is_a_conflict_naming_the_resource() -> None:
    reply = rejected(when(given(created()), tp.CreateJobTemplate(TEMPLATE, {"description": "other"})), "Conflict")
    assert reply.detail == {"resourceId": TEMPLATE}
    assert TEMPLATE in reply.message


def test_an_identical_create_is_still_a_conflict() -> None:
    rejected(when(given(created()), tp.CreateJobTemplate(TEMPLATE, SPEC)), "Conflict")


# --- DeleteJobTemplate ------------------------------------------------------------------------


def test_delete_removes_the_template_and_its_tags() -> None:
    state = given(created(), tagged({"a": "1"}))
    decision = when(state, tp.DeleteJobTemplate(TEMPLATE))
    assert decision == Decision(reply=Done(), events=(tp.JobTemplateDeleted(TEMPLATE, NOW),))
    assert given(created(), tagged({"a": "1"}), *decision.events) == tp.initial(KEY)


@pytest.mark.parametrize("history", [(), (created(), tp.JobTemplateDeleted(TEMPLATE, T0 + 1))])
def test_delete_of_a_missing_template_is_not_found(history: tuple[Any, ...]) -> None:
    reply = rejected(when(given(*history), tp.DeleteJobTemplate(TEMPLATE)), "ResourceNotFound")
    assert reply.message == f"Job template {TEMPLATE} does not exist"


def test_an_id_can_be_used_again_after_delete() -> None:
    history = (created(), tagged({"a": "1"}), tp.JobTemplateDeleted(TEMPLATE, T0 + 1))
    second = {"description": "second", "document": "{}"}
    decision = when(given(*history), tp.CreateJobTemplate(TEMPLATE, second))
    assert decision.events == (tp.JobTemplateCreated(TEMPLATE, second, NOW),)
    after = given(*history, *decision.events)
    assert (after.spec, after.created_at, after.tags) == (second, NOW, {})


# --- tags on a template -----------------------------------------------------------------------


def test_tag_merges_and_overwrites_values() -> None:
    state = given(created(), tagged({"a": "1", "b": "2"}))
    decision = when(state, tagging.TagResource(tagging.TEMPLATE, TEMPLATE, {"b": "20", "c": "3"}))
    assert decision == Decision(reply=Done(), events=(tagged({"a": "1", "b": "20", "c": "3"}),))


def test_tag_with_nothing_new_changes_nothing() -> None:
    state = given(created(), tagged({"a": "1"}))
    assert when(state, tagging.TagResource(tagging.TEMPLATE, TEMPLATE, {"a": "1"})) == Decision(reply=Done())
    assert when(state, tagging.TagResource(tagging.TEMPLATE, TEMPLATE, {})) == Decision(reply=Done())


def test_untag_removes_the_named_keys_and_ignores_unknown_ones() -> None:
    state = given(created(), tagged({"a": "1", "b": "2"}))
    decision = when(state, tagging.UntagResource(tagging.TEMPLATE, TEMPLATE, ["a", "zz"]))
    assert decision == Decision(reply=Done(), events=(tagged({"b": "2"}),))
    assert when(state, tagging.UntagResource(tagging.TEMPLATE, TEMPLATE, ["zz"])) == Decision(reply=Done())


def test_a_resource_holds_at_most_fifty_tags() -> None:
    state = given(created(), tagged({f"k{i}": "v" for i in range(45)}))
    reply = rejected(
        when(state, tagging.TagResource(tagging.TEMPLATE, TEMPLATE, {f"n{i}": "v" for i in range(6)})),
        "InvalidRequest",
    )
    assert "51 tags" in reply.message and "50" in reply.message
    fits = when(state, tagging.TagResource(tagging.TEMPLATE, TEMPLATE, {f"n{i}": "v" for i in range(5)}))
    assert len(fits.events[0].tags) == 50


@pytest.mark.parametrize(
    "command",
    [
        tagging.TagResource(tagging.TEMPLATE, TEMPLATE, {"a": "1"}),
        tagging.UntagResource(tagging.TEMPLATE, TEMPLATE, []),
    ],
)
def test_tagging_a_missing_template_is_not_found(command: Any) -> None:
    reply = rejected(when(given(), command), "ResourceNotFound")
    assert reply.message == f"Job template {TEMPLATE} does not exist"


# --- tags on a job (the job aggregate shares the rules) ---------------------------------------


def job_state(*events: Any) -> j.JobState:
    state = j.initial("job/j1")
    for event in events:
        state = j.evolve(state, event)
    return state


JOB_SPEC = {"targets": ["arn:aws:iot:us-east-1:123456789012:thing/t1"], "document": "{}"}


def test_create_job_with_tags_records_them_after_the_job() -> None:
    command = j.CreateJob("j1", {**JOB_SPEC, "tags": {"team": "ops"}}, ["t1"])
    decision = j.decide(job_state(), command, Context(now=NOW))
    assert [type(e) for e in decision.events] == [j.JobCreated, tagging.TagsChanged, j.JobRolledOut]
    assert decision.events[1] == tagging.TagsChanged(tagging.JOB, "j1", {"team": "ops"})
    assert job_state(*decision.events).tags == {"team": "ops"}


def test_create_job_without_tags_emits_no_tag_event() -> None:
    decision = j.decide(job_state(), j.CreateJob("j1", dict(JOB_SPEC), ["t1"]), Context(now=NOW))
    assert [type(e) for e in decision.events] == [j.JobCreated, j.JobRolledOut]


def test_tag_and_untag_a_job() -> None:
    state = job_state(j.JobCreated("j1", dict(JOB_SPEC), ["t1"], T0))
    tag = j.decide(state, tagging.TagResource(tagging.JOB, "j1", {"a": "1"}), Context(now=NOW))
    assert tag == Decision(reply=Done(), events=(tagging.TagsChanged(tagging.JOB, "j1", {"a": "1"}),))
    state = job_state(j.JobCreated("j1", dict(JOB_SPEC), ["t1"], T0), *tag.events)
    untag = j.decide(state, tagging.UntagResource(tagging.JOB, "j1", ["a"]), Context(now=NOW))
    assert untag.events == (tagging.TagsChanged(tagging.JOB, "j1", {}),)
    missing = j.decide(job_state(), tagging.TagResource(tagging.JOB, "j1", {"a": "1"}), Context(now=NOW))
    assert isinstance(missing.reply, Rejection) and missing.reply.message == "Job j1 does not exist"


def test_a_deleted_job_loses_its_tags() -> None:
    state = job_state(
        j.JobCreated("j1", dict(JOB_SPEC), [], T0),
        tagging.TagsChanged(tagging.JOB, "j1", {"a": "1"}),
        j.JobDeleted("j1", T0 + 1),
    )
    assert state.tags == {} and not state.exists


# --- the wire rules for tags ------------------------------------------------------------------


def test_check_tags_turns_the_wire_list_into_a_map() -> None:
    wire = [{"Key": "env", "Value": "prod"}, {"Key": "owner"}, {"Key": "env", "Value": "dev"}]
    assert tagging.check_tags(wire) == {"env": "dev", "owner": ""}


@pytest.mark.parametrize(
    "key",
    ["a", "Ünïcødé", "名前", "with space", "a_b.c:d/e=f+g-h@i", "٣", "k" * 128],
)
def test_tag_keys_the_model_allows(key: str) -> None:
    assert tagging.check_tags([{"Key": key, "Value": "v"}]) == {key: "v"}


@pytest.mark.parametrize(
    ("tags", "needle"),
    [
        ([{"Key": ""}], "tags[0].Key must be 1 to 128"),
        ([{"Key": "k" * 129}], "got 129"),
        ([{"Key": "bad!"}], "does not match pattern"),
        ([{"Key": "tab\tkey"}], "does not match pattern"),
        ([{"Key": "a", "Value": "v" * 257}], "tags[0].Value must be at most 256"),
        ([{"Value": "v"}], "tags[0].Key is required"),
        ([{"Key": 5}], "tags[0].Key must be a string"),
        ([{"Key": f"k{i}"} for i in range(51)], "at most 50 tags, got 51"),
        ({"Key": "a"}, "must be a list"),
        (["a"], "tags[0] must be an object"),
    ],
)
def test_tags_the_model_refuses(tags: Any, needle: str) -> None:
    with pytest.raises(DomainError) as caught:
        tagging.check_tags(tags)
    assert caught.value.kind == "InvalidRequest"
    assert needle in caught.value.message


def test_tag_keys_to_remove_follow_the_key_rules() -> None:
    assert tagging.check_tag_keys(["a", "b"]) == ["a", "b"]
    with pytest.raises(DomainError, match=r"tagKeys\[1\]"):
        tagging.check_tag_keys(["a", "bad!"])
    with pytest.raises(DomainError, match="list"):
        tagging.check_tag_keys("a")


# --- state and messages survive Kafka ---------------------------------------------------------


def test_state_round_trips_through_its_snapshot() -> None:
    state = given(created(), tagged({"a": "1"}))
    stored = orjson.loads(orjson.dumps(catalog.aggregate_for(KEY).to_dict(state)))
    assert catalog.aggregate_for(KEY).from_dict(stored) == state
    assert catalog.aggregate_for(KEY) is catalog.TEMPLATE


@pytest.mark.parametrize(
    "message",
    [
        tp.CreateJobTemplate(TEMPLATE, SPEC, {"a": "1"}),
        tp.DeleteJobTemplate(TEMPLATE),
        created(),
        tp.JobTemplateDeleted(TEMPLATE, T0),
        tp.JobTemplateCreatedReply(TEMPLATE),
        tagging.TagResource(tagging.JOB, "j1", {"a": "1"}),
        tagging.UntagResource(tagging.TEMPLATE, TEMPLATE, ["a"]),
        tagged({"a": "1"}),
    ],
)
def test_messages_round_trip_through_the_catalog(message: Any) -> None:
    assert on_the_wire(message) == message
