"""Reading the execution history read model (migrations/010_execution_history.sql): the one query the
control plane's extension operation and `iotjobs-admin history` share, so both show the same entries."""

from __future__ import annotations

from typing import Any, Protocol


class Fetcher(Protocol):
    async def fetch(self, query: str, *args: Any) -> list[Any]: ...


async def entries(db: Fetcher, thing_name: str, job_id: str) -> list[dict[str, Any]]:
    """Every transition of every execution number of the job on the thing, oldest first, in the wire form of
    `GET /_iotjobs/things/{thingName}/jobs/{jobId}/history`; empty if the thing never had one."""
    rows = await db.fetch(
        """SELECT execution_number, status, at, cause, status_details, version_number FROM execution_history
           WHERE thing_name = $1 AND job_id = $2 ORDER BY seq""",
        thing_name,
        job_id,
    )
    return [
        {
            "executionNumber": row["execution_number"],
            "status": row["status"],
            "at": row["at"],
            "cause": row["cause"],
            "statusDetails": row["status_details"],
            "versionNumber": row["version_number"],
        }
        for row in rows
    ]
