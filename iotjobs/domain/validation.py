"""Field rules from the service models, applied as full matches with messages naming the member."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

from iotjobs.domain.errors import invalid

JOB_ID = re.compile(r"[a-zA-Z0-9_-]+")
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]+")
DETAILS_KEY = re.compile(r"[a-zA-Z0-9:_-]+")
NAMESPACE_ID = re.compile(r"[a-zA-Z0-9_-]+")

MAX_DOCUMENT_CHARS = 32768
MAX_DESCRIPTION_CHARS = 2028
MAX_STATUS_DETAILS = 10
MAX_DETAILS_KEY = 128
MAX_DETAILS_VALUE = 1024
MAX_TARGETS = 100
MIN_TIMEOUT_MINUTES = 1
MAX_TIMEOUT_MINUTES = 10080
CANCEL_STEP_TIMER = -1


def has_control_chars(text: str) -> bool:
    """True if any character is in Unicode category C (control, format, unassigned, private use)."""
    return any(unicodedata.category(ch).startswith("C") for ch in text)


def check_name(member: str, value: Any, pattern: re.Pattern[str], max_len: int) -> str:
    if not isinstance(value, str):
        raise invalid(f"{member} must be a string")
    if not 1 <= len(value) <= max_len:
        raise invalid(f"{member} must be 1 to {max_len} characters long, got {len(value)}")
    if not pattern.fullmatch(value):
        raise invalid(f"{member} '{value}' does not match pattern {pattern.pattern}")
    return value


def check_job_id(value: Any, member: str = "jobId") -> str:
    return check_name(member, value, JOB_ID, 64)


def check_thing_name(value: Any, member: str = "thingName") -> str:
    return check_name(member, value, THING_NAME, 128)


def check_group_name(value: Any, member: str = "thingGroupName") -> str:
    return check_name(member, value, THING_NAME, 128)


def check_free_text(member: str, value: Any, max_len: int) -> str:
    if not isinstance(value, str):
        raise invalid(f"{member} must be a string")
    if len(value) > max_len:
        raise invalid(f"{member} must be at most {max_len} characters long, got {len(value)}")
    if value and has_control_chars(value):
        raise invalid(f"{member} must not contain control characters")
    return value


def check_status_details(value: Any, member: str = "statusDetails") -> dict[str, str]:
    if not isinstance(value, dict):
        raise invalid(f"{member} must be a map of string to string")
    if len(value) > MAX_STATUS_DETAILS:
        raise invalid(f"{member} may hold at most {MAX_STATUS_DETAILS} entries, got {len(value)}")
    for key, item in value.items():
        if not 1 <= len(key) <= MAX_DETAILS_KEY or not DETAILS_KEY.fullmatch(key):
            raise invalid(
                f"{member} key '{key}' must be 1 to {MAX_DETAILS_KEY} characters matching {DETAILS_KEY.pattern}"
            )
        if not isinstance(item, str):
            raise invalid(f"{member} value for '{key}' must be a string")
        if not 1 <= len(item) <= MAX_DETAILS_VALUE:
            raise invalid(
                f"{member} value for '{key}' must be 1 to {MAX_DETAILS_VALUE} characters long, got {len(item)}"
            )
        if has_control_chars(item):
            raise invalid(f"{member} value for '{key}' must not contain control characters")
    return dict(value)


def check_int(member: str, value: Any) -> int:
    # JSON true/false are ints in Python; a boolean is never a valid number here.
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"{member} must be an integer")
    return value


def check_bool(member: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"{member} must be a boolean")
    return value


def check_timeout_minutes(member: str, value: Any) -> int:
    minutes = check_int(member, value)
    if not MIN_TIMEOUT_MINUTES <= minutes <= MAX_TIMEOUT_MINUTES:
        raise invalid(f"{member} must be between {MIN_TIMEOUT_MINUTES} and {MAX_TIMEOUT_MINUTES}, got {minutes}")
    return minutes


def check_step_timeout(value: Any, member: str = "stepTimeoutInMinutes") -> int:
    minutes = check_int(member, value)
    if minutes != CANCEL_STEP_TIMER and not MIN_TIMEOUT_MINUTES <= minutes <= MAX_TIMEOUT_MINUTES:
        raise invalid(
            f"{member} must be {CANCEL_STEP_TIMER} or between {MIN_TIMEOUT_MINUTES} and "
            f"{MAX_TIMEOUT_MINUTES}, got {minutes}"
        )
    return minutes


def check_document(value: Any, member: str = "document") -> str:
    if not isinstance(value, str):
        raise invalid(f"{member} must be a string holding JSON text")
    if len(value) > MAX_DOCUMENT_CHARS:
        raise invalid(f"{member} must be at most {MAX_DOCUMENT_CHARS} characters long, got {len(value)}")
    try:
        parsed = json.loads(value, parse_constant=_not_json, parse_float=_finite)
    except RecursionError:
        raise invalid(f"{member} nests too deeply to be a JSON document devices can read") from None
    except ValueError as exc:
        raise invalid(f"{member} is not valid JSON: {exc}") from None
    if _depth(parsed) > MAX_DOCUMENT_DEPTH:
        raise invalid(f"{member} nests deeper than {MAX_DOCUMENT_DEPTH} levels")
    if not isinstance(parsed, dict):
        raise invalid(f"{member} must be a JSON object, because devices receive it as one over MQTT")
    return value


MAX_DOCUMENT_DEPTH = 250
"""Deeper than this, the JSON encoders on the way to a device (orjson stops at 254 levels, and a device
message wraps the document in two more) would refuse the document."""


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value (JSON numbers are finite)")


def _finite(text: str) -> float:
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise ValueError(f"the number {text} is out of range for a double")
    return number


def _depth(value: Any) -> int:
    """How deeply arrays and objects nest, iteratively (the parser already bounded it)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest
