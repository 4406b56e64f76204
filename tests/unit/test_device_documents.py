"""The dataplane's last step before a document reaches a device: presigned-URL placeholders signed (ADR 0014).

Signing a URL needs no network, so these run botocore's real signer offline; tests/e2e/test_presigned_urls.py
downloads what it signs from an S3 server.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from iotjobs.domain import thing as t
from iotjobs.runtime.settings import Settings
from services.dataplane import documents
from services.dataplane.documents import DeviceDocuments

PLACEHOLDER = "${aws:iot:s3-presigned-url:https://s3.amazonaws.com/bucket/dir/a%20file.bin}"
DOCUMENT = json.dumps({"url": PLACEHOLDER, "keep": "as is"})
SIGNING = Settings(
    s3_endpoint="http://s3.test:9000", s3_access_key_id="AKID", s3_secret_access_key="secret", s3_region="eu-west-1"
)


def execution(document: str = DOCUMENT, expires: int | None = None) -> dict[str, Any]:
    return {"job_id": "j1", "thing_name": "t1", "document": document, "presigned_url_expires_in_sec": expires}


def delivered_url(message: Any) -> str:
    url: str = json.loads(message.execution["document"])["url"]
    return url


def query(url: str) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(url).query))


def test_a_notify_next_carries_a_url_signed_for_the_configured_endpoint_and_lifetime() -> None:
    sent = DeviceDocuments(SIGNING).for_device(t.NotifyNext("t1", execution(expires=900)))
    url = delivered_url(sent)
    assert url.startswith("http://s3.test:9000/bucket/dir/a%20file.bin?")
    signed = query(url)
    assert signed["X-Amz-Expires"] == "900"
    assert signed["X-Amz-Credential"].startswith("AKID/") and "/eu-west-1/s3/aws4_request" in signed["X-Amz-Credential"]
    assert len(signed["X-Amz-Signature"]) == 64
    assert json.loads(sent.execution["document"])["keep"] == "as is"


def test_without_an_expiry_urls_last_an_hour() -> None:
    sent = DeviceDocuments(SIGNING).for_device(t.ExecutionReply(execution()))
    assert query(delivered_url(sent))["X-Amz-Expires"] == "3600"


def test_every_kind_of_delivery_is_signed_and_nothing_else_is_touched() -> None:
    docs = DeviceDocuments(SIGNING)
    for message in (
        t.ExecutionReply(execution()),
        t.UpdateReply(execution(), include_state=False, include_document=True),
        t.NotifyNext("t1", execution()),
    ):
        assert PLACEHOLDER not in docs.for_device(message).execution["document"]
    untouched = (
        t.ExecutionReply(execution(), include_document=False),
        t.UpdateReply(execution(), include_state=True, include_document=False),
        t.ExecutionReply(None),
        t.NotifyNext("t1", None),
        t.PendingReply([execution()], []),
    )
    for message in untouched:
        assert docs.for_device(message) is message


def test_a_url_is_signed_anew_in_each_second(monkeypatch: pytest.MonkeyPatch) -> None:
    docs = DeviceDocuments(SIGNING)
    now = [1_800_000_000.2]
    monkeypatch.setattr(documents.clock, "now", lambda: now[0])
    signed: list[str] = []
    real = docs._client.generate_presigned_url

    def counting(*args: Any, **kwargs: Any) -> str:
        url: str = real(*args, **kwargs)
        signed.append(url)
        return url

    monkeypatch.setattr(docs._client, "generate_presigned_url", counting)
    first = delivered_url(docs.for_device(t.NotifyNext("t1", execution())))
    same_second = delivered_url(docs.for_device(t.NotifyNext("t2", execution())))
    now[0] += 1.0
    next_second = delivered_url(docs.for_device(t.NotifyNext("t1", execution())))
    other_lifetime = delivered_url(docs.for_device(t.NotifyNext("t1", execution(expires=60))))
    assert first == same_second == signed[0]
    assert signed[1:] == [next_second, other_lifetime] and len(signed) == 3


def test_without_credentials_placeholders_are_delivered_unchanged_with_one_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(documents.log, "warning", lambda message, **_kw: warnings.append(message))
    for settings in (Settings(), Settings(s3_endpoint="http://s3.test:9000"), Settings(s3_access_key_id="AKID")):
        docs = DeviceDocuments(settings)
        assert not docs.configured
        reply = t.ExecutionReply(execution())
        assert docs.for_device(reply).execution["document"] == DOCUMENT
        assert docs.for_device(reply).execution["document"] == DOCUMENT
    assert len(warnings) == 3 and "IOTJOBS_S3_ENDPOINT" in warnings[0]  # once per process (here: per instance)


def test_a_placeholder_naming_no_s3_object_is_delivered_unchanged_and_reported_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[dict[str, Any]] = []
    monkeypatch.setattr(documents.log, "warning", lambda _message, **kw: warnings.append(kw))
    document = json.dumps({"url": "${aws:iot:s3-presigned-url:https://example.com/b/k}"})
    docs = DeviceDocuments(SIGNING)
    for _ in range(3):
        assert docs.for_device(t.NotifyNext("t1", execution(document))).execution["document"] == document
    assert warnings == [{"url": "https://example.com/b/k", "job_id": "j1", "thing_name": "t1"}]
