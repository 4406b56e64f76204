"""Placeholders in job documents (aws-iot-jobs.md §6.11), found and replaced without any I/O.

- `${aws:iot:s3-presigned-url:<S3 object URL>}`, and the `s3-presigned-url-v2` form AWS's guide now shows,
  are replaced with a presigned GET URL each time a document reaches a device; the signing itself is the
  caller's (`presign`), so this module stays pure.
- `${aws:iot:parameter:<key>}` is filled from CreateJob's `documentParameters` once, at creation, in the
  documents of AWS managed templates (iotjobs.domain.managed_templates).

Placeholders sit inside JSON strings: what is read out of one is JSON-unescaped first (a document may
write `https:\\/\\/...`), and what is put in is JSON-escaped, so a value can never break the document.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

PRESIGNED_PREFIX = "${aws:iot:s3-presigned-url"
"""Both forms: `s3-presigned-url:` and `s3-presigned-url-v2:`."""
PARAMETER_PREFIX = "${aws:iot:parameter:"
_PRESIGNED = re.compile(r"\$\{aws:iot:s3-presigned-url(?:-v2)?:(?P<url>[^}]*)\}")
_PARAMETER = re.compile(r"\$\{aws:iot:parameter:(?P<key>[^}]*)\}")

# S3 object URLs as AWS writes them: https://<bucket>.s3[.<region>|-<region>].amazonaws.com/<key> (virtual
# host) and https://s3[.<region>|-<region>].amazonaws.com/<bucket>/<key> (path), dual-stack included.
_S3_HOST = r"s3(?:[.-][a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?"
_VIRTUAL_HOSTED = re.compile(rf"(?P<bucket>[a-z0-9][a-z0-9.-]*?)\.{_S3_HOST}")
_PATH_STYLE = re.compile(_S3_HOST)


@dataclass(frozen=True)
class S3Object:
    bucket: str
    path: str
    """The object's path after the bucket as the URL spells it (percent-encoded, with its leading slash)."""

    @property
    def key(self) -> str:
        return unquote(self.path[1:])


def s3_object(url: str) -> S3Object | None:
    """The bucket and key an S3 object URL names; None for any other URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme == "s3":  # s3://<bucket>/<key>, which the -v2 placeholders may name
        bucket, path = parts.netloc, parts.path
        return S3Object(bucket, path) if bucket and len(path) >= 2 else None
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    if match := _VIRTUAL_HOSTED.fullmatch(host):
        bucket, path = match["bucket"], parts.path
    elif _PATH_STYLE.fullmatch(host):
        bucket, _slash, rest = parts.path.removeprefix("/").partition("/")
        path = "/" + rest
    else:
        return None
    if not bucket or len(path) < 2:
        return None
    return S3Object(bucket, path)


def has_presigned_urls(document: str) -> bool:
    return PRESIGNED_PREFIX in document


def presigned_urls(document: str) -> list[str]:
    """The URLs of the document's presigned-URL placeholders, in order, as JSON text spells them decoded."""
    return [_unescaped(m["url"]) for m in _PRESIGNED.finditer(document)]


def substitute_presigned_urls(document: str, presign: Callable[[str, S3Object | None], str | None]) -> str:
    """The document with each presigned-URL placeholder replaced by `presign(url, object)`; a placeholder
    for which it returns None (an unknown URL, no signer) is left as it is."""
    if not has_presigned_urls(document):
        return document

    def replaced(match: re.Match[str]) -> str:
        url = _unescaped(match["url"])
        signed = presign(url, s3_object(url))
        return match[0] if signed is None else _escaped(signed)

    return _PRESIGNED.sub(replaced, document)


def parameter_keys(document: str) -> list[str]:
    """The keys of the document's `${aws:iot:parameter:<key>}` placeholders, each once, in order."""
    return list(dict.fromkeys(m["key"] for m in _PARAMETER.finditer(document)))


def substitute_parameters(document: str, values: Mapping[str, str]) -> str:
    """The document with every parameter placeholder replaced by its value (JSON-escaped); a key without a
    value becomes the empty string."""
    return _PARAMETER.sub(lambda m: _escaped(values.get(m["key"], "")), document)


def _unescaped(fragment: str) -> str:
    """A fragment of a JSON string's text, decoded (`\\/` to `/`); as it is when it is no valid fragment."""
    try:
        decoded = json.loads(f'"{fragment}"')
    except ValueError:
        return fragment
    return decoded if isinstance(decoded, str) else fragment


def _escaped(value: str) -> str:
    """`value` written as the inside of a JSON string."""
    return json.dumps(value, ensure_ascii=False)[1:-1]
