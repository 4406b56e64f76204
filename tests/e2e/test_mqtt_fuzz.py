"""Bad MQTT requests never crash the device plane: a property-based fuzz of every device request topic.

A plain MQTT 5 client (paho) publishes hypothesis-drawn requests to the device topics
(`$aws/things/<thing>/jobs/get`, `start-next`, `<jobId>/get`, `<jobId>/update` and their namespaced forms
`<jobId>/namespace-<ns>/get|update`) and to topics next to them that map to no operation: random bytes,
empty payloads, invalid UTF-8, payloads up to 2 MiB, deep JSON, the wrong JSON types, and odd thing names
and job ids in the topic. A request on a topic the service serves gets exactly one answer on
`<topic>/accepted` or `<topic>/rejected`, in the shape AWS documents: a payload that is not a UTF-8 JSON
object is `InvalidJson`, and no answer is ever `InternalError`. A topic the service does not serve gets
no answer, as the reference (§7.5) chooses. Afterwards the dataplane is still running, logged no
traceback and no error, and a well-behaved device still gets its job.
"""

from __future__ import annotations

import asyncio
import json
import queue
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from paho.mqtt import client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.subscribeoptions import SubscribeOptions

from iotjobs.wire.mqtt import REQUEST_FILTERS
from tests.support.clients import MqttDevice, iot_client, thing_arn, unique
from tests.support.fuzzing import JSON_VALUES, MIB, LogMark, hostile_payloads
from tests.support.stack import Stack
from tests.support.waiting import until_sync

pytestmark = pytest.mark.e2e

EXAMPLES = 300
REPLY_TIMEOUT = 15.0
CODES = {
    "InvalidTopic",
    "InvalidJson",
    "InvalidRequest",
    "InvalidStateTransition",
    "ResourceNotFound",
    "VersionMismatch",
    "RequestThrottled",
    "TerminalStateReached",
}
"""The documented rejection codes, less InternalError."""

# Topic levels: no `/`, no wildcard, and nothing the broker refuses as malformed UTF-8 (NUL, control characters,
# non-characters), for which it drops the publisher, which is no fault of the service.
ODD_LEVELS = st.text(
    st.characters(exclude_characters="/+#", exclude_categories=["Cs", "Cc"]).filter(
        lambda c: not (0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE)
    ),
    max_size=40,
)
THINGS = st.one_of(
    st.from_regex(r"[a-zA-Z0-9:_-]{1,128}", fullmatch=True),
    ODD_LEVELS,
    st.sampled_from(["", "..", "$next", "a b", "t" * 129, "t" * 5_000]),
)
JOBS = st.one_of(
    st.from_regex(r"[a-zA-Z0-9_-]{1,64}", fullmatch=True),
    ODD_LEVELS,
    st.sampled_from(["", "$next", "..", "get", "update", "j" * 65, "j" * 5_000]),
)
NAMESPACES = st.one_of(
    st.from_regex(r"namespace-[a-zA-Z0-9_-]{1,64}", fullmatch=True),
    ODD_LEVELS.map(lambda ns: f"namespace-{ns}"),
    ODD_LEVELS,
)


@st.composite
def topics(draw: st.DrawFn) -> str:
    thing, job, namespace = draw(THINGS), draw(JOBS), draw(NAMESPACES)
    rest = draw(
        st.sampled_from(
            [
                "get",
                "start-next",
                f"{job}/get",
                f"{job}/update",
                f"{job}/{namespace}/get",
                f"{job}/{namespace}/update",
                # next to the served topics
                "update",
                "notify",
                f"{job}/delete",
                f"{job}/get/accepted",
                f"{job}/{namespace}/get/x",
                "",
            ]
        )
    )
    return f"$aws/things/{thing}/jobs/{rest}"


FIELDS = [
    "status",
    "statusDetails",
    "expectedVersion",
    "executionNumber",
    "includeJobExecutionState",
    "includeJobDocument",
    "stepTimeoutInMinutes",
    "clientToken",
]
STATUSES = st.sampled_from(["IN_PROGRESS", "SUCCEEDED", "FAILED", "REJECTED", "QUEUED", "CANCELED", "x"])
PAYLOADS = st.one_of(
    st.just(b""),
    st.just(b" \n\t"),
    st.binary(max_size=300),
    st.fixed_dictionaries({}, optional={**dict.fromkeys(FIELDS, JSON_VALUES), "status": STATUSES | JSON_VALUES}).map(
        lambda body: json.dumps(body).encode()  # json, not orjson: integers past 64 bits
    ),
    st.sampled_from(FIELDS).map(lambda field: f'{{"{field}": 1, "{field}": "two"}}'.encode()),
    st.sampled_from([*hostile_payloads(MIB), *hostile_payloads(2 * MIB)[-1:], b"x" * MIB]),
)


def _served(topic: str) -> bool:
    return any(paho.topic_matches_sub(topic_filter, topic) for topic_filter in REQUEST_FILTERS)


