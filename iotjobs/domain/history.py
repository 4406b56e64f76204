"""Every execution's history (an extension: AWS keeps none): which transition each of the thing aggregate's
execution events is, and what caused it.

A transition is one event of one execution number: its status after the event, when, why, its statusDetails
and versionNumber. Causes are a closed set, each named for who or what moved the execution:

- `rollout`: the job's rollout released it (QUEUED): a target named, or a member of a target group.
- `retry`: the job's retry configuration queued it again after a FAILED or TIMED_OUT execution (QUEUED).
- `membership`: the thing joined a target group of a running CONTINUOUS job (QUEUED), or left every target of
  the job (REMOVED).
- `device`: the device's StartNextPendingJobExecution or UpdateJobExecution.
- `timer`: the in-progress or step timeout ran out (TIMED_OUT).
- `operator`: a control-plane call: CancelJobExecution, CancelJob, DeleteJobExecution, DeleteJob, DeleteThing
  (REMOVED), or CreateThing reusing a deleted thing's name (DELETED).
- `abort`: the job's abortConfig canceled the job, and the execution with it (CANCELED).

Deletion is a transition too: the history outlives DeleteJobExecution and DeleteJob, and shows the deletion
as the status DELETED (keeping the statusDetails and versionNumber the execution had).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from iotjobs.domain import thing
from iotjobs.domain.execution import QUEUED

ROLLOUT = "rollout"
RETRY = "retry"
MEMBERSHIP = "membership"
DEVICE = "device"
TIMER = "timer"
OPERATOR = "operator"
ABORT = "abort"
CAUSES = (ROLLOUT, RETRY, MEMBERSHIP, DEVICE, TIMER, OPERATOR, ABORT)

DELETED = "DELETED"
"""The status of the transition that deleted an execution: not an AWS status, the history's own."""

UPDATE_CAUSES = {
    "update": DEVICE,
    "start-next": DEVICE,
    "timeout": TIMER,
    "cancel": OPERATOR,
    "abort": ABORT,
    "removed": MEMBERSHIP,
    "thing-deleted": OPERATOR,
}
"""ExecutionUpdated.cause, as the thing decider names it, to the history's cause."""


@dataclass(frozen=True)
class Transition:
    thing_name: str
    job_id: str
    execution_number: int
    status: str
    cause: str
    at: float | None
    """None only for a deletion logged without its time: the history keeps the time of the one before."""
    status_details: dict[str, str] | None = None
    """None only for a deletion: the execution keeps the statusDetails it had."""
    version_number: int | None = None
    """None only for a deletion: a deletion does not move the versionNumber."""


def queued_cause(event: thing.ExecutionQueued) -> str:
    if event.retry_attempt > 0:
        return RETRY
    return MEMBERSHIP if event.joined else ROLLOUT


def transition(event: Any) -> Transition | None:
    """The transition an event is, or None for an event that moves no execution."""
    match event:
        case thing.ExecutionQueued():
            return Transition(
                event.thing_name,
                event.job_id,
                event.execution_number,
                QUEUED,
                queued_cause(event),
                event.queued_at,
                {},
                1,
            )
        case thing.ExecutionUpdated():
            cause = UPDATE_CAUSES.get(event.cause)
            if cause is None:
                raise ValueError(f"ExecutionUpdated cause '{event.cause}' has no history cause")
            return Transition(
                event.thing_name,
                event.job_id,
                event.execution_number,
                event.status,
                cause,
                event.last_updated_at,
                dict(event.status_details),
                event.version_number,
            )
        case thing.ExecutionDeleted():
            return Transition(event.thing_name, event.job_id, event.execution_number, DELETED, OPERATOR, event.at)
    return None
