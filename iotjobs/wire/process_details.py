"""jobProcessDetails: a job's executions counted per status under AWS's member names, shared by DescribeJob and
the JOB events the projector publishes."""

from __future__ import annotations

from typing import Any

COUNTERS = {
    "CANCELED": "numberOfCanceledThings",
    "SUCCEEDED": "numberOfSucceededThings",
    "FAILED": "numberOfFailedThings",
    "REJECTED": "numberOfRejectedThings",
    "QUEUED": "numberOfQueuedThings",
    "IN_PROGRESS": "numberOfInProgressThings",
    "REMOVED": "numberOfRemovedThings",
    "TIMED_OUT": "numberOfTimedOutThings",
}


def process_details(by_status: dict[str, int] | None, processing: list[str]) -> dict[str, Any]:
    """Executions per status (every execution, retries too, as AWS counts them), and the targets the job is
    still rolling out to while there are any."""
    counts: dict[str, Any] = dict.fromkeys(COUNTERS.values(), 0)
    for status, n in (by_status or {}).items():
        counts[COUNTERS[status]] = n
    if processing:
        counts["processingTargets"] = list(processing)
    return counts
