"""The live rollout dashboard on the control plane, outside the AWS API.

- `GET /dashboard`: the page; its scripts and styles under `/dashboard/static/`.
- `GET /_iotjobs/dashboard/jobs/{jobId}`: one job, its executions per status, its rollout rate and its
  outcomes over time (`timeline`).
- `GET /_iotjobs/dashboard/jobs/{jobId}/executions?status=&thing=&limit=`: its executions, most recently
  changed first, filtered by status and by a part of the thing name.
- `GET /_iotjobs/events/stream`: server-sent events; a `jobs` event carries every recent job with its status
  and executions per status whenever that changes (dashboard_feed.py polls once for every open stream). The
  page refreshes the job it shows when that job's entry changes.

Everything is read from the read models, so a reload, a restart or a second control instance shows the same.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from iotjobs.domain import validation as v
from iotjobs.domain.errors import invalid, not_found
from iotjobs.domain.execution import ALL_STATUSES, TERMINAL
from iotjobs.runtime import clock
from iotjobs.wire.http_app import SETTINGS_KEY
from iotjobs.wire.http_request import json_response, query_enum, query_int
from iotjobs.wire.process_details import process_details
from services.control.context import CONTROL_KEY, control
from services.control.dashboard_feed import Feed

STATIC = Path(__file__).resolve().parent / "dashboard" / "static"
PAGE = "/dashboard"
API = "/_iotjobs/dashboard"
STREAM = "/_iotjobs/events/stream"
JOBS_SHOWN = 200
"""The most recent jobs the stream carries: the page lists these."""
KEEPALIVE_SECONDS = 15.0
"""A comment line this often keeps proxies and load balancers from closing an idle stream."""
MAX_BUCKETS = 60
BUCKET_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)
SERIES = {
    "released": ("QUEUED",),  # every execution queued (released to its thing), whatever its status now
    "succeeded": ("SUCCEEDED",),
    "failed": ("FAILED", "REJECTED", "TIMED_OUT"),
    "canceled": ("CANCELED", "REMOVED"),
}

FEED_KEY = web.AppKey("dashboard_feed", Feed)


# --- pure: the outcomes-over-time chart ---------------------------------------------------------------------


def bucket_seconds(span_seconds: float, max_buckets: int = MAX_BUCKETS) -> int:
    """The smallest round interval that shows `span_seconds` in at most `max_buckets` bars."""
    for step in BUCKET_STEPS:
        if math.ceil(span_seconds / step) <= max_buckets:
            return step
    return math.ceil(span_seconds / max_buckets / BUCKET_STEPS[-1]) * BUCKET_STEPS[-1]


def timeline(start: float, end: float, counts: list[tuple[int, str, int]]) -> dict[str, Any]:
    """Executions released and finished per interval from `start` to `end`: `counts` are (interval index,
    status, executions) where QUEUED counts releases and a terminal status counts finishes."""
    step = bucket_seconds(max(end - start, 1.0))
    buckets = max(1, math.ceil(max(end - start, 1.0) / step))
    series = {name: [0] * buckets for name in SERIES}
    for index, status, n in counts:
        for name, statuses in SERIES.items():
            if status in statuses:
                series[name][min(max(index, 0), buckets - 1)] += n
    return {"start": start, "bucketSeconds": step, "series": series}


def progress(by_status: dict[str, int] | None) -> dict[str, int]:
    """Executions in all, and those that reached a terminal status."""
    counts = by_status or {}
    return {
        "total": sum(counts.values()),
        "done": sum(n for status, n in counts.items() if status in TERMINAL),
    }


# --- reads ---------------------------------------------------------------------------------------------------


def _job_summary(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "jobId": row["job_id"],
        "status": row["status"],
        "description": row["description"],
        "createdAt": row["created_at"],
        "lastUpdatedAt": row["last_updated_at"],
        "completedAt": row["completed_at"],
        "byStatus": row["by_status"] or {},
        "progress": progress(row["by_status"]),
        "rollingOut": bool(row["processing_targets"]),
    }


async def jobs_snapshot(pool: asyncpg.Pool) -> bytes:
    """The stream's payload: the most recent jobs with their executions per status, in one query."""
    rows = await pool.fetch(
        """SELECT j.job_id, j.status, j.description, j.created_at, j.last_updated_at, j.completed_at,
                  j.processing_targets,
                  (SELECT jsonb_object_agg(c.status, c.n) FROM job_execution_counts c WHERE c.job_id = j.job_id)
                      AS by_status
           FROM jobs j ORDER BY j.created_at DESC, j.job_id DESC LIMIT $1""",
        JOBS_SHOWN,
    )
    return orjson.dumps({"jobs": [_job_summary(row) for row in rows]})


