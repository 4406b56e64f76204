"""The job-concurrency quota (key `quota/jobs`; aws-iot-jobs.md §6.1): how many jobs may roll out at once.

A job rolling out holds a slot until its rollout ends. A job created to start at once takes one whatever the
count (the control plane refused it beforehand if the quota was full); a scheduled job asks for one at its
start time and is CANCELED if none is free. The limit comes with each request (IOTJOBS_MAX_CONCURRENT_JOBS);
0 means unlimited and no slots are kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from iotjobs.domain.decision import Context, Decision, Send

KEY = "quota/jobs"
PREFIX = "quota/"


@dataclass(frozen=True)
class ClaimSlot:
    job_id: str
    limit: int
    force: bool = False
    """Taken even beyond the limit (a job that starts at creation, checked by the control plane)."""


@dataclass(frozen=True)
class ReleaseSlot:
    job_id: str


@dataclass(frozen=True)
class SlotAnswer:
    """To the job: whether it holds a slot now."""

    job_id: str
    granted: bool
    limit: int


@dataclass(frozen=True)
class SlotTaken:
    job_id: str


@dataclass(frozen=True)
class SlotFreed:
    job_id: str


COMMANDS = (ClaimSlot, ReleaseSlot)
EVENTS = (SlotTaken, SlotFreed)
REPLIES: tuple[type, ...] = ()


@dataclass(frozen=True)
class QuotaState:
    holders: frozenset[str] = field(default_factory=frozenset)

    def to_dict(self) -> dict[str, Any]:
        return {"holders": sorted(self.holders)}

    @staticmethod
    def from_dict(data: dict[str, Any]) -> QuotaState:
        return QuotaState(frozenset(data["holders"]))


def initial(_key: str) -> QuotaState:
    return QuotaState()


def evolve(state: QuotaState, event: Any) -> QuotaState:
    match event:
        case SlotTaken():
            return replace(state, holders=state.holders | {event.job_id})
        case SlotFreed():
            return replace(state, holders=state.holders - {event.job_id})
    raise TypeError(f"quota cannot apply {type(event).__name__}")


def decide(state: QuotaState, command: Any, _ctx: Context) -> Decision:
    match command:
        case ClaimSlot():
            job = f"job/{command.job_id}"
            if command.job_id in state.holders:
                return Decision(sends=(Send(job, SlotAnswer(command.job_id, True, command.limit)),))
            if command.force or len(state.holders) < command.limit:
                answer = Send(job, SlotAnswer(command.job_id, True, command.limit))
                return Decision(events=(SlotTaken(command.job_id),), sends=(answer,))
            return Decision(sends=(Send(job, SlotAnswer(command.job_id, False, command.limit)),))
        case ReleaseSlot():
            if command.job_id not in state.holders:
                return Decision()
            return Decision(events=(SlotFreed(command.job_id),))
    raise TypeError(f"quota cannot handle {type(command).__name__}")
