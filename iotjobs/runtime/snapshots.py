"""The state topics: snapshots of keys, and the checkpoints that say which events a restore replays.

Each partition of a state topic is compacted and holds, per key, the owner's latest image of that key
(`KeyImage.to_dict` plus the writer's `token`), and under `CHECKPOINT_KEY` the latest checkpoint:

- `offset`: the events offset a restore replays from; every key's image is at least as new as the key's
  counted events before it;
- `token` and `tokens`: the writer's marker token, and the marker tokens of every scope in force there;
- `seen`: how far into this state partition the writer had read when it took the partition.

A checkpoint can only vouch for images its writer knew of: those it read when it took the partition
(`seen`), and those it wrote itself. A former owner that stalls and then finishes a snapshot round late
writes images older than the log, after the new owner's restore; such an image, followed by the new owner's
next checkpoint, would roll its key back. So a restore trusts an image only if its writer is the
checkpoint's, or it lies before the checkpoint's `seen`; anything else makes it replay the events from the
start, which is always right.

An image larger than `IMAGE_PART_BYTES` (a group of 100,000 things, a job with as many executions) is
written as parts under keys of their own, then a head under the key naming their count and digest, so
no record grows with the fleet. Parts of an image whose head was never written are caught by the digest:
the restore replays from the start.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from iotjobs.runtime.eventlog import KeyImage

CHECKPOINT_KEY = b"__checkpoint__"
IMAGE_PART_BYTES = 256 * 1024
PART_MARK = b"\x00"
"""Separates a key from a part's number: no aggregate key holds it (names are checked printable)."""


def part_key(key: bytes, number: int) -> bytes:
    return key + PART_MARK + str(number).encode()


def image_records(key: bytes, value: bytes, limit: int = IMAGE_PART_BYTES) -> list[tuple[bytes, bytes]]:
    """The records that store one image: itself, or its parts followed by the head that names them."""
    if len(value) <= limit:
        return [(key, value)]
    parts = [value[i : i + limit] for i in range(0, len(value), limit)]
    head = orjson.dumps({"parts": len(parts), "digest": hashlib.sha256(value).hexdigest()})
    return [*((part_key(key, i), part) for i, part in enumerate(parts)), (key, head)]


def checkpoint(offset: int, token: str, tokens: dict[str, str], seen: int) -> dict[str, Any]:
    return {"offset": offset, "token": token, "tokens": tokens, "seen": seen}


@dataclass
class Restart:
    """Where a restore starts: the images, the events offset to replay from and the markers in force there."""

    images: dict[str, KeyImage] = field(default_factory=dict)
    offset: int = 0
    tokens: dict[str, str] = field(default_factory=dict)
    untrusted: list[str] = field(default_factory=list)
    """Keys whose latest image the checkpoint cannot vouch for: the reason a restore starts from 0."""


@dataclass
class SnapshotFold:
    """Folds one partition of a state topic, fed in offset order, into the place a restore starts from."""

    latest: dict[bytes, tuple[int, bytes | None]] = field(default_factory=dict)

    def feed(self, offset: int, key: bytes, value: bytes | None) -> None:
        self.latest[key] = (offset, value)

    def restart(self) -> Restart:
        at, raw = self.latest.get(CHECKPOINT_KEY, (0, None))
        if raw is None:
            return Restart()  # no checkpoint: nothing vouches for any image
        found = orjson.loads(raw)
        # A checkpoint written before `seen` was recorded vouches for what was before it, as it always did.
        token, seen = found["token"], found.get("seen", at)
        images: dict[str, KeyImage] = {}
        untrusted: list[str] = []
        for key, (offset, value) in self.latest.items():
            if key == CHECKPOINT_KEY or value is None or PART_MARK in key:
                continue
            name = key.decode()
            data = self._image(key, orjson.loads(value))
            if data is None:
                untrusted.append(name)  # parts overwritten by a round whose head was never written
            elif data.get("token") == token or offset < seen:
                images[name] = KeyImage.from_dict(name, data)
            else:
                untrusted.append(name)
        if untrusted:
            return Restart(untrusted=sorted(untrusted))
        return Restart(images, found["offset"], found["tokens"])

    def _image(self, key: bytes, head: dict[str, Any]) -> dict[str, Any] | None:
        if "parts" not in head:
            return head
        parts = [self.latest.get(part_key(key, i), (0, None))[1] for i in range(head["parts"])]
        if any(part is None for part in parts):
            return None
        whole = b"".join(part for part in parts if part is not None)
        if hashlib.sha256(whole).hexdigest() != head["digest"]:
            return None
        data: dict[str, Any] = orjson.loads(whole)
        return data
