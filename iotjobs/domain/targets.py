"""The messages between jobs, things and thing groups about who a job targets (aws-iot-jobs.md §6.9), shared
by the job, group and thing modules like `execution.RecordExecutionStatus` is by the thing and job modules.

A job reaches its things without any record holding them all: each target group streams its own members
to the job in chunks of `TARGETS_CHUNK` and passes the targeting on to its children, which do the same.
The job knows its release is complete when every stream it was told of has ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GROUP_PREFIX = "group/"
TARGETS_CHUNK = 1000
"""Things per command when a group streams its members to a job: no record grows with the fleet."""


@dataclass(frozen=True)
class TargetGroup:
    """From a new job (or a group passing it on to a child): stream your members to the job, and if the job
    is CONTINUOUS keep it, so that things joining later get its execution.

    `release` ties the stream to the job it is for (a job id can be used again); `path` names the stream:
    the target group, then each child on the way down."""

    group_name: str
    job_id: str
    release: str
    continuous: bool
    path: str


@dataclass(frozen=True)
class ReleaseTargets:
    """From a group to a job: the next chunk of the things in one stream. `last` ends the stream, and names
    the streams of the group's children that the job is to wait for as well."""

    job_id: str
    thing_names: list[str]
    release: str
    last: bool
    path: str = ""
    streams: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class AddThingsToJob:
    """From a group to a CONTINUOUS job it follows: things that joined the group (§6.9)."""

    job_id: str
    thing_names: list[str]
    via: str | None = None
    """The group they joined: a thing that left it again before its execution arrives refuses it."""


@dataclass(frozen=True)
class ForgetJob:
    """From a deleted job to the groups it targeted, and on to their children: stop following it."""

    group_name: str
    job_id: str


@dataclass(frozen=True)
class CheckReach:
    """From a thing that left a group to each job with an execution pending on it: do your targets still
    reach me? `groups` are the groups it is still in and their ancestors."""

    job_id: str
    thing_name: str
    groups: list[str]


@dataclass(frozen=True)
class MemberJoined:
    """From a thing that joined a group, to the group."""

    group_name: str
    thing_name: str


@dataclass(frozen=True)
class MemberLeft:
    """From a thing that left a group, or was deleted, to the group."""

    group_name: str
    thing_name: str


def group_key(group_name: str) -> str:
    return f"{GROUP_PREFIX}{group_name}"


def chunked(names: list[str], size: int = TARGETS_CHUNK) -> list[list[str]]:
    return [names[i : i + size] for i in range(0, len(names), size)]


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
