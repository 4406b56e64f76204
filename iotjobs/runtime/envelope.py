"""The fields that travel around a command on Kafka, besides the command itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Positions = dict[str, int]
"""Event-topic partition (as a string, for JSON) -> offset of the last event written there."""


def merge_positions(*all_positions: Positions) -> Positions:
    merged: Positions = {}
    for positions in all_positions:
        for partition, offset in positions.items():
            merged[partition] = max(offset, merged.get(partition, -1))
    return merged


@dataclass(frozen=True)
class Inbound:
    """A command ready for its decider: from the command topic, or a timer that fell due."""

    key: str
    command: Any
    command_id: str = ""
    reply_to: dict[str, Any] | None = None
    positions: Positions = field(default_factory=dict)


def command_envelope(
    key: str, command_id: str, reply_to: dict[str, Any] | None, positions: Positions | None = None
) -> dict[str, Any]:
    return {"key": key, "id": command_id, "reply_to": reply_to, "positions": positions or {}}


def inbound_from(command: Any, envelope: dict[str, Any]) -> Inbound:
    return Inbound(
        key=envelope["key"],
        command=command,
        command_id=envelope.get("id", ""),
        reply_to=envelope.get("reply_to"),
        positions=envelope.get("positions") or {},
    )
