"""The Prometheus metrics every service exports on `/metrics` (docs/operating.md#metrics).

Each service is its own process, so the metrics live in prometheus_client's default registry (with its
process and Python collectors). Labels are bounded: operation names, outcomes (status and error codes), event
types, partition numbers, roles; job ids only on the rollout gauges, which the projector keeps to recent jobs.

Hot paths reach a labelled child through a small cache (`child`), not through `labels()`, which takes a lock
and builds a key on every call.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.metrics import MetricWrapperBase

# A `_created` series beside every counter and histogram would double what is scraped.
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "iotjobs_"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Device and API round trips: a millisecond (a read from memory) to the request timeout."""
RESTORE_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

http_requests = Counter(
    "iotjobs_http_requests",
    "HTTP requests answered, by plane, operation, HTTP status and AWS error code ('' on success).",
    ["plane", "operation", "status", "error"],
)
http_duration = Histogram(
    "iotjobs_http_request_duration_seconds",
    "Time from a request's headers to its answer, by plane and operation.",
    ["plane", "operation"],
    buckets=LATENCY_BUCKETS,
)
mqtt_requests = Counter(
    "iotjobs_mqtt_requests",
    "MQTT device requests answered, by operation and outcome: 'accepted', the rejected reply's code, or "
    "'unacknowledged' when the request could not be made durable in time (no reply; the device retries).",
    ["operation", "outcome"],
)
mqtt_duration = Histogram(
    "iotjobs_mqtt_request_duration_seconds",
    "Time from a device request's arrival to its reply's publication, by operation.",
    ["operation"],
    buckets=LATENCY_BUCKETS,
)
mqtt_session_up = Gauge(
    "iotjobs_mqtt_session_up",
    "1 while the dataplane's MQTT session is connected and subscribed to the request topics, else 0.",
)
mqtt_connected_clients = Gauge(
    "iotjobs_mqtt_broker_connected_clients",
    "Clients connected to the broker, as its $SYS/broker/clients/connected last said (Mosquitto).",
)
mqtt_outgoing_waiting = Gauge(
    "iotjobs_mqtt_outgoing_waiting",
    "Replies and notifications waiting for the broker's receive window, by role.",
    ["role"],
)
requests_queued = Gauge(
    "iotjobs_requests_queued",
    "Commands and requests taken by this process's owned partitions and not yet decided, by role.",
    ["role"],
)
decisions_unconfirmed = Gauge(
    "iotjobs_decisions_unconfirmed",
    "Decisions taken by this process's owned partitions and not yet confirmed (appended and read back), by role.",
    ["role"],
)
events_appended = Counter(
    "iotjobs_events_appended",
    "Events appended to the event log and confirmed, by event type.",
    ["type"],
)
partitions_owned = Gauge(
    "iotjobs_partitions_owned",
    "Partitions this process serves (control, dataplane) or projects (projector).",
    ["role"],
)
restore_duration = Histogram(
    "iotjobs_restore_duration_seconds",
    "Time to take a partition: mark it, read its snapshots and replay the log after them.",
    ["role"],
    buckets=RESTORE_BUCKETS,
)
projector_lag_offsets = Gauge(
    "iotjobs_projector_lag_offsets",
    "Events in the log not yet applied to the read models, per partition of the events topic.",
    ["partition"],
)
projector_lag_seconds = Gauge(
    "iotjobs_projector_lag_seconds",
    "How far behind the log the read models are, per partition: 0 when caught up, else the age of the newest "
    "event applied (or the time since the partition fell behind, if later).",
    ["partition"],
)
events_projected = Counter(
    "iotjobs_projector_events_projected",
    "Events applied to the read models.",
)
projector_batch_duration = Histogram(
    "iotjobs_projector_batch_duration_seconds",
    "Time to apply one batch of events to the read models (one PostgreSQL transaction).",
    buckets=LATENCY_BUCKETS,
)

M = TypeVar("M", bound=MetricWrapperBase)
_children: dict[tuple[int, Hashable], Any] = {}


def child(metric: M, *values: str) -> M:
    """The labelled child of `metric`, cached: cheap enough for every request."""
    key = (id(metric), values)
    found = _children.get(key)
    if found is None:
        found = _children[key] = metric.labels(*values)
    return found


_appended_by_type: dict[type, Any] = {}


def count_appended(events: Iterable[Any]) -> None:
    """Count confirmed events by type; the cache is keyed by class, so counting allocates nothing."""
    for event in events:
        kind = type(event)
        counter = _appended_by_type.get(kind)
        if counter is None:
            counter = _appended_by_type[kind] = events_appended.labels(kind.__name__)
        counter.inc()


async def exposition(_request: web.Request) -> web.Response:
    """GET /metrics: the Prometheus text format."""
    response = web.Response(body=generate_latest(REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
