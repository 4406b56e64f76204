"""Field rules from the service models (aws-iot-jobs.md §2.6, §5.4): full-match patterns and limits."""

from __future__ import annotations

import json
from typing import Any

import pytest

from iotjobs.domain import validation as v
from iotjobs.domain.errors import DomainError, ErrorKind


def refused(call: Any, *args: Any) -> str:
    """Assert the call raises InvalidRequest and return its message."""
    with pytest.raises(DomainError) as caught:
        call(*args)
    assert caught.value.kind == ErrorKind.INVALID_REQUEST
    assert caught.value.rejection().kind == "InvalidRequest"
    assert caught.value.detail == {}
    return caught.value.message


def document_of_length(n: int) -> str:
    """A JSON object document exactly n characters long."""
    text = '{"a":"' + "x" * (n - 8) + '"}'
    assert len(text) == n
    return text


# --- check_document ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "document",
    ['{"operation":"install"}', "{}", ' { "a" : [1, 2, {"b": null}] } ', document_of_length(32768)],
)
def test_a_json_object_document_up_to_32768_characters_is_returned_unchanged(document: str) -> None:
    assert v.check_document(document) == document


def test_a_document_over_32768_characters_is_refused() -> None:
    assert refused(v.check_document, document_of_length(32769)) == (
        "document must be at most 32768 characters long, got 32769"
    )


def test_the_length_limit_counts_characters_not_bytes() -> None:
    document = '{"a":"' + "é" * 32760 + '"}'
    assert len(document) == 32768 and len(document.encode()) > 32768
    assert v.check_document(document) == document


@pytest.mark.parametrize("document", ["", "{", "not json", "{'a': 1}", '{"a":1,}', "{} {}"])
def test_a_document_that_is_not_json_is_refused(document: str) -> None:
    assert refused(v.check_document, document).startswith("document is not valid JSON: ")


@pytest.mark.parametrize("document", ["[]", "[{}]", '"text"', "1", "null", "true"])
def test_a_document_that_is_not_a_json_object_is_refused(document: str) -> None:
    assert refused(v.check_document, document) == (
        "document must be a JSON object, because devices receive it as one over MQTT"
    )


@pytest.mark.parametrize("document", [None, {"a": 1}, b"{}", 5])
def test_a_document_that_is_not_a_string_is_refused(document: Any) -> None:
    assert refused(v.check_document, document) == "document must be a string holding JSON text"


def test_document_messages_name_the_member() -> None:
    assert refused(v.check_document, "[]", "jobDocument").startswith("jobDocument must be a JSON object")


# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize("job_id", ["a", "J-1_x", "0123456789", "j" * 64])
def test_good_job_ids(job_id: str) -> None:
    assert v.check_job_id(job_id) == job_id


@pytest.mark.parametrize(
    ("job_id", "message"),
    [
        ("", "jobId must be 1 to 64 characters long, got 0"),
        ("j" * 65, "jobId must be 1 to 64 characters long, got 65"),
        ("a:b", "jobId 'a:b' does not match pattern [a-zA-Z0-9_-]+"),
        ("a b", "jobId 'a b' does not match pattern [a-zA-Z0-9_-]+"),
        ("$next", "jobId '$next' does not match pattern [a-zA-Z0-9_-]+"),
        ("jöb", "jobId 'jöb' does not match pattern [a-zA-Z0-9_-]+"),
        ("abc\n", "jobId 'abc\n' does not match pattern [a-zA-Z0-9_-]+"),
        (5, "jobId must be a string"),
        (None, "jobId must be a string"),
    ],
)
def test_bad_job_ids(job_id: Any, message: str) -> None:
    assert refused(v.check_job_id, job_id) == message


def test_job_id_messages_name_the_member() -> None:
    assert refused(v.check_job_id, "a b", "templateId") == "templateId 'a b' does not match pattern [a-zA-Z0-9_-]+"


@pytest.mark.parametrize("name", ["t", "thing:1", "a-b_c:D9", "t" * 128])
def test_good_thing_and_group_names(name: str) -> None:
    assert v.check_thing_name(name) == name
    assert v.check_group_name(name) == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "thingName must be 1 to 128 characters long, got 0"),
        ("t" * 129, "thingName must be 1 to 128 characters long, got 129"),
        ("a b", "thingName 'a b' does not match pattern [a-zA-Z0-9:_-]+"),
        ("a/b", "thingName 'a/b' does not match pattern [a-zA-Z0-9:_-]+"),
        ("a+", "thingName 'a+' does not match pattern [a-zA-Z0-9:_-]+"),
        ("#", "thingName '#' does not match pattern [a-zA-Z0-9:_-]+"),
        ("t1\n", "thingName 't1\n' does not match pattern [a-zA-Z0-9:_-]+"),
        (["t1"], "thingName must be a string"),
    ],
)
def test_bad_thing_names(name: Any, message: str) -> None:
    assert refused(v.check_thing_name, name) == message
    assert refused(v.check_group_name, name) == message.replace("thingName", "thingGroupName")


