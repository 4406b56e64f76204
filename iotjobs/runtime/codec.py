"""Bytes on Kafka: orjson envelopes around catalogued messages."""

from __future__ import annotations

from typing import Any

import orjson

from iotjobs.domain.catalog import from_message, to_message


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(raw: bytes) -> Any:
    return orjson.loads(raw)


def encode_message(obj: Any, **meta: Any) -> bytes:
    return orjson.dumps({**meta, **to_message(obj)})


def decode_message(raw: bytes) -> tuple[Any, dict[str, Any]]:
    """The message and the envelope fields around it."""
    envelope = orjson.loads(raw)
    return from_message(envelope), envelope
