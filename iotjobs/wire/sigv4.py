"""SigV4 verification (IOTJOBS_SIGV4_CREDENTIALS): who signed a request, or the AWS error that refuses it.

Pure: the request as it arrived, the known keys and `now` are arguments; nothing here reads a clock, a file or
a socket. The signature is recomputed with botocore's own signer (the code that signs what boto3 and the AWS
CLI send) from the method, the raw path, the query, the headers the client listed in SignedHeaders and the
body, under the date, region and service of the credential scope. Errors use AWS's codes and, where AWS's
wording is known, its messages (docs/adr/0015-sigv4-verification.md).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, unquote

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest, HTTPHeaders
from botocore.credentials import Credentials

ALGORITHM = "AWS4-HMAC-SHA256"
TERMINATOR = "aws4_request"
MAX_SKEW = timedelta(minutes=5)
"""How far a signing time may be from ours, either way, as AWS allows."""
MAX_PRESIGNED_EXPIRES = 7 * 24 * 3600
TIMESTAMP = "%Y%m%dT%H%M%SZ"

CONTROL_SIGNING_NAMES = ("iot", "execute-api")
"""`iot` is what botocore signs the control plane for today; releases up to ~1.29.112 signed `execute-api`."""
DATA_SIGNING_NAMES = ("iot-jobs-data",)

QUERY_PARAMETERS = ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Signature")

MISSING_TOKEN = "Missing Authentication Token"
MISMATCH = (
    "The request signature we calculated does not match the signature you provided. "
    "Check your AWS Secret Access Key and signing method. Consult the service documentation for details."
)
UNKNOWN_KEY = "The security token included in the request is invalid."


@dataclass(frozen=True)
class Received:
    """A request as it arrived: the path and query exactly as sent (still percent-encoded)."""

    method: str
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        name = name.lower()
        return next((value for key, value in self.headers if key.lower() == name), None)

    def header_values(self, name: str) -> list[str]:
        name = name.lower()
        return [value for key, value in self.headers if key.lower() == name]


@dataclass(frozen=True)
class Refused:
    """Why a request is refused, as AWS says it: the error code (x-amzn-ErrorType), the message, the status."""

    code: str
    message: str
    status: int = 403


@dataclass(frozen=True)
class Claim:
    """What a request says about its signature (Authorization header or presigned query)."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    timestamp: datetime
    expires: int | None = None
    """Seconds a presigned request stays valid; None for a signed header."""


def _incomplete(message: str) -> Refused:
    return Refused("IncompleteSignatureException", message)


def _invalid(message: str) -> Refused:
    return Refused("InvalidSignatureException", message)


# --- configured keys ------------------------------------------------------------------------------------


def parse_credentials(text: str, where: str) -> dict[str, str]:
    """`ACCESS_KEY_ID:SECRET` entries separated by commas or new lines (`#` starts a comment line), as in
    IOTJOBS_SIGV4_CREDENTIALS or the file IOTJOBS_SIGV4_CREDENTIALS_FILE names. `where` names the source in
    errors; a secret never appears in one."""
    keys: dict[str, str] = {}
    lines = (line for line in text.splitlines() if not line.lstrip().startswith("#"))
    for n, entry in enumerate((e.strip() for line in lines for e in line.split(",")), start=1):
        if not entry:
            continue
        access_key, sep, secret = entry.partition(":")
        access_key, secret = access_key.strip(), secret.strip()
        if not sep or not access_key or not secret or any(c.isspace() for c in access_key):
            shown = access_key if sep else "(no ':')"
            raise ValueError(f"{where}: entry {n} ({shown}) must be ACCESS_KEY_ID:SECRET")
        if keys.get(access_key, secret) != secret:
            raise ValueError(f"{where}: access key {access_key} is given two different secrets")
        keys[access_key] = secret
    return keys


# --- reading the claim ----------------------------------------------------------------------------------


def scope_service(authorization: str) -> str | None:
    """The service an Authorization header's credential scope names (`iot`, `execute-api`, `iot-jobs-data`),
    or None when the header is not a SigV4 one; what a shared listener would route on."""
    fields = _fields(authorization.strip().partition(" ")[2])
    if isinstance(fields, Refused):
        return None
    parts = fields.get("Credential", "").split("/")
    return parts[3] if len(parts) == 5 else None