async def describe(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    row = await ctl.pool.fetchrow(
        """SELECT j.*, (SELECT jsonb_object_agg(c.status, c.n) FROM job_execution_counts c WHERE c.job_id = $1)
               AS by_status
           FROM jobs j WHERE j.job_id = $1""",
        job_id,
    )
    if row is None:
        raise not_found(f"Job {job_id} does not exist")
    now = clock.now()
    minute = ctl.settings.seconds_per_minute
    terminal = sorted(TERMINAL)
    recent = await ctl.pool.fetchrow(
        """SELECT max(last_updated_at) AS last,
                  count(*) FILTER (WHERE queued_at > $2) AS released,
                  count(*) FILTER (WHERE status = ANY($3::text[]) AND last_updated_at > $2) AS finished
           FROM job_executions WHERE job_id = $1""",
        job_id,
        now - minute,
        terminal,
    )
    start = row["created_at"]
    end = now if row["completed_at"] is None else max(row["completed_at"], recent["last"] or start)
    step = bucket_seconds(max(end - start, 1.0))
    counts = await ctl.pool.fetch(
        """SELECT floor((queued_at - $2) / $3)::int AS bucket, 'QUEUED' AS status, count(*)::int AS n
           FROM job_executions WHERE job_id = $1 GROUP BY 1
           UNION ALL
           SELECT floor((last_updated_at - $2) / $3)::int, status, count(*)::int
           FROM job_executions WHERE job_id = $1 AND status = ANY($4::text[]) GROUP BY 1, 2""",
        job_id,
        start,
        float(step),
        terminal,
    )
    config = row["spec"].get("config") or {}
    return json_response(
        {
            "job": {
                **_job_summary(row),
                "targets": row["targets"],
                "jobProcessDetails": process_details(row["by_status"], row["processing_targets"]),
                "rolloutConfig": config.get("jobExecutionsRolloutConfig"),
                "abortConfig": config.get("abortConfig"),
            },
            "rate": {
                "minuteSeconds": minute,
                "releasedLastMinute": recent["released"],
                "finishedLastMinute": recent["finished"],
            },
            "timeline": timeline(start, end, [(r["bucket"], r["status"], r["n"]) for r in counts]),
        }
    )


async def executions(request: web.Request) -> web.Response:
    ctl = control(request)
    job_id = v.check_job_id(request.match_info["jobId"])
    status = query_enum(request, "status", ALL_STATUSES)
    thing = request.query.get("thing") or None
    if thing is not None and len(thing) > 128:
        raise invalid(f"thing must be a part of a thing name, at most 128 characters, got {len(thing)}")
    limit = query_int(request, "limit")
    limit = 100 if limit is None else limit
    if not 1 <= limit <= 500:
        raise invalid(f"limit must be from 1 to 500, got {limit}")
    rows = await ctl.pool.fetch(
        """SELECT thing_name, execution_number, status, status_details, queued_at, started_at, last_updated_at,
                  version_number, retry_attempt, count(*) OVER () AS matching
           FROM job_executions
           WHERE job_id = $1 AND ($2::text IS NULL OR status = $2)
             AND ($3::text IS NULL OR strpos(lower(thing_name), lower($3)) > 0)
           ORDER BY last_updated_at DESC, thing_name, execution_number DESC LIMIT $4""",
        job_id,
        status,
        thing,
        limit,
    )
    if not rows and await ctl.pool.fetchval("SELECT 1 FROM jobs WHERE job_id = $1", job_id) is None:
        raise not_found(f"Job {job_id} does not exist")
    return json_response(
        {
            "matching": rows[0]["matching"] if rows else 0,
            "executions": [
                {
                    "thingName": r["thing_name"],
                    "executionNumber": r["execution_number"],
                    "status": r["status"],
                    "statusDetails": r["status_details"],
                    "queuedAt": r["queued_at"],
                    "startedAt": r["started_at"],
                    "lastUpdatedAt": r["last_updated_at"],
                    "versionNumber": r["version_number"],
                    "retryAttempt": r["retry_attempt"],
                }
                for r in rows
            ],
        }
    )


# --- the page and the stream -----------------------------------------------------------------------------------


async def page(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache"})


async def stream(request: web.Request) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # nginx and its kin would hold events back in a buffer
        }
    )
    await response.prepare(request)
    async with request.app[FEED_KEY].subscribe() as updates:
        try:
            while True:
                try:
                    update = await _next(updates)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if update is None:  # the service is shutting down: end the stream; the page reconnects
                    await response.write_eof()
                    break
                await response.write(b"event: jobs\ndata: " + update + b"\n\n")
        except ConnectionError:
            pass  # the browser went away (a tab closed, a reload): nobody to answer
    return response


async def _next(updates: asyncio.Queue[bytes | None]) -> bytes | None:
    async with asyncio.timeout(KEEPALIVE_SECONDS):
        return await updates.get()


async def _close_streams(app: web.Application) -> None:
    await app[FEED_KEY].close()


def add_routes(app: web.Application) -> None:
    app[FEED_KEY] = Feed(lambda: jobs_snapshot(app[CONTROL_KEY].pool), app[SETTINGS_KEY].dashboard_poll_seconds)
    app.on_shutdown.append(_close_streams)
    app.router.add_get(PAGE, page)
    app.router.add_get(PAGE + "/", page)
    app.router.add_static(PAGE + "/static/", STATIC)
    app.router.add_get(API + "/jobs/{jobId}", describe)
    app.router.add_get(API + "/jobs/{jobId}/executions", executions)
    app.router.add_get(STREAM, stream)
