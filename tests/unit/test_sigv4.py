"""SigV4 verification: requests signed by botocore, then received as they arrive, altered or not."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import botocore.auth
import pytest
from botocore.auth import SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from iotjobs.wire.sigv4 import (
    CONTROL_SIGNING_NAMES,
    DATA_SIGNING_NAMES,
    MISMATCH,
    Received,
    Refused,
    parse_credentials,
    scope_service,
    verify,
)
from tests.support.signing import REGION, signed_headers

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
KEY = ("AKIDEXAMPLE", "secret-one")
KEYS = {"AKIDEXAMPLE": "secret-one", "AKIDOTHER": "secret-two"}
HOST = "127.0.0.1:8080"


def signed(
    method: str = "GET",
    path: str = "/jobs",
    query: str = "",
    body: bytes = b"",
    key: tuple[str, str] = KEY,
    service: str = "iot",
    at: datetime = NOW,
    headers: dict[str, str] | None = None,
) -> Received:
    """`method path?query` signed by botocore at `at`, as the server receives it (Host added by the client)."""
    url = f"http://{HOST}{path}" + (f"?{query}" if query else "")
    sent = signed_headers(method, url, key, service, body, headers, at=at.astimezone(UTC).replace(tzinfo=None))
    return Received(method, path, query, (("Host", HOST), *sent.items()), body)


def presigned(path: str, query: str = "", expires: int = 3600, at: datetime = NOW, key: tuple[str, str] = KEY) -> str:
    """The query of a presigned URL for GET `path?query`, as botocore's generate_presigned_url makes it."""
    request = AWSRequest(method="GET", url=f"http://{HOST}{path}" + (f"?{query}" if query else ""))
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: at.replace(tzinfo=None)):
        SigV4QueryAuth(Credentials(*key), "iot", REGION, expires=expires).add_auth(request)
    return str(urlsplit(request.url).query)


def with_header(received: Received, name: str, value: str | None) -> Received:
    """`received` with header `name` replaced by `value` (dropped when None)."""
    kept = tuple((k, v) for k, v in received.headers if k.lower() != name.lower())
    return replace(received, headers=kept if value is None else (*kept, (name, value)))


def control(received: Received, now: datetime = NOW) -> str | Refused:
    return verify(received, KEYS, CONTROL_SIGNING_NAMES, now)


def refused(code: str, message: str) -> Refused:
    return Refused(code, message, 403)


# --- accepted -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "query", "body"),
    [
        ("GET", "/jobs", "", b""),
        ("GET", "/jobs", "maxResults=5&status=IN_PROGRESS&nextToken=a%20b%2Fc", b""),
        ("GET", "/things/a%3Ab/jobs/%24next", "", b""),
        ("PUT", "/things/a%3Ab/jobs/%24next", "", b"{}"),
        ("POST", "/things/t1/jobs/j1", "", b'{"status": "SUCCEEDED", "statusDetails": {"k": "v \\u00e9"}}'),
        ("DELETE", "/things/t1", "expectedVersion=3", b""),
    ],
)
def test_a_request_botocore_signed_names_its_access_key(method: str, path: str, query: str, body: bytes) -> None:
    headers = {"Content-Type": "application/json"} if body else None
    assert control(signed(method, path, query, body, headers=headers)) == "AKIDEXAMPLE"


def test_each_configured_key_is_accepted() -> None:
    assert control(signed(key=("AKIDOTHER", "secret-two"))) == "AKIDOTHER"


def test_the_control_plane_answers_iot_and_execute_api_signing_and_the_data_plane_iot_jobs_data() -> None:
    assert control(signed(service="execute-api")) == "AKIDEXAMPLE"
    assert verify(signed(service="iot-jobs-data"), KEYS, DATA_SIGNING_NAMES, NOW) == "AKIDEXAMPLE"