def _fields(rest: str) -> dict[str, str] | Refused:
    fields: dict[str, str] = {}
    for part in (p.strip() for p in rest.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep:
            return _incomplete(f"'{part}' not a valid key=value pair (missing equal-sign) in Authorization header")
        fields[name.strip()] = value.strip()
    return fields


def _timestamp(raw: str) -> datetime | None:
    if len(raw) != 16:  # strptime would take single-digit fields
        return None
    try:
        return datetime.strptime(raw, TIMESTAMP).replace(tzinfo=UTC)
    except ValueError:
        return None


def _not_basic_format(raw: str) -> Refused:
    return _incomplete(
        f"Date must be in ISO-8601 'basic format'. Got '{raw}'. See http://en.wikipedia.org/wiki/ISO_8601"
    )


def _request_time(received: Received) -> tuple[str, datetime] | Refused | None:
    """The signing time and the header that carries it (X-Amz-Date, else Date), or None if neither is sent."""
    amz = received.header("x-amz-date")
    if amz is not None:
        when = _timestamp(amz)
        if when is None:
            return _not_basic_format(amz)
        return "x-amz-date", when
    date = received.header("date")
    if date is None:
        return None
    try:
        return "date", parsedate_to_datetime(date).astimezone(UTC)
    except (TypeError, ValueError):
        return _incomplete(f"the Date header '{date}' is not an HTTP date; send X-Amz-Date as yyyyMMddTHHmmssZ")


def _scope(credential: str, services: Collection[str]) -> tuple[str, str, str, str] | Refused:
    parts = credential.split("/")
    if len(parts) != 5:
        return _incomplete(
            "Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, "
            f"got '{credential}'"
        )
    access_key, date, region, service, terminator = parts
    if terminator != TERMINATOR:
        return _invalid(f"Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'. ")
    if service not in services:
        return _invalid(f"Credential should be scoped to correct service: '{next(iter(services))}'. ")
    if not region:
        return _invalid("Credential should be scoped to a valid region, not ''. ")
    return access_key, date, region, service


def claim_of_header(received: Received, authorization: str, services: Collection[str]) -> Claim | Refused:
    algorithm, _, rest = authorization.strip().partition(" ")
    if algorithm != ALGORITHM and algorithm.startswith("AWS4-"):
        return _incomplete(f"Unsupported AWS 'algorithm': '{algorithm}'; sign with {ALGORITHM}")
    fields = _fields(rest) if algorithm == ALGORITHM else {}
    if isinstance(fields, Refused):
        return _incomplete(f"{fields.message}: '{authorization}'.")
    time = _request_time(received)
    missing = [
        f"Authorization header requires '{name}' parameter."
        for name in ("Credential", "Signature", "SignedHeaders")
        if not fields.get(name)
    ]
    if time is None:
        missing.append("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.")
    if missing or time is None:
        return _incomplete(" ".join(missing) + f" Authorization={authorization}")
    if isinstance(time, Refused):
        return time
    scope = _scope(fields["Credential"], services)
    if isinstance(scope, Refused):
        return scope
    date_header, when = time
    signed = tuple(fields["SignedHeaders"].split(";"))
    if date_header not in signed:
        return _incomplete(f"'{date_header}' must be a 'SignedHeader' in the AWS Authorization.")
    return Claim(*scope, signed_headers=signed, signature=fields["Signature"], timestamp=when)


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return [(unquote(k), unquote(v)) for k, _, v in (p.partition("=") for p in query.split("&") if p)]


def claim_of_query(pairs: list[tuple[str, str]], services: Collection[str]) -> Claim | Refused:
    params = dict(pairs)
    absent = [name for name in QUERY_PARAMETERS if not params.get(name)]
    if absent:
        return _incomplete(
            f"AWS query-string parameters must include {', '.join(repr(n) for n in QUERY_PARAMETERS)}; "
            f"missing {', '.join(repr(n) for n in absent)}. Re-examine the query-string parameters."
        )
    if params["X-Amz-Algorithm"] != ALGORITHM:
        return _incomplete(f"Unsupported AWS 'algorithm': '{params['X-Amz-Algorithm']}'; sign with {ALGORITHM}")
    when = _timestamp(params["X-Amz-Date"])
    if when is None:
        return _not_basic_format(params["X-Amz-Date"])
    raw_expires = params.get("X-Amz-Expires", str(MAX_PRESIGNED_EXPIRES))
    if not raw_expires.isdigit() or not 1 <= int(raw_expires) <= MAX_PRESIGNED_EXPIRES:
        return _incomplete(f"X-Amz-Expires must be a whole number of seconds from 1 to {MAX_PRESIGNED_EXPIRES}")
    scope = _scope(params["X-Amz-Credential"], services)
    if isinstance(scope, Refused):
        return scope
    signed = tuple(params["X-Amz-SignedHeaders"].split(";"))
    return Claim(
        *scope, signed_headers=signed, signature=params["X-Amz-Signature"], timestamp=when, expires=int(raw_expires)
    )


# --- checking it ----------------------------------------------------------------------------------------


def _stamp(when: datetime) -> str:
    return when.strftime(TIMESTAMP)


def _too_far(claim: Claim, now: datetime) -> Refused | None:
    earliest = now - (MAX_SKEW if claim.expires is None else timedelta(seconds=claim.expires))
    if claim.timestamp < earliest:
        window = "5 min." if claim.expires is None else f"{claim.expires} sec."
        return _invalid(
            f"Signature expired: {_stamp(claim.timestamp)} is now earlier than {_stamp(earliest)} "
            f"({_stamp(now)} - {window})"
        )
    latest = now + MAX_SKEW
    if claim.timestamp > latest:
        return _invalid(
            f"Signature not yet current: {_stamp(claim.timestamp)} is still later than {_stamp(latest)} "
            f"({_stamp(now)} + 5 min.)"
        )
    return None


class _AsReceived(SigV4Auth):  # type: ignore[misc]
    """botocore's signer, signing exactly the headers the client listed in SignedHeaders (botocore would
    leave out some, such as User-Agent, that another client may have signed)."""

    def headers_to_sign(self, request: Any) -> HTTPHeaders:
        headers = HTTPHeaders()
        for name, value in request.headers.items():
            headers[name.lower()] = value
        return headers


def _canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    # SigV4's canonical form: every name and value percent-encoded but for A-Z a-z 0-9 - _ . ~, pairs sorted
    # (botocore sorts them when it signs; a client that sent them unencoded or in another order still matches).
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def expected_signature(received: Received, claim: Claim, secret: str) -> tuple[str, str, str]:
    """(canonical request, string to sign, signature) for `received` under `claim`'s scope and `secret`."""
    pairs = [(k, v) for k, v in _query_pairs(received.query) if k != "X-Amz-Signature" or claim.expires is None]
    query = _canonical_query(pairs)
    request = AWSRequest(method=received.method, url=f"http://iotjobs{received.path}" + (f"?{query}" if query else ""))
    for name in claim.signed_headers:
        for value in received.header_values(name):
            request.headers[name] = value
    request.data = received.body
    request.context["timestamp"] = _stamp(claim.timestamp)
    signer = _AsReceived(Credentials(claim.access_key, secret), claim.service, claim.region)
    canonical = signer.canonical_request(request)
    string_to_sign = signer.string_to_sign(request, canonical)
    return canonical, string_to_sign, signer.signature(string_to_sign, request)


def verify(received: Received, secrets: Mapping[str, str], services: Collection[str], now: datetime) -> str | Refused:
    """The access key that signed `received`, or why it is refused. `services` are the signing names this
    plane answers to (the first is the one an error names); `now` is wall-clock time, never the test clock's."""
    authorization = received.header("authorization")
    pairs = _query_pairs(received.query)
    if authorization is not None:
        claim = claim_of_header(received, authorization, services)
    elif any(k == "X-Amz-Algorithm" for k, _ in pairs):
        claim = claim_of_query(pairs, services)
    else:
        return Refused("MissingAuthenticationTokenException", MISSING_TOKEN)
    if isinstance(claim, Refused):
        return claim
    if claim.date != _stamp(claim.timestamp)[:8]:
        stamp = _stamp(claim.timestamp)
        return _invalid(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: "
            f"'{claim.date}' != '{stamp[:8]}', from '{stamp}'."
        )
    if "host" not in claim.signed_headers:
        return _incomplete("'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
    unsent = [name for name in claim.signed_headers if received.header(name) is None]
    if unsent:
        return _incomplete(f"SignedHeaders names {', '.join(unsent)}, which the request does not carry")
    too_far = _too_far(claim, now)
    if too_far is not None:
        return too_far
    secret = secrets.get(claim.access_key)
    if secret is None:
        return Refused("UnrecognizedClientException", UNKNOWN_KEY)
    # botocore signs a signed X-Amz-Content-SHA256's value in place of the body's hash: it must be that hash.
    content_hash = received.header("x-amz-content-sha256") if "x-amz-content-sha256" in claim.signed_headers else None
    if content_hash is not None and content_hash != hashlib.sha256(received.body).hexdigest():
        return _invalid(MISMATCH)
    _, _, signature = expected_signature(received, claim, secret)
    if not hmac.compare_digest(signature.encode(), claim.signature.encode("utf-8", "replace")):
        return _invalid(MISMATCH)
    return claim.access_key
