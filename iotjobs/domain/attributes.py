"""Registry attributes (`attributePayload`) of things and thing groups, as UpdateThing and UpdateThingGroup
change them (aws-iot-jobs.md §3.4)."""

from __future__ import annotations


def updated(current: dict[str, str], given: dict[str, str], merge: bool) -> dict[str, str]:
    """The attributes after an update: with `merge` the given ones are added to the stored ones (overwriting
    those of the same name), without it they replace them all. An empty value removes its attribute."""
    combined = {**current, **given} if merge else dict(given)
    return {name: value for name, value in combined.items() if value != ""}