# --- free text --------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["", "plain", "café ✓ 日本", "tab-free, punctuation: !@#$%^&*()", "x" * 2028])
def test_free_text_allows_any_printable_text_up_to_the_limit(text: str) -> None:
    assert v.check_free_text("description", text, 2028) == text


@pytest.mark.parametrize(
    "text",
    ["line\nbreak", "tab\there", "nul\x00", "del\x7f", "c1\x85", "zero\u200bwidth", "bom\ufeff", "private\ue000"],
    ids=["LF", "TAB", "NUL", "DEL", "C1", "ZWSP", "BOM", "private use"],
)
def test_free_text_refuses_unicode_category_c(text: str) -> None:
    assert refused(v.check_free_text, "description", text, 2028) == "description must not contain control characters"
    assert v.has_control_chars(text)


def test_free_text_over_the_limit_is_refused() -> None:
    assert refused(v.check_free_text, "description", "x" * 2029, 2028) == (
        "description must be at most 2028 characters long, got 2029"
    )


def test_free_text_must_be_a_string() -> None:
    assert refused(v.check_free_text, "comment", 5, 10) == "comment must be a string"


def test_has_control_chars_is_false_for_printable_text() -> None:
    assert not v.has_control_chars("Ünïcödé text, with spaces — and symbols ✓")
    assert not v.has_control_chars("")


# --- statusDetails, numbers, booleans ---------------------------------------------------------


def test_status_details_returns_a_copy() -> None:
    details = {"step": "1"}
    checked = v.check_status_details(details)
    assert checked == details and checked is not details


@pytest.mark.parametrize(
    ("details", "message"),
    [
        ("x", "statusDetails must be a map of string to string"),
        ({f"k{i}": "v" for i in range(11)}, "statusDetails may hold at most 10 entries, got 11"),
        ({"a b": "v"}, "statusDetails key 'a b' must be 1 to 128 characters matching [a-zA-Z0-9:_-]+"),
        ({"k": 1}, "statusDetails value for 'k' must be a string"),
        ({"k": ""}, "statusDetails value for 'k' must be 1 to 1024 characters long, got 0"),
        ({"k": "v" * 1025}, "statusDetails value for 'k' must be 1 to 1024 characters long, got 1025"),
        ({"k": "a\rb"}, "statusDetails value for 'k' must not contain control characters"),
    ],
)
def test_status_details_messages(details: Any, message: str) -> None:
    assert refused(v.check_status_details, details) == message


@pytest.mark.parametrize("value", [True, False, 1.0, "1", None])
def test_check_int_refuses_non_integers_including_booleans(value: Any) -> None:
    assert refused(v.check_int, "expectedVersion", value) == "expectedVersion must be an integer"


def test_check_int_and_bool_accept_their_types() -> None:
    assert v.check_int("n", 0) == 0
    assert v.check_bool("b", False) is False
    assert refused(v.check_bool, "b", 0) == "b must be a boolean"


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (10080, True), (10081, False), (-1, False)])
def test_timeout_minutes_range(value: int, ok: bool) -> None:
    if ok:
        assert v.check_timeout_minutes("inProgressTimeoutInMinutes", value) == value
    else:
        assert refused(v.check_timeout_minutes, "inProgressTimeoutInMinutes", value) == (
            f"inProgressTimeoutInMinutes must be between 1 and 10080, got {value}"
        )


@pytest.mark.parametrize(
    ("value", "ok"), [(-2, False), (-1, True), (0, False), (1, True), (10080, True), (10081, False)]
)
def test_step_timeout_range(value: int, ok: bool) -> None:
    if ok:
        assert v.check_step_timeout(value) == value
    else:
        assert refused(v.check_step_timeout, value) == (
            f"stepTimeoutInMinutes must be -1 or between 1 and 10080, got {value}"
        )


def test_limits_match_the_reference() -> None:
    assert (v.MAX_DOCUMENT_CHARS, v.MAX_STATUS_DETAILS, v.MAX_DETAILS_KEY, v.MAX_DETAILS_VALUE) == (
        32768,
        10,
        128,
        1024,
    )
    assert (v.MIN_TIMEOUT_MINUTES, v.MAX_TIMEOUT_MINUTES, v.CANCEL_STEP_TIMER) == (1, 10080, -1)
    assert json.loads(document_of_length(40)) == {"a": "x" * 32}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ('{"a": NaN}', "NaN is not a JSON value"),
        ('{"a": -Infinity}', "-Infinity is not a JSON value"),
        ('{"a": 1E400}', "1E400 is out of range"),
        ('{"a":' * 251 + "1" + "}" * 251, "deeper than 250 levels"),
        ('{"a":' * 2000 + "1" + "}" * 2000, "nests too deeply"),
    ],
)
def test_documents_devices_could_not_receive_are_refused(document: str, problem: str) -> None:
    with pytest.raises(DomainError, match=problem) as refused:
        v.check_document(document)
    assert refused.value.kind == ErrorKind.INVALID_REQUEST


def test_a_document_nested_250_levels_deep_is_accepted() -> None:
    document = '{"a":' * 250 + "1" + "}" * 250
    assert v.check_document(document) == document
