"""Opaque keyset page tokens: the last sort key of a page plus a digest of the filters it was made with."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import orjson

from iotjobs.domain.errors import invalid
from iotjobs.domain.validation import check_int

DEFAULT_PAGE = 250
MAX_PAGE = 250


def _digest(filters: dict[str, Any]) -> str:
    return hashlib.sha256(orjson.dumps(filters, option=orjson.OPT_SORT_KEYS)).hexdigest()[:16]


def encode_token(last_key: list[Any], filters: dict[str, Any]) -> str:
    raw = orjson.dumps({"k": last_key, "f": _digest(filters)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(token: str | None, filters: dict[str, Any], shape: tuple[type, ...]) -> list[Any] | None:
    """The last sort key of the previous page, checked against `shape` (the type of each key part)."""
    if token is None:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        last_key, digest = data["k"], data["f"]
    except Exception:
        raise invalid("nextToken is not a token this service issued") from None
    if not isinstance(last_key, list) or not _fits(last_key, shape):
        raise invalid("nextToken is not a token this service issued")
    if digest != _digest(filters):
        raise invalid("nextToken was issued for a different request; repeat the same filters")
    return last_key


def _fits(values: list[Any], shape: tuple[type, ...]) -> bool:
    def fits(value: Any, kind: type) -> bool:
        if isinstance(value, bool):
            return False
        return isinstance(value, int | float) if kind is float else isinstance(value, kind)

    return len(values) == len(shape) and all(fits(v, k) for v, k in zip(values, shape, strict=True))


def page_size(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    try:
        size = check_int("maxResults", int(raw))
    except ValueError:
        raise invalid(f"maxResults must be an integer, got '{raw}'") from None
    if not 1 <= size <= MAX_PAGE:
        raise invalid(f"maxResults must be between 1 and {MAX_PAGE}, got {size}")
    return size
