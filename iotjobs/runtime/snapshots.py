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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from iotjobs.runtime.eventlog import KeyImage

CHECKPOINT_KEY = b"__checkpoint__"


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

    latest: dict[bytes, tuple[int, dict[str, Any] | None]] = field(default_factory=dict)

    def feed(self, offset: int, key: bytes, value: dict[str, Any] | None) -> None:
        self.latest[key] = (offset, value)

    def restart(self) -> Restart:
        at, found = self.latest.get(CHECKPOINT_KEY, (0, None))
        if found is None:
            return Restart()  # no checkpoint: nothing vouches for any image
        # A checkpoint written before `seen` was recorded vouches for what was before it, as it always did.
        token, seen = found["token"], found.get("seen", at)
        images: dict[str, KeyImage] = {}
        untrusted: list[str] = []
        for key, (offset, data) in self.latest.items():
            if key == CHECKPOINT_KEY or data is None:
                continue
            name = key.decode()
            if data.get("token") == token or offset < seen:
                images[name] = KeyImage.from_dict(name, data)
            else:
                untrusted.append(name)
        if untrusted:
            return Restart(untrusted=sorted(untrusted))
        return Restart(images, found["offset"], found["tokens"])
