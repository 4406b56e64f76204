"""What the projector shows operators: its lag behind the log, its health, and every recent job's rollout
progress, on a small HTTP server (`/health`, `/metrics`) at IOTJOBS_PROJECTOR_HOST:IOTJOBS_PROJECTOR_PORT.

Health: 200 while the projecting loop runs and keeps up; 503 while it starts, once the loop has ended, when
a partition has had events to apply and none applied for `projector_stall_seconds`, or when its lag could not
be measured for that long (Kafka out of reach). The body says which.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson
from aiohttp import web
from aiokafka import TopicPartition
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from iotjobs.runtime import logs, metrics
from iotjobs.runtime.settings import Settings

log = logs.get("iotjobs.projector")

LAG_INTERVAL_SECONDS = 1.0
ROLLOUT_INTERVAL_SECONDS = 2.0
RECENT_JOB_SECONDS = 3600.0
"""Jobs that ended longer ago than this leave the rollout gauges (with those deleted)."""
ROLLOUT_JOBS_MAX = 500
"""At most this many jobs (the most recently updated) have rollout gauges: a bound on the series."""


@dataclass
class Progress:
    """Per partition of the events topic: how far the projector has applied it, and when."""

    next_offset: dict[int, int] = field(default_factory=dict)
    newest_appended_at: dict[int, float] = field(default_factory=dict)
    """Epoch seconds at which the newest event applied was appended."""
    applied_at: dict[int, float] = field(default_factory=dict)
    """Monotonic time of the last batch applied."""

    def seeked(self, partition: int, offset: int) -> None:
        self.next_offset[partition] = offset

    def applied(self, partition: int, records: list[Any]) -> None:
        last = records[-1]
        self.next_offset[partition] = last.offset + 1
        if last.timestamp is not None and last.timestamp >= 0:
            self.newest_appended_at[partition] = last.timestamp / 1000
        self.applied_at[partition] = time.monotonic()


class Lag:
    """Samples the log's ends against the projector's progress into the lag gauges, and judges health."""

    def __init__(self, settings: Settings, progress: Progress) -> None:
        self.settings = settings
        self.progress = progress
        self.behind: dict[int, int] = {}
        self.behind_since: dict[int, tuple[float, float]] = {}
        """Per partition behind the log: since when (epoch, monotonic) it has been behind."""
        self.measured_at: float | None = None
        self.started_at = time.monotonic()

    def sample(self, ends: dict[int, int]) -> None:
        wall, mono = time.time(), time.monotonic()
        for partition in list(self.behind):
            if partition not in ends:  # revoked: another projector shows it now
                self.behind.pop(partition)
                self.behind_since.pop(partition, None)
                metrics.projector_lag_offsets.remove(str(partition))
                metrics.projector_lag_seconds.remove(str(partition))
        for partition, end in ends.items():
            behind = max(0, end - self.progress.next_offset.get(partition, 0))
            self.behind[partition] = behind
            if behind == 0:
                self.behind_since.pop(partition, None)
                seconds = 0.0
            else:
                since_wall, _ = self.behind_since.setdefault(partition, (wall, mono))
                newest = self.progress.newest_appended_at.get(partition, since_wall)
                seconds = max(0.0, wall - max(newest, since_wall))
            metrics.projector_lag_offsets.labels(str(partition)).set(behind)
            metrics.projector_lag_seconds.labels(str(partition)).set(seconds)
        self.measured_at = mono

    def stalled(self) -> list[int]:
        """Partitions with events to apply and none applied for `projector_stall_seconds`."""
        now, limit = time.monotonic(), self.settings.projector_stall_seconds
        out = []
        for partition, (_wall, since) in self.behind_since.items():
            last = max(since, self.progress.applied_at.get(partition, since))
            if now - last > limit:
                out.append(partition)
        return sorted(out)

    def measured_recently(self) -> bool:
        last = self.measured_at if self.measured_at is not None else self.started_at
        return time.monotonic() - last <= self.settings.projector_stall_seconds


async def follow_lag(lag: Lag, consumer: Any, topic: str) -> None:
    """Every second: the ends of the partitions this projector is assigned, against what it applied."""
    while True:
        await asyncio.sleep(LAG_INTERVAL_SECONDS)
        assigned = [tp for tp in consumer.assignment() if tp.topic == topic]
        try:
            ends: dict[TopicPartition, int] = (
                await asyncio.wait_for(consumer.end_offsets(assigned), 5.0) if assigned else {}
            )
        except Exception as err:  # Kafka out of reach: the health check notices the silence
            log.debug("measuring the projector's lag failed", error=repr(err))
            continue
        lag.sample({tp.partition: end for tp, end in ends.items()})


# --- rollout progress -------------------------------------------------------------------------------

ROLLOUT_QUERY = """
    SELECT j.job_id, j.status,
           (j.spec->'config'->'jobExecutionsRolloutConfig'->>'maximumPerMinute')::double precision AS max_per_minute,
           COALESCE(jsonb_object_agg(c.status, c.n) FILTER (WHERE c.status IS NOT NULL), '{}'::jsonb) AS counts
      FROM jobs j LEFT JOIN job_execution_counts c ON c.job_id = j.job_id
     WHERE j.completed_at IS NULL OR j.completed_at > $1
     GROUP BY j.job_id
     ORDER BY j.last_updated_at DESC
     LIMIT $2"""

ROLLOUTS_NAME = "iotjobs-rollouts"
EXECUTION_STATUSES = ("QUEUED", "IN_PROGRESS", "SUCCEEDED", "FAILED", "TIMED_OUT", "REJECTED", "REMOVED", "CANCELED")
JOB_STATUSES = ("SCHEDULED", "IN_PROGRESS", "CANCELED", "DELETION_IN_PROGRESS", "COMPLETED")


@dataclass(frozen=True)
class JobProgress:
    job_id: str
    status: str
    max_per_minute: float | None
    counts: dict[str, int]


class RolloutCollector(Collector):
    """Rollout gauges per job, from the last read of the job read model: a job deleted, or ended longer ago
    than RECENT_JOB_SECONDS, is simply absent from the next read, so its series go."""

    def __init__(self) -> None:
        self.jobs: list[JobProgress] = []

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        yield from self._families(self.jobs)

    @staticmethod
    def _families(jobs: list[JobProgress] = ()) -> Iterator[Metric]:  # type: ignore[assignment]
        executions = GaugeMetricFamily(
            "iotjobs_job_executions",
            "A recent job's executions by status (the job read model's counts).",
            labels=["job_id", "status"],
        )
        notified = GaugeMetricFamily(
            "iotjobs_job_things_notified",
            "Things a recent job has been released to so far (its executions, whatever their status).",
            labels=["job_id"],
        )
        status = GaugeMetricFamily(
            "iotjobs_job_status", "1 for a recent job's status (the job read model's).", labels=["job_id", "status"]
        )
        rate = GaugeMetricFamily(
            "iotjobs_job_rollout_maximum_per_minute",
            "A recent job's configured rollout rate (jobExecutionsRolloutConfig.maximumPerMinute), when set.",
            labels=["job_id"],
        )
        for job in jobs:
            for name in EXECUTION_STATUSES:
                executions.add_metric([job.job_id, name], job.counts.get(name, 0))
            notified.add_metric([job.job_id], sum(job.counts.values()))
            status.add_metric([job.job_id, job.status], 1)
            if job.max_per_minute is not None:
                rate.add_metric([job.job_id], job.max_per_minute)
        yield from (executions, notified, status, rate)


async def follow_rollouts(settings: Settings, collector: RolloutCollector) -> None:
    """Every few seconds: the recent jobs' progress from the read models, on a connection of its own."""
    conn: asyncpg.Connection | None = None
    try:
        while True:
            try:
                if conn is None or conn.is_closed():
                    conn = await asyncpg.connect(settings.pg_dsn, server_settings={"application_name": ROLLOUTS_NAME})
                rows = await conn.fetch(ROLLOUT_QUERY, time.time() - RECENT_JOB_SECONDS, ROLLOUT_JOBS_MAX)
                collector.jobs = [_progress(row) for row in rows]
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as err:
                log.debug("reading the rollouts' progress failed", error=repr(err))
                if conn is not None:
                    conn.terminate()
                    conn = None
            await asyncio.sleep(ROLLOUT_INTERVAL_SECONDS)
    finally:
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


