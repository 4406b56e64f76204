"""What a new job tells the registry about its targets, so that a thing that leaves them loses its
pending execution (aws-iot-jobs.md §6.9). Shared by the job and registry modules, like
`execution.RecordExecutionStatus` is by the thing and job modules.
"""

from __future__ import annotations

from dataclasses import dataclass

REGISTRY_KEY = "registry"
TARGETS_CHUNK = 1000
"""Things per command when a job's resolved targets are streamed to it: no record grows with the fleet."""


@dataclass(frozen=True)
class RecordJobTargets:
    """Sent by `job/{id}` to the registry once the job exists (a duplicate CreateJob never sends it).

    `released` are the things the job queued an execution on: the members the registry resolved for it.
    """

    job_id: str
    thing_names: list[str]
    group_names: list[str]
    released: list[str]
    continuous: bool = False


@dataclass(frozen=True)
class ReleaseTargets:
    """Sent by the registry to a new `job/{id}` right after its CreateJob: the next chunk of the things its
    targets resolved to. `release` ties the chunks to the CreateJob they follow; `last` ends the stream."""

    job_id: str
    thing_names: list[str]
    release: str
    last: bool


def chunked(names: list[str], size: int = TARGETS_CHUNK) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


@dataclass(frozen=True)
class AddThingsToJob:
    """Sent by the registry to a CONTINUOUS `job/{id}` when things join its targets (§6.9)."""

    job_id: str
    thing_names: list[str]


def target_names(arns: list[str]) -> tuple[list[str], list[str]]:
    """(thing names, thing-group names) named by job target ARNs, each once, in order.

    The control plane has already checked the ARNs; anything else is ignored.
    """
    things: dict[str, None] = {}
    groups: dict[str, None] = {}
    for arn in arns:
        parts = arn.split(":", 5)
        if len(parts) != 6:
            continue
        kind, _, name = parts[5].partition("/")
        if kind == "thing" and name:
            things[name] = None
        elif kind == "thinggroup" and name:
            groups[name] = None
    return list(things), list(groups)
