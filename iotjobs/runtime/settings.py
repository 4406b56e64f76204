"""One frozen settings object, read from IOTJOBS_* variables; shared by the native stack, compose and k8s."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

PREFIX = "IOTJOBS_"
CHOICES = {
    "mqtt_ingress": ("direct", "bridge", "shared"),
    "namespace_queues": ("shared", "per-namespace"),
    "event_loop": ("uvloop", "asyncio"),
    "consistency": ("strict", "eventual"),
    "access_log": ("off", "on"),
    "log_format": ("json", "console"),
    "test_clock": ("off", "on"),
    "security_mode": ("development", "production"),
    "dashboard_unsigned": ("off", "on"),
}


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:9092"
    pg_dsn: str = "postgresql://postgres@127.0.0.1:5432/iotjobs"
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = 1883
    mqtt_username: str = ""
    """The services' MQTT identity (dataplane, projector) on a broker that requires passwords."""
    mqtt_password: str = ""
    mqtt_password_file: str = ""
    """A file holding the services' MQTT password (a mounted secret; `service.password` of `iotjobs-admin
    credentials init`), read at start when `mqtt_password` is empty."""
    mqtt_ca_file: str = ""
    """Connect to the broker over TLS, trusting this CA (PEM); empty: plain MQTT."""
    mqtt_cert_file: str = ""
    """With `mqtt_key_file`: the services' client certificate on a broker that requires one."""
    mqtt_key_file: str = ""
    tls_cert_file: str = ""
    """With `tls_key_file`: both HTTP planes serve HTTPS with this certificate (PEM, chain included)."""
    tls_key_file: str = ""
    credentials_dir: str = ".run/credentials"
    """Where `iotjobs-admin credentials` keeps the CA, certificates, the broker's password file and ACL, and
    the SigV4 access keys (scripts/mosquitto.sh reads it too)."""
    credentials_owner: str = ""
    """A uid: `iotjobs-admin credentials`, run as root, gives the files the services read to this user."""
    security_mode: str = "development"
    """`development`: anonymous MQTT and unsigned HTTP are allowed, and each service says so loudly when it
    starts; `production`: a service refuses to start unless it authenticates to the broker."""
    control_host: str = "127.0.0.1"
    control_port: int = 8080
    dataplane_host: str = "127.0.0.1"
    dataplane_port: int = 8081
    projector_host: str = "127.0.0.1"
    """Where the projector serves `/health` (200 while it projects and is not stalled behind the log) and
    `/metrics`."""
    projector_port: int = 8082
    projector_stall_seconds: float = 30.0
    """The projector's `/health` answers 503 once it has events to apply and has applied none for this long."""
    region: str = "us-east-1"
    account_id: str = "123456789012"
    seconds_per_minute: float = 60.0
    topic_prefix: str = "iotjobs"
    partitions: int = 8
    instance_id: str = ""
    group_instance_id: str = ""
    """A name this process keeps across restarts (a StatefulSet pod's, a compose service's), unique among the
    instances of its role: its consumer group membership is then static, so a restarted process takes its
    partitions back at once instead of after the session timeout. Empty: dynamic membership."""
    request_timeout_seconds: float = 15.0
    body_read_timeout_seconds: float = 10.0
    """How long an HTTP request's body may take to arrive; a slower one is an InvalidRequest."""
    header_read_timeout_seconds: float = 10.0
    """How long an HTTP request's line and headers may take to arrive, from the connection opening or the
    next request's first byte; a slower client is answered 408 and disconnected. 0: no limit."""
    consistency: str = "strict"
    """`strict`: an HTTP write answers once every effect it causes is readable through the control plane
    (up to `consistency_max_things` affected things); `eventual`: it answers once decided, as AWS does."""
    consistency_max_things: int = 1000
    projection_delay_max_seconds: float = 0.0
    """Opt-in: the projector holds each batch back by a random time up to this, to rehearse eventual
    consistency; 0 applies batches at once."""
    snapshot_interval_seconds: float = 5.0
    """How often an owner writes the changed keys' state to the snapshot topic; bounds restore time."""
    snapshot_part_bytes: int = 256 * 1024
    """The largest snapshot record: a key's image larger than this is written in parts of this size."""
    max_unconfirmed: int = 1000
    """Decisions an owner may hold per partition decided but not yet confirmed (appended and read back) before
    it stops deciding more: enough to keep Kafka's batches full; fewer keeps less in memory during a burst."""
    liveness_stall_seconds: float = 300.0
    """`/live` on control and dataplane fails once a partition assigned to the process has gone unserved (its
    restore stalled, or its owner stuck retaking it) for longer than this, so an orchestrator restarts the
    process; `/health` takes it out of rotation at once. Longer than the slowest restore expected."""
    log_level: str = "INFO"
    event_loop: str = "uvloop"
    """The services' event loop: `uvloop` (libuv; several times cheaper socket I/O) or the standard `asyncio`."""
    access_log: str = "off"
    """`on`: a JSON log line per HTTP request (docs/operating.md#logs); off by default, it costs a write each."""
    log_format: str = "json"
    """`json`: one JSON object per line (for log collectors); `console`: structlog's readable lines."""
    mqtt_ingress: str = "direct"
    """How dataplane instances receive device requests: `direct` (one instance, `$aws/...` topics, a persistent
    session), `bridge` (instances share the request topics Mosquitto's loopback bridge re-publishes under
    `iotjobs/things/`), or `shared` (`$share/...` on `$aws/...` topics, for brokers such as EMQX)."""
    namespace_queues: str = "shared"
    """`shared`: one pending queue per thing across namespaces, as AWS has it; `per-namespace`: the plain
    device topics see only jobs without a namespace, each namespace its own topics."""
    device_requests_per_second: float = 0.0
    """Per-thing limit on device requests (MQTT and HTTP) per dataplane instance; 0 means unlimited."""
    device_request_burst: int = 10
    s3_endpoint: str = ""
    """An S3-compatible endpoint (e.g. http://127.0.0.1:9000) that CreateJob's S3 documentSource URLs are read
    from, and that the presigned URLs delivered to devices point at."""
    s3_access_key_id: str = ""
    """With `s3_secret_access_key`: the credentials presigned URLs are signed with (SigV4). Without them, or
    without `s3_endpoint`, devices get presigned-URL placeholders unchanged."""
    s3_secret_access_key: str = ""
    s3_region: str = ""
    """The region presigned URLs are signed for; empty: `region`."""
    document_fetch_timeout_seconds: float = 10.0
    max_concurrent_jobs: int = 0
    """Jobs that may roll out at once (AWS's job-concurrency quota); past it CreateJob is LimitExceeded and a
    scheduled job is CANCELED at its start. 0: unlimited."""
    max_active_jobs: int = 0
    """Jobs that may be IN_PROGRESS at once (AWS's active-jobs quota); past it CreateJob is LimitExceeded.
    0: unlimited."""
    test_clock: str = "off"
    """`on`: an operator may move every service's clock forward (`iotjobs-admin clock --advance`, or
    `POST /_iotjobs/clock` on control), to run scheduled starts, maintenance windows and long timeouts in
    seconds. For test environments only."""
    sigv4_credentials: str = ""
    """`ACCESS_KEY_ID:SECRET,...`: when set (or `sigv4_credentials_file`), every request to both HTTP planes but
    `/health` and `/metrics` must be SigV4-signed with one of these keys (docs/security.md#request-signing-sigv4).
    Empty: no check."""
    sigv4_credentials_file: str = ""
    """A file of `ACCESS_KEY_ID:SECRET` lines (a mounted secret), read at start; adds to `sigv4_credentials`."""
    public_jobs_endpoint: str = ""
    """host[:port] devices use for the iot-jobs-data API (DescribeEndpoint iot:Jobs); default: the dataplane's."""
    public_mqtt_endpoint: str = ""
    """host[:port] devices use for MQTT (DescribeEndpoint iot:Data, iot:Data-ATS); default: the broker's."""
    dashboard_poll_seconds: float = 1.0
    """How often control reads the jobs' progress for the dashboard's live stream, while a stream is open (one
    query per interval, however many browsers watch)."""
    dashboard_unsigned: str = "off"
    """`on`: with SigV4 verification on, the dashboard's read-only paths (GET `/dashboard`, `/_iotjobs/dashboard/`,
    `/_iotjobs/events/`, `/_iotjobs/things/`) answer without a signature, for a control port reached only
    through an authenticating proxy (docs/operating.md#dashboard). `off`: they need a signature like the rest."""

    def __post_init__(self) -> None:
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{self.env_name(name)} must be one of {', '.join(allowed)}, got '{getattr(self, name)}'"
                )
        if not self.liveness_stall_seconds > 0:
            raise ValueError(f"IOTJOBS_LIVENESS_STALL_SECONDS must be positive, got {self.liveness_stall_seconds}")
        if self.max_unconfirmed < 1:
            raise ValueError(f"{self.env_name('max_unconfirmed')} must be at least 1, got {self.max_unconfirmed}")
        if not self.dashboard_poll_seconds > 0:
            raise ValueError(
                f"{self.env_name('dashboard_poll_seconds')} must be above 0, got {self.dashboard_poll_seconds}"
            )

    @staticmethod
    def env_name(field_name: str) -> str:
        return PREFIX + field_name.upper()

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name))
            if raw is None or raw == "":
                continue
            kind: type = type(f.default)
            try:
                values[f.name] = kind(raw)
            except ValueError:
                raise ValueError(f"{cls.env_name(f.name)}={raw!r} is not a valid {kind.__name__}") from None
        settings = cls(**values)
        if not settings.instance_id:
            settings = cls(**{**values, "instance_id": f"{socket.gethostname()}-{os.getpid()}"})
        return settings

    def env(self) -> dict[str, str]:
        """The variables that reproduce these settings in another process."""
        return {self.env_name(f.name): str(getattr(self, f.name)) for f in fields(self)}

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}.{name}"

    def minutes(self, m: float) -> float:
        return m * self.seconds_per_minute

    @property
    def jobs_endpoint(self) -> str:
        """What DescribeEndpoint answers for iot:Jobs."""
        if self.public_jobs_endpoint:
            return self.public_jobs_endpoint
        # A wildcard listen address is no address for a device; the services publish on loopback by default.
        host = "127.0.0.1" if self.dataplane_host in ("", "0.0.0.0", "::") else self.dataplane_host
        return _host_port(host, self.dataplane_port)

    @property
    def mqtt_endpoint(self) -> str:
        """What DescribeEndpoint answers for iot:Data and iot:Data-ATS."""
        return self.public_mqtt_endpoint or _host_port(self.mqtt_host, self.mqtt_port)


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