def _json_object(payload: bytes) -> dict[str, Any] | None:
    """The payload as the service reads it (empty means {}), or None when it is not a JSON object."""
    if not payload.strip():
        return {}
    try:
        decoded = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    return decoded if isinstance(decoded, dict) else None


class Publisher:
    """A paho MQTT 5 client subscribed to every thing's jobs topics, its own publishes excluded."""

    def __init__(self, stack: Stack) -> None:
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"fuzz-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        self.received: queue.Queue[tuple[str, bytes]] = queue.Queue()
        self.client.on_message = lambda _client, _userdata, message: self.received.put((message.topic, message.payload))
        self.subscribed: list[bool] = []
        self.client.on_subscribe = lambda *_args: self.subscribed.append(True)
        self.client.connect(stack.settings.mqtt_host, stack.settings.mqtt_port, keepalive=30)
        self.client.loop_start()
        self.client.subscribe("$aws/things/#", options=SubscribeOptions(qos=1, noLocal=True))
        until_sync(lambda: self.subscribed, 10, "the fuzz client's subscription")
        self.stray: list[tuple[str, bytes]] = []
        """What arrived while no answer to it was awaited."""

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.client.publish(topic, payload, qos=1)
        info.wait_for_publish(10)
        assert info.is_published(), f"the broker did not take a publish to {topic[:200]}"

    def answer_to(self, topic: str) -> tuple[str, bytes]:
        """The first answer on `<topic>/accepted|rejected`; whatever else arrives meanwhile is stray."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            try:
                got_topic, payload = self.received.get(timeout=left)
            except queue.Empty:
                break
            if got_topic in (f"{topic}/accepted", f"{topic}/rejected"):
                return got_topic.rsplit("/", 1)[1], payload
            self.stray.append((got_topic, payload))
        raise AssertionError(f"no answer on {topic[:200]}/accepted|rejected within {REPLY_TIMEOUT} s")


@pytest.fixture(scope="module")
def publisher(stack: Stack) -> Iterator[Publisher]:
    client = Publisher(stack)
    try:
        yield client
    finally:
        client.close()


def check_answer(payload: bytes, outcome: str, raw: bytes) -> None:
    answer = orjson.loads(raw)
    assert isinstance(answer, dict) and isinstance(answer.get("timestamp"), int), answer
    body = _json_object(payload)
    if outcome == "rejected":
        assert answer["code"] in CODES, answer
        assert isinstance(answer["message"], str) and answer["message"], answer
    if body is None:
        assert (outcome, answer["code"]) == ("rejected", "InvalidJson"), answer
        return
    token = body.get("clientToken")
    if isinstance(token, str) and len(token) <= 64:
        assert answer.get("clientToken") == token, answer


async def test_every_device_request_topic_answers_bad_payloads_as_aws_does(stack: Stack, publisher: Publisher) -> None:
    mark = LogMark(stack, services=("dataplane",))
    unserved: set[str] = set()

    @settings(
        max_examples=EXAMPLES,
        deadline=timedelta(seconds=REPLY_TIMEOUT + 10),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(topic=topics(), payload=PAYLOADS)
    def fuzz(topic: str, payload: bytes) -> None:
        publisher.publish(topic, payload)
        if not _served(topic):
            unserved.add(topic)
            return
        outcome, raw = publisher.answer_to(topic)
        try:
            check_answer(payload, outcome, raw)
        except AssertionError as err:
            raise AssertionError(f"{err}\n  answer on {outcome} to {topic[:200]} <- {payload[:200]!r}") from None

    await asyncio.to_thread(fuzz)

    # A served request published after all the others is answered after them: any answer to an unserved
    # topic would have arrived by now.
    sentinel = f"$aws/things/{unique('sentinel')}/jobs/get"
    publisher.publish(sentinel, b"")
    publisher.answer_to(sentinel)  # whatever it says (the thing does not exist), it comes last
    answered = [t for t, _payload in publisher.stray if t.rsplit("/", 1)[0] in unserved]
    assert not answered, f"answers to topics the service does not serve: {answered[:10]}"
    assert not publisher.stray, f"unexpected messages: {[(t[:200], p[:200]) for t, p in publisher.stray[:10]]}"

    dataplane = stack.processes["dataplane"]
    assert dataplane.poll() is None, f"the dataplane exited with {dataplane.returncode}:\n{stack.log_tail('dataplane')}"
    mark.assert_no_failure_logged()
    await _a_device_still_gets_its_job(stack)


async def _a_device_still_gets_its_job(stack: Stack) -> None:
    iot = iot_client(stack)
    thing, job = unique("after-mqtt-fuzz"), unique("job")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document='{"step": 1}')
    async with MqttDevice(stack, thing) as device:
        outcome, reply = await device.request("start-next", {"statusDetails": {"from": "device"}})
        assert outcome == "accepted", reply
        assert reply["execution"]["jobId"] == job and reply["execution"]["jobDocument"] == {"step": 1}, reply
        outcome, reply = await device.request(f"{job}/update", {"status": "SUCCEEDED"})
        assert outcome == "accepted", reply
