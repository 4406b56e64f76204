"""One job execution on one thing: its fields, statuses and the views other modules need."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

QUEUED = "QUEUED"
IN_PROGRESS = "IN_PROGRESS"
SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
TIMED_OUT = "TIMED_OUT"
REJECTED = "REJECTED"
REMOVED = "REMOVED"
CANCELED = "CANCELED"

ALL_STATUSES = (QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED)
TERMINAL = frozenset({SUCCEEDED, FAILED, TIMED_OUT, REJECTED, REMOVED, CANCELED})
PENDING = frozenset({QUEUED, IN_PROGRESS})
DEVICE_SETTABLE = (IN_PROGRESS, SUCCEEDED, FAILED, REJECTED)


@dataclass(frozen=True)
class Execution:
    job_id: str
    thing_name: str
    execution_number: int
    status: str
    queued_at: float
    last_updated_at: float
    version_number: int
    seq: int
    document: str
    in_progress_timeout_minutes: int | None = None
    status_details: dict[str, str] = field(default_factory=dict)
    started_at: float | None = None
    in_progress_deadline: float | None = None
    step_deadline: float | None = None
    namespace_id: str | None = None
    force_canceled: bool = False
    retry_attempt: int = 0
    scheduled: bool = False
    """Its job has a schedule (the pending list's cap is 15, not 10)."""
    presigned_url_expires_in_sec: int | None = None
    """The job's presignedUrlConfig.expiresInSec when it was queued (None: AWS's default of an hour)."""

    def __post_init__(self) -> None:
        # Every execution of a job holds the same document (up to 32 KB); each arrives in its own record, so
        # without this a thing owner holding a 100,000-thing job would keep 100,000 copies of it.
        object.__setattr__(self, "document", sys.intern(self.document))
        object.__setattr__(self, "job_id", sys.intern(self.job_id))

    @property
    def deadline(self) -> float | None:
        """The effective timeout: a step timer never extends past the in-progress deadline."""
        deadlines = [d for d in (self.in_progress_deadline, self.step_deadline) if d is not None]
        return min(deadlines) if deadlines else None

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL

    def state_view(self) -> dict[str, Any]:
        """JobExecutionState: what a rejected device request is told about the execution."""
        return {
            "status": self.status,
            "statusDetails": dict(self.status_details),
            "versionNumber": self.version_number,
        }

    def to_dict(self) -> dict[str, Any]:
        # Every field is a scalar but status_details: a shallow copy is a full one (asdict is several
        # times slower, and this runs for every device reply).
        data = dict(self.__dict__)
        data["status_details"] = dict(self.status_details)
        return data

    @staticmethod
    def from_dict(data: dict[str, Any]) -> Execution:
        return Execution(**data)


@dataclass(frozen=True)
class RecordExecutionStatus:
    """Sent by a thing to `job/{id}` whenever one of its executions changes status."""

    job_id: str
    thing_name: str
    execution_number: int
    status: str
    new: bool = False
    """A new execution the job did not count when it sent it (QueueExecution.counted false)."""


@dataclass(frozen=True)
class ForgetExecution:
    """Sent by a thing to `job/{id}` when an execution of the job was deleted from it."""

    job_id: str
    thing_name: str
    execution_number: int
    status: str | None = None
    past: bool = False
    """An earlier execution than the thing's latest was deleted (its `status` leaves the job's counts)."""
