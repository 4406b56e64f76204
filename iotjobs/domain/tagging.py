"""Tags on jobs and job templates: the commands, the event, the field rules and the decision every taggable
aggregate shares. The tags of a resource live in the aggregate that owns it (`job/{id}`, `template/{id}`).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from iotjobs.domain.decision import Decision, Done
from iotjobs.domain.errors import DomainError, invalid, not_found

JOB = "job"
TEMPLATE = "jobtemplate"
"""Resource types, spelled as in their ARNs."""

MAX_TAGS = 50
MAX_KEY_CHARS = 128
MAX_VALUE_CHARS = 256
KEY_PATTERN = r"^([\p{L}\p{Z}\p{N}_.:/=+\-@]*)$"
_KEY_PUNCTUATION = frozenset("_.:/=+-@")

# --- commands ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagResource:
    resource_type: str
    resource_id: str
    tags: dict[str, str]


@dataclass(frozen=True)
class UntagResource:
    resource_type: str
    resource_id: str
    tag_keys: list[str]


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagsChanged:
    """The whole tag set of a resource after a change (a snapshot, so folding it is idempotent)."""

    resource_type: str
    resource_id: str
    tags: dict[str, str]


COMMANDS = (TagResource, UntagResource)
EVENTS = (TagsChanged,)

# --- field rules (aws-iot-jobs.md §5.4) -------------------------------------------------------


def _key_char(ch: str) -> bool:
    return ch in _KEY_PUNCTUATION or unicodedata.category(ch)[0] in "LZN"


def check_tag_key(value: Any, member: str = "Key") -> str:
    if not isinstance(value, str):
        raise invalid(f"{member} must be a string")
    if not 1 <= len(value) <= MAX_KEY_CHARS:
        raise invalid(f"{member} must be 1 to {MAX_KEY_CHARS} characters long, got {len(value)}")
    if not all(_key_char(ch) for ch in value):
        raise invalid(f"{member} '{value}' does not match pattern {KEY_PATTERN}")
    return value


def check_tag_value(value: Any, member: str = "Value") -> str:
    if not isinstance(value, str):
        raise invalid(f"{member} must be a string")
    if len(value) > MAX_VALUE_CHARS:
        raise invalid(f"{member} must be at most {MAX_VALUE_CHARS} characters long, got {len(value)}")
    return value


def check_tags(value: Any, member: str = "tags") -> dict[str, str]:
    """A wire TagList (`[{"Key": ..., "Value": ...}]`) as a map; a key given twice keeps its last value."""
    if not isinstance(value, list):
        raise invalid(f"{member} must be a list of {{Key, Value}} objects")
    if len(value) > MAX_TAGS:
        raise invalid(f"{member} may hold at most {MAX_TAGS} tags, got {len(value)}")
    tags: dict[str, str] = {}
    for i, tag in enumerate(value):
        if not isinstance(tag, dict):
            raise invalid(f"{member}[{i}] must be an object with Key and Value")
        if tag.get("Key") is None:
            raise invalid(f"{member}[{i}].Key is required")
        key = check_tag_key(tag["Key"], f"{member}[{i}].Key")
        raw = tag.get("Value")
        tags[key] = "" if raw is None else check_tag_value(raw, f"{member}[{i}].Value")
    return tags


def check_tag_keys(value: Any, member: str = "tagKeys") -> list[str]:
    if not isinstance(value, list):
        raise invalid(f"{member} must be a list of tag keys")
    if len(value) > MAX_TAGS:
        raise invalid(f"{member} may hold at most {MAX_TAGS} keys, got {len(value)}")
    return [check_tag_key(key, f"{member}[{i}]") for i, key in enumerate(value)]


# --- the decision -----------------------------------------------------------------------------


def decide(exists: bool, current: dict[str, str], command: TagResource | UntagResource, what: str) -> Decision:
    """Tag or untag the resource `what` (e.g. "Job j1"), which holds `current` if it `exists`."""
    if not exists:
        return Decision(reply=not_found(f"{what} does not exist").rejection())
    try:
        tags = _after(current, command, what)
    except DomainError as err:
        return Decision(reply=err.rejection())
    events = () if tags == current else (TagsChanged(command.resource_type, command.resource_id, tags),)
    return Decision(reply=Done(), events=events)


def _after(current: dict[str, str], command: TagResource | UntagResource, what: str) -> dict[str, str]:
    match command:
        case TagResource():
            tags = {**current, **command.tags}
            if len(tags) > MAX_TAGS:
                raise invalid(
                    f"{what} would have {len(tags)} tags; a resource may have at most {MAX_TAGS} "
                    f"(it has {len(current)})"
                )
            return tags
        case UntagResource():
            removed = set(command.tag_keys)
            return {key: value for key, value in current.items() if key not in removed}
    raise TypeError(f"not a tagging command: {type(command).__name__}")


def initial_tags(resource_type: str, resource_id: str, tags: dict[str, str] | None) -> tuple[TagsChanged, ...]:
    """The event that gives a new resource the tags its create request carried (none without tags)."""
    return (TagsChanged(resource_type, resource_id, dict(tags)),) if tags else ()