def _progress(row: Any) -> JobProgress:
    counts = row["counts"]
    if isinstance(counts, str):  # asyncpg hands jsonb over as text without a codec
        counts = orjson.loads(counts)
    return JobProgress(row["job_id"], row["status"], row["max_per_minute"], {k: int(v) for k, v in counts.items()})


# --- the HTTP server -------------------------------------------------------------------------------

LAG_KEY = web.AppKey("lag", Lag)
RUNNING_KEY = web.AppKey("running", list[asyncio.Task[None]])
"""The projecting loop, once it started (empty until then)."""


async def health(request: web.Request) -> web.Response:
    lag = request.app[LAG_KEY]
    running = request.app[RUNNING_KEY]
    stalled = lag.stalled()
    checks = {
        "projecting": bool(running) and not running[0].done(),
        "lag_measured": lag.measured_recently(),
        "not_stalled": not stalled,
    }
    ready = all(checks.values())
    body = {"ready": ready, "checks": checks, "stalled_partitions": stalled, "behind": lag.behind}
    return web.json_response(body, status=200 if ready else 503)


def app(lag: Lag) -> web.Application:
    served = web.Application()
    served[LAG_KEY] = lag
    served[RUNNING_KEY] = []
    served.router.add_get("/health", health)
    served.router.add_get("/metrics", metrics.exposition)
    return served


def register_rollouts() -> RolloutCollector:
    collector = RolloutCollector()
    REGISTRY.register(collector)
    return collector
