"""The JOB and JOB_EXECUTION events of AWS IoT (aws-iot-jobs.md §7.7) on `$aws/events/job/<jobId>/<operation>`
and `$aws/events/jobExecution/<jobId>/<operation>`, published by the projector while UpdateEventConfigurations
has them enabled.

The projector sees every event once, in order, with the read models beside it: a JOB event carries the job
as the read model has it after the batch (its jobProcessDetails too). Messages are published before the
batch's transaction commits, so a batch that is projected again publishes again (the same `eventId`): at least
once while the broker is up. While it is not, events are dropped rather than holding the read models back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import orjson
from gmqtt import Client
from gmqtt.mqtt.constants import MQTTv311

from iotjobs.domain import event_config, job, thing
from iotjobs.domain.arns import Arns
from iotjobs.domain.execution import TERMINAL
from iotjobs.runtime import logs
from iotjobs.runtime.settings import Settings
from iotjobs.wire.broker_connection import authenticated
from iotjobs.wire.outgoing import Outgoing
from iotjobs.wire.process_details import process_details

log = logs.get("iotjobs.projector.events")

JOB_OPERATIONS: dict[type, tuple[str, str]] = {
    job.JobCompleted: ("completed", "COMPLETED"),
    job.JobCanceled: ("canceled", "CANCELED"),
    job.JobDeletionStarted: ("deletion_in_progress", "DELETION_IN_PROGRESS"),
    job.JobDeleted: ("deleted", "DELETION_IN_PROGRESS"),
}
CONNECT_TIMEOUT = 5.0
RETRY_CONNECT_AFTER = 5.0


@dataclass(frozen=True)
class Happened:
    """An event of a batch that may be published, and where it is in the log (its eventId comes from there)."""

    event: Any
    position: str


def wanted(event: Any) -> bool:
    if type(event) in JOB_OPERATIONS or isinstance(event, thing.ExecutionDeleted):
        return True
    return isinstance(event, thing.ExecutionUpdated) and event.status in TERMINAL


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)


def _event_id(position: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"iotjobs-event:{position}"))


class JobEvents:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.arns = Arns(settings.region, settings.account_id)
        self._client: Client | None = None
        self._outgoing: Outgoing | None = None
        self._next_try = 0.0

    async def enabled(self, conn: asyncpg.Connection) -> set[str]:
        rows = await conn.fetch(
            "SELECT event_type FROM event_configurations WHERE enabled AND event_type = ANY($1::text[])",
            list(event_config.PUBLISHED),
        )
        return {row["event_type"] for row in rows}

    async def before(self, conn: asyncpg.Connection, happened: list[Happened]) -> dict[str, Any]:
        """The jobs a batch deletes, as they were: a `deleted` event still describes its job."""
        gone = [h.event.job_id for h in happened if isinstance(h.event, job.JobDeleted)]
        if not gone:
            return {}
        return {row["job_id"]: row for row in await conn.fetch("SELECT * FROM jobs WHERE job_id = ANY($1)", gone)}

    async def messages(
        self, conn: asyncpg.Connection, happened: list[Happened], types: set[str], before: dict[str, Any]
    ) -> list[tuple[str, bytes]]:
        now = int(time.time())
        out: list[tuple[str, bytes]] = []
        jobs = [h for h in happened if type(h.event) in JOB_OPERATIONS] if "JOB" in types else []
        rows = {}
        if jobs:
            ids = sorted({h.event.job_id for h in jobs})
            rows = {
                row["job_id"]: row
                for row in await conn.fetch(
                    """SELECT jobs.*, (SELECT jsonb_object_agg(status, n) FROM job_execution_counts c
                                       WHERE c.job_id = jobs.job_id) AS by_status
                       FROM jobs WHERE job_id = ANY($1)""",
                    ids,
                )
            }
        for h in happened:
            if type(h.event) in JOB_OPERATIONS and "JOB" in types:
                row = rows.get(h.event.job_id) or before.get(h.event.job_id)
                out.append(self._job_message(h, row, now))
            elif "JOB_EXECUTION" in types and isinstance(h.event, thing.ExecutionUpdated | thing.ExecutionDeleted):
                out.append(self._execution_message(h, now))
        return out

    def _job_message(self, h: Happened, row: Any, now: int) -> tuple[str, bytes]:
        operation, status = JOB_OPERATIONS[type(h.event)]
        body: dict[str, Any] = {
            "eventType": "JOB",
            "eventId": _event_id(h.position),
            "timestamp": now,
            "operation": operation,
            "jobId": h.event.job_id,
            "status": status,
        }
        if row is not None:
            body.update(
                targetSelection=row["target_selection"],
                targets=row["targets"],
                description=row["description"],
                createdAt=_ms(row["created_at"]),
                lastUpdatedAt=_ms(row["last_updated_at"]),
                completedAt=_ms(row["completed_at"]),
                comment=row["comment"],
            )
            if "by_status" in row:
                body["jobProcessDetails"] = process_details(row["by_status"], row["processing_targets"])
        payload = {k: v for k, v in body.items() if v is not None}
        return f"$aws/events/job/{h.event.job_id}/{operation}", orjson.dumps(payload)

    def _execution_message(self, h: Happened, now: int) -> tuple[str, bytes]:
        event = h.event
        body: dict[str, Any] = {
            "eventType": "JOB_EXECUTION",
            "eventId": _event_id(h.position),
            "timestamp": now,
            "jobId": event.job_id,
            "thingArn": self.arns.thing(event.thing_name),
        }
        if isinstance(event, thing.ExecutionDeleted):
            body["operation"] = "deleted"
        else:
            body.update(operation=event.status.lower(), status=event.status, statusDetails=event.status_details)
        return f"$aws/events/jobExecution/{event.job_id}/{body['operation']}", orjson.dumps(body)

    async def publish(self, messages: list[tuple[str, bytes]]) -> None:
        if not messages:
            return
        outgoing = await self._connected()
        if outgoing is None:
            log.warning("events not published: the broker is unreachable", dropped=len(messages))
            return
        for topic, payload in messages:
            outgoing.publish(topic, payload)

    async def _connected(self) -> Outgoing | None:
        if self._client is not None and self._client.is_connected and self._outgoing is not None:
            return self._outgoing
        if time.monotonic() < self._next_try:
            return None
        client = Client(f"iotjobs-events-{self.settings.instance_id}-{uuid.uuid4().hex[:6]}")
        try:
            await asyncio.wait_for(
                client.connect(
                    self.settings.mqtt_host,
                    self.settings.mqtt_port,
                    version=MQTTv311,
                    **authenticated(client, self.settings),
                ),
                CONNECT_TIMEOUT,
            )
        except Exception as err:  # any failure to connect: drop this batch's events, try again later
            self._next_try = time.monotonic() + RETRY_CONNECT_AFTER
            log.warning("cannot connect to the broker for events", error=repr(err))
            return None
        self._client, self._outgoing = client, Outgoing(client, "projector")
        return self._outgoing

    async def stop(self) -> None:
        if self._client is not None:
            try:
                await asyncio.wait_for(self._client.disconnect(), CONNECT_TIMEOUT)
            except Exception as err:  # stopping: nothing more to do with a broken connection
                log.info("events connection closed uncleanly", error=repr(err))
