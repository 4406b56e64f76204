"""Every event the deciders can emit has a place in the projector's folds: one it does not know stops the
projector (it exits, to be restarted and seen), so an event type added without its fold is caught here."""

from __future__ import annotations

import ast
from pathlib import Path

from iotjobs.domain import group, job, tagging, template, thing

FOLDS = Path(__file__).resolve().parents[2] / "services" / "projector" / "folds.py"


def _matched_class_names() -> set[str]:
    """The class names the folds' `match` statements name in their patterns."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(FOLDS.read_text())):
        if isinstance(node, ast.MatchClass) and isinstance(node.cls, ast.Attribute):
            names.add(node.cls.attr)
    return names


def test_every_event_has_a_fold() -> None:
    events = {cls.__name__ for module in (thing, job, group, template, tagging) for cls in module.EVENTS}
    missing = sorted(events - _matched_class_names())
    assert not missing, f"events with no case in services/projector/folds.py: {missing}"
