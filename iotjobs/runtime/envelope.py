"""Where a write's events landed: what read-your-writes waits for."""

from __future__ import annotations

Positions = dict[str, int]
"""Event-topic partition (as a string, for JSON) -> offset of the last event written there."""


def merge_positions(*all_positions: Positions) -> Positions:
    merged: Positions = {}
    for positions in all_positions:
        for partition, offset in positions.items():
            merged[partition] = max(offset, merged.get(partition, -1))
    return merged
