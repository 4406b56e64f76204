"""The records of the events topic and the one rule every reader uses to decide which of them count.

A partition of the events topic holds three kinds of record, all written by the owner of the partition:

- a **marker** (`{"marker": token, "scope": s, "epoch": n}`), appended by a new owner before it serves:
  from there on only records of scope `s` written under that token count;
- an **event** (a catalogued message with `key`, `seq`, `scope`, `owner`, and optionally `cause` and
  `outbox`);
- an **outbox** record (`{"outbox": [...], "scope": s, "owner": token}`) for a decision that sends
  commands to other aggregates without emitting an event.

A scope is the set of keys one consumer group owns (the control plane's, the device plane's): each
partition has one owner per scope. The counting rule: a record counts if and only if its `owner` token
is the token of the latest marker of its scope before it in the partition. A former owner that was
stalled while another took over can still append, but nothing it appends after the newer marker counts,
for the owner, the projector and a rebuild alike.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from iotjobs.domain.catalog import aggregate_for, from_message

MARKER_KEY = b"__marker__"
OUTBOX_KEY = b"__outbox__"

Position = tuple[int, int]
"""Where a command came from, in the order its source wrote it: (offset, index)."""


def marker(token: str, scope: str, epoch: int) -> dict[str, Any]:
    return {"marker": token, "scope": scope, "epoch": epoch}


def is_marker(record: dict[str, Any]) -> bool:
    return "marker" in record


def is_event(record: dict[str, Any]) -> bool:
    return "type" in record


@dataclass
class Counting:
    """The counting rule for one partition, fed its records in offset order."""

    tokens: dict[str, str] = field(default_factory=dict)
    """Per scope, the token of the latest marker read."""

    def counts(self, record: dict[str, Any]) -> bool:
        """Whether the record counts; a marker never counts itself but moves the rule on."""
        if is_marker(record):
            self.tokens[record["scope"]] = record["marker"]
            return False
        owner = record.get("owner")
        return owner is not None and self.tokens.get(record.get("scope", "")) == owner


def cause_of(record: dict[str, Any]) -> tuple[str, Position] | None:
    cause = record.get("cause")
    if not cause:
        return None
    return cause[0], (cause[1], cause[2])


@dataclass
class KeyImage:
    """A key as the log (or a snapshot) has it: its state, its sequence and the sources it has applied."""

    seq: int
    state: Any
    applied: dict[str, Position] = field(default_factory=dict)

    def note_applied(self, stream: str, position: Position) -> None:
        if position > self.applied.get(stream, (-1, -1)):
            self.applied[stream] = position

    def to_dict(self, key: str) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "state": aggregate_for(key).to_dict(self.state),
            "applied": {s: list(p) for s, p in self.applied.items()},
        }

    @staticmethod
    def from_dict(key: str, data: dict[str, Any]) -> KeyImage:
        applied = {s: (p[0], p[1]) for s, p in data.get("applied", {}).items()}
        return KeyImage(data["seq"], aggregate_for(key).from_dict(data["state"]), applied)


@dataclass
class Replay:
    """Folds one partition's records of one scope, from a checkpoint (or offset 0) up to a new owner's marker.

    Every record moves the counting rule on, but only the scope's own counted records are folded into its
    keys and its outbox re-sends: the other scope's owner of the partition restores and re-sends its own.
    `gap` is set when a counted event does not follow its key's sequence: the snapshot it started from
    is older than the log says (a stalled former owner wrote it late), so the caller replays from 0.
    """

    scope: str
    keys: dict[str, KeyImage]
    counting: Counting
    resend: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    """(offset, record) of counted records carrying an outbox: what may not have been sent yet."""
    gap: bool = False
    changed: set[str] = field(default_factory=set)
    """Keys whose state the replay moved past their snapshot: the next snapshot round must write them."""

    def feed(self, offset: int, record: dict[str, Any]) -> None:
        if not self.counting.counts(record) or record.get("scope") != self.scope:
            return
        if record.get("outbox"):
            self.resend.append((offset, record))
        if not is_event(record):
            return
        key = record["key"]
        image = self.keys.get(key)
        if image is None:
            image = self.keys[key] = KeyImage(0, aggregate_for(key).initial(key))
        seq = record["seq"]
        if seq <= image.seq:
            return  # the snapshot already holds it
        if seq != image.seq + 1:
            self.gap = True
            return
        image.state = aggregate_for(key).evolve(image.state, from_message(record))
        image.seq = seq
        self.changed.add(key)
        cause = cause_of(record)
        if cause is not None:
            image.note_applied(*cause)


def counted(records: Iterable[tuple[int, dict[str, Any]]], counting: Counting | None = None) -> list[dict[str, Any]]:
    """The events among one partition's records that count, in order."""
    rule = counting or Counting()
    return [record for _offset, record in records if rule.counts(record) and is_event(record)]