def test_a_request_signed_over_the_date_header_instead_of_x_amz_date_is_accepted() -> None:
    # Signed by hand from the SigV4 specification, as a client that sends Date and no X-Amz-Date would.
    date = "Wed, 01 May 2024 12:00:00 GMT"
    canonical = f"GET\n/jobs\n\ndate:{date}\nhost:{HOST}\n\ndate;host\n{hashlib.sha256(b'').hexdigest()}"
    scope = "20240501/us-east-1/iot/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n20240501T120000Z\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{KEY[1]}".encode()
    for part in ("20240501", "us-east-1", "iot", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    header = f"AWS4-HMAC-SHA256 Credential={KEY[0]}/{scope}, SignedHeaders=date;host, Signature={signature}"
    request = Received("GET", "/jobs", "", (("Host", HOST), ("Date", date), ("Authorization", header)), b"")
    assert control(request) == "AKIDEXAMPLE"
    assert control(replace(request, path="/jobs/x")) == refused("InvalidSignatureException", MISMATCH)


def test_headers_the_client_did_not_sign_may_change_on_the_way() -> None:
    request = signed()
    assert control(with_header(request, "User-Agent", "a proxy rewrote me")) == "AKIDEXAMPLE"
    assert control(with_header(request, "X-Forwarded-For", "10.0.0.1")) == "AKIDEXAMPLE"


def test_a_signing_time_up_to_five_minutes_either_way_is_accepted() -> None:
    assert control(signed(), now=NOW + timedelta(minutes=5)) == "AKIDEXAMPLE"
    assert control(signed(), now=NOW - timedelta(minutes=5)) == "AKIDEXAMPLE"


def test_a_signed_content_hash_that_is_the_bodys_is_accepted() -> None:
    body = b'{"a": 1}'
    headers = {"Content-Type": "application/json", "X-Amz-Content-SHA256": hashlib.sha256(body).hexdigest()}
    assert control(signed("POST", "/jobs/j1", body=body, headers=headers)) == "AKIDEXAMPLE"


# --- refused ------------------------------------------------------------------------------------------------


def test_no_signature_at_all_is_a_missing_authentication_token() -> None:
    unsigned = Received("GET", "/jobs", "", (("Host", HOST),), b"")
    assert control(unsigned) == refused("MissingAuthenticationTokenException", "Missing Authentication Token")


def test_a_wrong_secret_is_a_signature_mismatch() -> None:
    assert control(signed(key=("AKIDEXAMPLE", "not-the-secret"))) == refused("InvalidSignatureException", MISMATCH)


def test_an_unknown_access_key_is_an_unrecognized_client() -> None:
    assert control(signed(key=("AKIDNOBODY", "secret-one"))) == refused(
        "UnrecognizedClientException", "The security token included in the request is invalid."
    )


@pytest.mark.parametrize(
    "alter",
    [
        lambda r: replace(r, method="DELETE"),
        lambda r: replace(r, path="/jobs/other"),
        lambda r: replace(r, query="maxResults=6"),
        lambda r: replace(r, body=b'{"a": 2}'),
        lambda r: with_header(r, "Content-Type", "text/plain"),
        lambda r: with_header(r, "Host", "elsewhere:8080"),
    ],
    ids=["method", "path", "query", "body", "signed-header", "host"],
)
def test_any_signed_part_changed_after_signing_is_a_mismatch(alter: object) -> None:
    original = signed("POST", "/jobs", "maxResults=5", b'{"a": 1}', headers={"Content-Type": "application/json"})
    assert control(original) == "AKIDEXAMPLE"
    assert control(alter(original)) == refused("InvalidSignatureException", MISMATCH)  # type: ignore[operator]


def test_a_signed_content_hash_that_is_not_the_bodys_is_a_mismatch() -> None:
    headers = {"Content-Type": "application/json", "X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"}
    assert control(signed("POST", "/jobs/j1", body=b"{}", headers=headers)) == refused(
        "InvalidSignatureException", MISMATCH
    )


def test_a_signing_time_more_than_five_minutes_old_has_expired() -> None:
    outcome = control(signed(), now=NOW + timedelta(minutes=10))
    assert outcome == refused(
        "InvalidSignatureException",
        "Signature expired: 20240501T120000Z is now earlier than 20240501T120500Z (20240501T121000Z - 5 min.)",
    )


def test_a_signing_time_more_than_five_minutes_ahead_is_not_yet_current() -> None:
    outcome = control(signed(at=NOW + timedelta(minutes=10)))
    assert outcome == refused(
        "InvalidSignatureException",
        "Signature not yet current: 20240501T121000Z is still later than 20240501T120500Z (20240501T120000Z + 5 min.)",
    )


@pytest.mark.parametrize(
    ("plane", "service", "expected"),
    [(CONTROL_SIGNING_NAMES, "iot-jobs-data", "iot"), (DATA_SIGNING_NAMES, "iot", "iot-jobs-data")],
)
def test_a_request_scoped_to_another_service_is_refused_naming_the_right_one(
    plane: tuple[str, ...], service: str, expected: str
) -> None:
    assert verify(signed(service=service), KEYS, plane, NOW) == refused(
        "InvalidSignatureException", f"Credential should be scoped to correct service: '{expected}'. "
    )


def test_a_garbage_authorization_header_is_an_incomplete_signature_listing_what_is_missing() -> None:
    garbage = Received("GET", "/jobs", "", (("Host", HOST), ("Authorization", "Bearer abc.def")), b"")
    assert control(garbage) == refused(
        "IncompleteSignatureException",
        "Authorization header requires 'Credential' parameter. Authorization header requires 'Signature' "
        "parameter. Authorization header requires 'SignedHeaders' parameter. Authorization header requires "
        "existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=Bearer abc.def",
    )


def test_a_header_part_without_an_equal_sign_is_an_incomplete_signature() -> None:
    header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/iot/aws4_request, host;x-amz-date"
    outcome = control(with_header(signed(), "Authorization", header))
    assert outcome == refused(
        "IncompleteSignatureException",
        f"'host;x-amz-date' not a valid key=value pair (missing equal-sign) in Authorization header: '{header}'.",
    )


def test_a_header_without_a_signature_part_names_it() -> None:
    header = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/iot/aws4_request, SignedHeaders=host"
    outcome = control(with_header(signed(), "Authorization", header))
    assert outcome == refused(
        "IncompleteSignatureException", f"Authorization header requires 'Signature' parameter. Authorization={header}"
    )


def test_another_algorithm_is_refused_naming_it() -> None:
    header = str(dict(signed().headers)["Authorization"]).replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256")
    outcome = control(with_header(signed(), "Authorization", header))
    assert isinstance(outcome, Refused) and outcome.code == "IncompleteSignatureException"
    assert "AWS4-ECDSA-P256-SHA256" in outcome.message


def test_a_credential_without_five_parts_is_an_incomplete_signature() -> None:
    request = signed()
    header = dict(request.headers)["Authorization"].replace("/us-east-1/iot/", "/iot/")
    assert control(with_header(request, "Authorization", header)) == refused(
        "IncompleteSignatureException",
        "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
        "got 'AKIDEXAMPLE/20240501/iot/aws4_request'",
    )


def test_a_credential_with_another_terminator_is_refused() -> None:
    request = signed()
    header = dict(request.headers)["Authorization"].replace("aws4_request", "aws5_request")
    assert control(with_header(request, "Authorization", header)) == refused(
        "InvalidSignatureException",
        "Credential should be scoped with a valid terminator: 'aws4_request', not 'aws5_request'. ",
    )


def test_a_scope_date_that_is_not_the_signing_date_is_refused() -> None:
    request = signed()
    header = dict(request.headers)["Authorization"].replace("/20240501/", "/20240430/")
    assert control(with_header(request, "Authorization", header)) == refused(
        "InvalidSignatureException",
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
        "'20240430' != '20240501', from '20240501T120000Z'.",
    )


def test_a_request_without_a_date_is_an_incomplete_signature() -> None:
    outcome = control(with_header(signed(), "X-Amz-Date", None))
    assert isinstance(outcome, Refused) and outcome.code == "IncompleteSignatureException"
    assert outcome.message.startswith(
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization=AWS4"
    )


def test_a_date_not_in_basic_format_is_an_incomplete_signature() -> None:
    assert control(with_header(signed(), "X-Amz-Date", "2024-05-01T12:00:00Z")) == refused(
        "IncompleteSignatureException",
        "Date must be in ISO-8601 'basic format'. Got '2024-05-01T12:00:00Z'. See http://en.wikipedia.org/wiki/ISO_8601",
    )


def test_a_signature_that_does_not_cover_host_is_refused() -> None:
    request = signed()
    header = dict(request.headers)["Authorization"].replace("SignedHeaders=host;x-amz-date", "SignedHeaders=x-amz-date")
    assert control(with_header(request, "Authorization", header)) == refused(
        "IncompleteSignatureException", "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_a_signature_that_does_not_cover_its_date_is_refused() -> None:
    request = signed()
    header = dict(request.headers)["Authorization"].replace("SignedHeaders=host;x-amz-date", "SignedHeaders=host")
    assert control(with_header(request, "Authorization", header)) == refused(
        "IncompleteSignatureException", "'x-amz-date' must be a 'SignedHeader' in the AWS Authorization."
    )


def test_a_signed_header_the_request_does_not_carry_is_named() -> None:
    request = signed("POST", "/jobs/j1", body=b"{}", headers={"Content-Type": "application/json"})
    outcome = control(with_header(request, "Content-Type", None))
    assert outcome == refused(
        "IncompleteSignatureException", "SignedHeaders names content-type, which the request does not carry"
    )


# --- presigned URLs (query-string SigV4) --------------------------------------------------------------------


def test_a_presigned_url_is_accepted_until_it_expires() -> None:
    query = presigned("/jobs", "maxResults=5", expires=60)
    request = Received("GET", "/jobs", query, (("Host", HOST),), b"")
    assert control(request, now=NOW + timedelta(seconds=60)) == "AKIDEXAMPLE"
    assert control(request, now=NOW + timedelta(seconds=61)) == refused(
        "InvalidSignatureException",
        "Signature expired: 20240501T120000Z is now earlier than 20240501T120001Z (20240501T120101Z - 60 sec.)",
    )


def test_a_presigned_url_with_a_changed_parameter_or_signature_is_a_mismatch() -> None:
    query = presigned("/jobs", "maxResults=5")
    for changed in (query.replace("maxResults=5", "maxResults=6"), query[:-4] + "0000"):
        request = Received("GET", "/jobs", changed, (("Host", HOST),), b"")
        assert control(request) == refused("InvalidSignatureException", MISMATCH)


def test_a_presigned_url_missing_a_parameter_names_it() -> None:
    query = "&".join(p for p in presigned("/jobs").split("&") if not p.startswith("X-Amz-SignedHeaders="))
    outcome = control(Received("GET", "/jobs", query, (("Host", HOST),), b""))
    assert isinstance(outcome, Refused) and outcome.code == "IncompleteSignatureException"
    assert "missing 'X-Amz-SignedHeaders'" in outcome.message


def test_a_presigned_url_with_an_unknown_key_is_an_unrecognized_client() -> None:
    query = presigned("/jobs", key=("AKIDNOBODY", "x"))
    outcome = control(Received("GET", "/jobs", query, (("Host", HOST),), b""))
    assert isinstance(outcome, Refused) and outcome.code == "UnrecognizedClientException"


# --- configuration and scope ----------------------------------------------------------------------------------


def test_credentials_are_pairs_separated_by_commas_or_lines_with_comments() -> None:
    text = "# fleet tools\nAKID1:secret/one+x, AKID2:two\n\n  AKID3 : three  \n"
    assert parse_credentials(text, "X") == {"AKID1": "secret/one+x", "AKID2": "two", "AKID3": "three"}
    assert parse_credentials("", "X") == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("AKID1", "X: entry 1 ((no ':')) must be ACCESS_KEY_ID:SECRET"),
        ("AKID1:s1,AKID2:", "X: entry 2 (AKID2) must be ACCESS_KEY_ID:SECRET"),
        (":s1", "X: entry 1 () must be ACCESS_KEY_ID:SECRET"),
        ("AKID1:s1\nAKID1:s2", "X: access key AKID1 is given two different secrets"),
    ],
)
def test_a_malformed_credential_entry_is_named_without_its_secret(text: str, message: str) -> None:
    with pytest.raises(ValueError) as error:
        parse_credentials(text, "X")
    assert str(error.value) == message


def test_the_scope_service_of_an_authorization_header() -> None:
    header = dict(signed(service="iot-jobs-data").headers)["Authorization"]
    assert scope_service(header) == "iot-jobs-data"
    assert scope_service("Bearer abc") is None
