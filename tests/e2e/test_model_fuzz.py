"""Every served control-plane operation, fed malformed input derived from the service model.

A generator walks each served operation's input shape in iotjobs/wire/models/iot.json (path labels,
query, body, recursively into structures, list members and map keys and values) and derives malformed
values from the constraints: too long, too short, off-pattern, off-enum, out of range, the wrong JSON
type, a required member left out. Each case mutates exactly one member of a model-valid baseline that is
built from the model too. botocore serializes every case as a real client would (client-side validation
off) and sends it to the stack's control plane; the answer must be 400 InvalidRequestException with a
message that names the member. Cases botocore cannot put on the wire as such are counted and listed.

The operations are read from services.control.operations.OPERATIONS, so new ones are covered as they land.
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import boto3
import pytest
from botocore import xform_name
from botocore.config import Config
from botocore.exceptions import ClientError
from botocore.serialize import create_serializer

from iotjobs.domain.errors import DomainError
from iotjobs.wire.model import ServiceModel, _pattern
from services.control.operations import OPERATIONS
from tests.support.clients import ACCOUNT, REGION
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

MODEL = ServiceModel.load("iot")
SHAPES: dict[str, Any] = MODEL.shapes
SERVED = [op.name for op in OPERATIONS]

# Candidate characters a pattern may refuse, most ordinary first ("/" and "." are avoided so that a path
# label stays one segment once decoded).
REFUSABLE = [" ", "!", "*", "$", "&", "'", "(", "+", ",", ";", "=", "@", "#", "%", "^", "|", "~", "é", "\u0007"]
GENERIC_CANDIDATES = ["a", "A1", "abc-1", "A", "1", "1.0", "a1", "A_1", "abc"]
# ARN resource types for shape names whose prefix is not the resource type itself.
ARN_ALIASES = {"Target": "thing", "Resource": "job"}
MISSING = object()

# A value of the wrong JSON type for each model type.
WRONG_TYPE: dict[str, Any] = {
    "string": 123,
    "integer": "abc",
    "long": "abc",
    "double": True,  # botocore cannot serialize a string for a double (math.isnan), but sends a boolean
    "float": True,
    "boolean": "yes",
    "structure": ["x"],
    "list": {"x": "y"},
    "map": ["x"],
    "timestamp": {"x": 1},
    "blob": 123,
}


# --- the model --------------------------------------------------------------------------------------------


def _fits(shape: dict[str, Any], text: str) -> bool:
    if len(text) < shape.get("min", 0) or ("max" in shape and len(text) > shape["max"]):
        return False
    if "enum" in shape and text not in shape["enum"]:
        return False
    return "pattern" not in shape or _pattern(shape["pattern"]).fullmatch(text) is not None


def _arn_candidates(shape_name: str) -> list[str]:
    if not shape_name.endswith("Arn"):
        return []
    prefix = shape_name[: -len("Arn")]
    if prefix == "Role":
        return [f"arn:aws:iam::{ACCOUNT}:role/a"]
    kind = ARN_ALIASES.get(prefix, prefix.lower())
    return [f"arn:aws:iot:{REGION}:{ACCOUNT}:{kind}/a"]


def _string_candidates(shape_name: str) -> Iterator[str]:
    shape = SHAPES[shape_name]
    yield from _arn_candidates(shape_name)
    yield from shape.get("enum", [])
    yield from GENERIC_CANDIDATES
    yield from (chr(c) for c in range(ord("b"), ord("z") + 1))
    for base in GENERIC_CANDIDATES:  # long enough for a minimum length
        yield base * (shape.get("min", 1) // len(base) + 1)


def valid_strings(shape_name: str, count: int = 1) -> list[str]:
    """`count` distinct strings the shape accepts (the pattern checked with the server's translation)."""
    found: list[str] = []
    for candidate in _string_candidates(shape_name):
        if _fits(SHAPES[shape_name], candidate) and candidate not in found:
            found.append(candidate)
            if len(found) == count:
                return found
    raise AssertionError(f"the generator cannot derive {count} valid value(s) for shape {shape_name}")


def _number(shape: dict[str, Any], integral: bool) -> float:
    value: float = 1
    if "min" in shape:
        value = max(value, math.ceil(shape["min"]) if integral else shape["min"])
    if "max" in shape:
        value = min(value, math.floor(shape["max"]) if integral else shape["max"])
    return int(value) if integral else float(value)


def valid(shape_name: str) -> Any:
    """A minimal model-valid value: structures carry their required members, lists and maps one entry."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "structure":
        return {m: valid(shape["members"][m]["shape"]) for m in shape["required"]}
    if kind in ("list", "map"):
        size = max(shape.get("min", 0), 1)
        size = min(size, shape.get("max", size))
        if kind == "list":
            return [valid(shape["member"]) for _ in range(size)]
        return {key: valid(shape["value"]) for key in valid_strings(shape["key"], size)}
    if kind == "string":
        return valid_strings(shape_name)[0]
    if kind in ("integer", "long"):
        return _number(shape, integral=True)
    if kind in ("double", "float"):
        return _number(shape, integral=False)
    if kind == "boolean":
        return False
    if kind == "timestamp":
        return 0
    if kind == "blob":
        return b"a"
    raise AssertionError(f"the generator does not know shape type {kind} ({shape_name})")


# --- the generator ----------------------------------------------------------------------------------------

# A step into a value: ("member", python name, wire name), ("item",) for the first list entry, ("key",) for
# the first map key itself and ("value",) for the first map value.
Step = tuple[str, ...]


@dataclass(frozen=True)
class Mutation:
    steps: tuple[Step, ...]
    rule: str
    value: Any  # MISSING: leave the member out


@dataclass
class Case:
    operation: str
    path: str
    rule: str
    params: dict[str, Any]
    location: str  # uri, querystring or body (of the top-level member)
    names: tuple[str, ...]  # the wire names the message must mention
    steps: tuple[Step, ...]
    value: Any
    shape: str  # the mutated member's shape


def _off_pattern(shape: dict[str, Any], base: str) -> str | None:
    """`base` with one character the pattern refuses, the length unchanged (or one more when `base` is
    empty), or None when the pattern accepts every candidate."""
    pattern = _pattern(shape["pattern"])
    for char in REFUSABLE:
        spots = [base + char] if not base else [base[:-1] + char, char + base[1:]]
        for text in spots:
            if _fits({k: v for k, v in shape.items() if k != "pattern"}, text) and not pattern.fullmatch(text):
                return text
    return None


def _too_long(shape_name: str) -> str:
    shape = SHAPES[shape_name]
    size = shape["max"] + 1
    for base in valid_strings(shape_name, 1) + GENERIC_CANDIDATES:
        for text in (base + base[-1] * size, base * (size // len(base) + 1)):
            if "pattern" not in shape or _pattern(shape["pattern"]).fullmatch(text[:size]):
                return text[:size]
    return "a" * size


def scalar_mutations(shape_name: str) -> Iterator[tuple[str, Any]]:
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if kind == "string":
        if "max" in shape:
            yield f"longer than max {shape['max']}", _too_long(shape_name)
        if shape.get("min", 0) > 0:
            yield f"shorter than min {shape['min']}", valid_strings(shape_name)[0][: shape["min"] - 1]
        if "pattern" in shape:
            off = _off_pattern(shape, valid_strings(shape_name)[0])
            if off is not None:
                yield "not matching pattern", off
        if "enum" in shape:
            off_enum = next(c for c in ("NOT_A_VALUE", "not-a-value", "X") if c not in shape["enum"])
            yield "not in enum", off_enum
    elif kind in ("integer", "long", "double", "float"):
        if "min" in shape:
            yield f"below min {shape['min']}", shape["min"] - 1
        if "max" in shape:
            yield f"above max {shape['max']}", shape["max"] + 1
        if kind in ("integer", "long"):
            yield "not a whole number", 1.5
    yield "wrong type", WRONG_TYPE[kind]


def mutations(shape_name: str, steps: tuple[Step, ...], seen: frozenset[str]) -> Iterator[Mutation]:
    """Every malformed variant of a value of `shape_name` at `steps` (and of everything inside it)."""
    shape = SHAPES[shape_name]
    kind = shape["type"]
    if shape_name in seen:  # a recursive shape: its members were covered one level up
        return
    if kind == "structure":
        if steps:
            yield Mutation(steps, "wrong type", WRONG_TYPE[kind])
        for member in shape["required"]:
            spec = shape["members"][member]
            yield Mutation((*steps, ("member", member, spec.get("locationName", member))), "missing required", MISSING)
        for member, spec in shape["members"].items():
            step = ("member", member, spec.get("locationName", member))
            yield from mutations(spec["shape"], (*steps, step), seen | {shape_name})
    elif kind in ("list", "map"):
        if shape.get("min", 0) > 0:
            yield Mutation(steps, f"fewer than min {shape['min']} entries", [] if kind == "list" else {})
        if "max" in shape:
            if kind == "list":
                too_many: Any = [valid(shape["member"]) for _ in range(shape["max"] + 1)]
            else:
                keys = valid_strings(shape["key"], shape["max"] + 1)
                too_many = {key: valid(shape["value"]) for key in keys}
            yield Mutation(steps, f"more than max {shape['max']} entries", too_many)
        yield Mutation(steps, "wrong type", WRONG_TYPE[kind])
        if kind == "list":
            yield from mutations(shape["member"], (*steps, ("item",)), seen | {shape_name})
        else:
            for rule, value in scalar_mutations(shape["key"]):
                yield Mutation((*steps, ("key",)), f"key {rule}", value)
            yield from mutations(shape["value"], (*steps, ("value",)), seen | {shape_name})
    else:
        for rule, value in scalar_mutations(shape_name):
            yield Mutation(steps, rule, value)


def _shape_at(input_shape: str, steps: tuple[Step, ...]) -> str:
    name = input_shape
    for step in steps:
        shape = SHAPES[name]
        if step[0] == "member":
            name = shape["members"][step[1]]["shape"]
        elif step[0] == "item":
            name = shape["member"]
        else:
            name = shape[step[0]]
    return name


def _apply(baseline: dict[str, Any], input_shape: str, mutation: Mutation) -> dict[str, Any]:
    """The baseline with one value replaced (or removed), filling the containers on the way in."""
    root = copy.deepcopy(baseline)
    container: Any = root
    name = input_shape
    for i, step in enumerate(mutation.steps):
        last = i == len(mutation.steps) - 1
        child = _shape_at(name, (step,))
        if step[0] == "member":
            if last:
                if mutation.value is MISSING:
                    container.pop(step[1], None)
                else:
                    container[step[1]] = mutation.value
                return root
            container = container.setdefault(step[1], valid(child))
        elif step[0] == "item":
            if last:
                container[0] = mutation.value
                return root
            container = container[0]
        elif step[0] == "key":
            first = next(iter(container))
            container[mutation.value] = container.pop(first)
            return root
        else:
            first = next(iter(container))
            if last:
                container[first] = mutation.value
                return root
            container = container[first]
        name = child
    return root


def _display(steps: tuple[Step, ...]) -> str:
    out = ""
    for step in steps:
        if step[0] == "member":
            out += ("." if out else "") + step[2]
        elif step[0] == "item":
            out += "[0]"
        else:
            out += "{" + step[0] + "}"
    return out


def baseline(operation: str) -> dict[str, Any]:
    shape = MODEL.operations[operation].get("input")
    return {} if shape is None else valid(shape)


def cases(operation: str) -> list[Case]:
    """Every malformed request the model implies for `operation`."""
    input_shape = MODEL.operations[operation].get("input")
    if input_shape is None:
        return []
    base = baseline(operation)
    members = SHAPES[input_shape]["members"]
    out = []
    for mutation in mutations(input_shape, (), frozenset()):
        top = members[mutation.steps[0][1]]
        out.append(
            Case(
                operation=operation,
                path=_display(mutation.steps),
                rule=mutation.rule,
                params=_apply(base, input_shape, mutation),
                location=top.get("location", "body"),
                names=tuple(step[2] for step in mutation.steps if step[0] == "member"),
                steps=mutation.steps,
                value=mutation.value,
                shape=_shape_at(input_shape, mutation.steps),
            )
        )
    return out


# --- the wire ---------------------------------------------------------------------------------------------


def _same_json(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _literal_of(kind: str, text: str) -> bool:
    """Whether `text` in a path or query is a well-formed literal of the model type `kind`."""
    if kind in ("integer", "long"):
        return re.fullmatch(r"[+-]?[0-9]+", text) is not None
    if kind == "boolean":
        return text in ("true", "false")
    if kind in ("double", "float"):
        try:
            float(text)
        except ValueError:
            return False
        return True
    return True  # strings: any text is one


def _wire_text(case: Case, serialized: dict[str, Any]) -> str:
    """The text botocore put on the wire for the case's top-level path label or query member."""
    wire = case.steps[0][2]
    if case.location == "querystring":
        return str(serialized["query_string"].get(wire))
    template = re.escape(MODEL.operations[case.operation]["uri"].split("?")[0])
    template = re.sub(r"\\\{([^}+]+)\+?\\\}", r"(?P<\1>[^/]*)", template)
    found = re.fullmatch(template, serialized["url_path"].split("?")[0])
    return unquote(found[wire]) if found else serialized["url_path"]


def unsendable(case: Case, serialized: dict[str, Any]) -> str | None:
    """Why the serialized request does not carry the case's malformed value, or None when it does."""
    if case.location in ("uri", "querystring"):
        if case.rule in ("wrong type", "not a whole number"):
            text = _wire_text(case, serialized)
            if _literal_of(SHAPES[case.shape]["type"], str(text)):
                kind = SHAPES[case.shape]["type"]
                return (
                    f"path labels and query values are text: {case.value!r} arrives as '{text}', a well-formed {kind}"
                )
        return None
    raw = serialized.get("body") or b"{}"
    node: Any = json.loads(raw)
    for i, step in enumerate(case.steps):
        last = i == len(case.steps) - 1
        if step[0] == "member":
            if last and case.value is MISSING:
                return None if step[2] not in node else "botocore sent the member anyway"
            if not isinstance(node, dict) or step[2] not in node:
                return f"botocore dropped {_display(case.steps[: i + 1])}"
            node = node[step[2]]
        elif step[0] == "item":
            if not isinstance(node, list) or not node:
                return "botocore sent no list entry"
            node = node[0]
        elif step[0] == "key":
            if any(type(k) is type(case.value) and k == case.value for k in node):
                return None
            return f"JSON object keys are strings: key {case.value!r} arrives as {list(node)!r}"
        else:
            node = next(iter(node.values()))
    if _same_json(node, case.value):
        return None
    return f"botocore serializes {case.value!r} as {json.dumps(node)[:60]}"


@dataclass
class Outcome:
    status: int | None
    code: str | None
    message: str


@pytest.fixture(scope="module")
def iot(stack: Stack) -> Any:
    return boto3.client(
        "iot",
        endpoint_url=stack.control_url,
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="y",
        config=Config(parameter_validation=False, retries={"mode": "standard", "max_attempts": 1}),
    )


def send(iot: Any, operation: str, params: dict[str, Any]) -> Outcome:
    try:
        response = getattr(iot, xform_name(operation))(**params)
    except ClientError as exc:
        error = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return Outcome(status, error.get("Code"), error.get("Message", ""))
    except Exception as exc:  # a client-side failure is a finding too, reported with the case
        return Outcome(None, type(exc).__name__, str(exc))
    return Outcome(response["ResponseMetadata"]["HTTPStatusCode"], None, "")


def _names_member(message: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", message) is not None


# Messages the model check gives about a member it was handed (not about one that is missing).
MODEL_RULE = re.compile(
    r"^(?P<member>[A-Za-z0-9_]+)\S* (must be |must have at |'.*' does not match pattern)", re.DOTALL
)


@pytest.mark.parametrize("operation", SERVED, ids=SERVED)
def test_malformed_input_is_refused_naming_the_member(
    operation: str, iot: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    assert operation in MODEL.operations, f"{operation} is served but not in iotjobs/wire/models/iot.json"
    service_model = iot.meta.service_model
    serializer = create_serializer(service_model.protocol, include_validation=False)
    operation_model = service_model.operation_model(operation)
    failures: list[str] = []
    skipped: dict[str, list[str]] = {}

    # the baseline is model-valid: whatever the handler thinks of it, the model check must let it through
    base = baseline(operation)
    try:
        MODEL.validate_input(operation, base)
    except DomainError as exc:
        failures.append(f"generator: baseline {base} is not model-valid: {exc}")
    got = first = send(iot, operation, base)
    baseline_answer = f"{got.status} {got.code}: {got.message[:100]}" if got.code else f"{got.status}"
    if got.status is None or got.status >= 500:
        failures.append(f"baseline {base}: {got.status} {got.code}: {got.message}")
    elif got.code == "InvalidRequestException":
        refused = MODEL_RULE.match(got.message)
        if refused and refused["member"] in base:
            failures.append(f"baseline {base}: model-valid input refused: 400 {got.code}: {got.message}")

    generated = cases(operation)
    sent = 0
    for case in generated:
        label = f"{case.path} [{case.rule}]"
        try:
            serialized = serializer.serialize_to_request(copy.deepcopy(case.params), operation_model)
        except Exception as exc:
            skipped.setdefault(f"botocore's serializer fails with {type(exc).__name__}", []).append(label)
            continue
        reason = unsendable(case, serialized)
        if reason is not None:
            skipped.setdefault(reason, []).append(label)
            continue
        sent += 1
        got = send(iot, operation, case.params)
        problems = []
        if got.status != 400 or got.code != "InvalidRequestException":
            problems.append(f"got {got.status} {got.code}")
        elif got.message == first.message:
            problems.append("answered exactly as the valid baseline was, so the malformed value went unnoticed")
        missing = [name for name in case.names if not _names_member(got.message, name)]
        if missing:
            problems.append(f"message does not name {', '.join(missing)}")
        if problems:
            shown = repr(case.value)
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            failures.append(f"{label} = {shown}: {'; '.join(problems)}: {got.message[:200]!r}")

    total_skipped = sum(len(v) for v in skipped.values())
    lines = [
        f"{operation}: {len(generated)} cases, {sent} sent, {total_skipped} not sendable by botocore"
        f" (baseline answered {baseline_answer})"
    ]
    lines += [f"    skipped ({reason}): {', '.join(labels)}" for reason, labels in skipped.items()]
    with capsys.disabled():  # the counts and the skipped cases belong in the run's output
        print("\n" + "\n".join(lines))
    assert sent + total_skipped == len(generated)
    if failures:  # every gap of the operation in one message, without the test's source around it
        pytest.fail(f"{operation}: {len(failures)} wrong:\n" + "\n".join(failures), pytrace=False)
