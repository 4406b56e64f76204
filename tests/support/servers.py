"""Real Kafka, PostgreSQL and Mosquitto for the tests.

Given IOTJOBS_TEST_KAFKA_BOOTSTRAP, IOTJOBS_TEST_PG_DSN and IOTJOBS_TEST_MQTT_URL, the tests use those
servers. Otherwise they start their own with the project's scripts on free ports, and fail loudly
(never skip) when that is impossible.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Servers:
    kafka_bootstrap: str
    pg_dsn: str
    mqtt_host: str
    mqtt_port: int

    def pg_dsn_for(self, database: str) -> str:
        return self.pg_dsn.rsplit("/", 1)[0] + "/" + database


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def from_environment() -> Servers | None:
    kafka = os.environ.get("IOTJOBS_TEST_KAFKA_BOOTSTRAP")
    dsn = os.environ.get("IOTJOBS_TEST_PG_DSN")
    mqtt = os.environ.get("IOTJOBS_TEST_MQTT_URL")
    given = [v for v in (kafka, dsn, mqtt) if v]
    if not given:
        return None
    if len(given) != 3:
        raise RuntimeError(
            "set all of IOTJOBS_TEST_KAFKA_BOOTSTRAP, IOTJOBS_TEST_PG_DSN and IOTJOBS_TEST_MQTT_URL, or none"
        )
    url = urlparse(mqtt)
    return Servers(kafka, dsn, url.hostname or "127.0.0.1", url.port or 1883)  # type: ignore[arg-type]


class LocalServers:
    """Starts the three servers with scripts/servers.sh in a scratch run directory.

    A module that injects server faults (pauses Kafka, restarts Mosquitto) starts its own instance, never
    the session's shared servers.
    """

    PID_FILES = {"kafka": "kafka/kafka.pid", "mosquitto": "mosquitto/mosquitto.pid"}
    """Where scripts/kafka.sh and scripts/mosquitto.sh keep the broker's pid, under the run directory."""

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="iotjobs-test-"))
        os.chmod(self.run_dir, 0o755)  # the postgres and mosquitto users must enter it
        self.env = {
            **os.environ,
            "IOTJOBS_RUN_DIR": str(self.run_dir),
            "IOTJOBS_KAFKA_PORT": str(free_port()),
            "IOTJOBS_KAFKA_CONTROLLER_PORT": str(free_port()),
            "IOTJOBS_PG_PORT": str(free_port()),
            "IOTJOBS_MQTT_PORT": str(free_port()),
            # lets a test run several dataplane instances (IOTJOBS_MQTT_INGRESS=bridge)
            "IOTJOBS_MQTT_LOOPBACK_BRIDGE": "1",
        }
        self._paused: set[str] = set()

    def start(self) -> Servers:
        result = subprocess.run(
            ["bash", str(REPO / "scripts" / "servers.sh"), "up"], env=self.env, capture_output=True, text=True
        )
        if result.returncode != 0:
            self.stop()
            raise RuntimeError(
                "could not start Kafka, PostgreSQL and Mosquitto with scripts/servers.sh "
                f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return self.servers

    @property
    def servers(self) -> Servers:
        return Servers(
            kafka_bootstrap=f"127.0.0.1:{self.env['IOTJOBS_KAFKA_PORT']}",
            pg_dsn=f"postgresql://postgres@127.0.0.1:{self.env['IOTJOBS_PG_PORT']}/postgres",
            mqtt_host="127.0.0.1",
            mqtt_port=int(self.env["IOTJOBS_MQTT_PORT"]),
        )

    def stop(self) -> None:
        for server in list(self._paused):
            self.resume(server)  # a stopped process would sit out the SIGTERM of `down`
        subprocess.run(["bash", str(REPO / "scripts" / "servers.sh"), "down"], env=self.env, capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    # --- faults ----------------------------------------------------------------------------------

    def pid(self, server: str) -> int:
        """The pid of the running `kafka` (its JVM) or `mosquitto`, from the script's pid file."""
        return int((self.run_dir / self.PID_FILES[server]).read_text().split()[0])

    def pause(self, server: str) -> None:
        """SIGSTOP the server: its sockets stay open and its clients hang, as with a stalled broker."""
        os.kill(self.pid(server), signal.SIGSTOP)
        self._paused.add(server)

    def resume(self, server: str) -> None:
        os.kill(self.pid(server), signal.SIGCONT)
        self._paused.discard(server)

    @contextlib.contextmanager
    def paused(self, server: str) -> Iterator[None]:
        """The server is stopped for the block and resumed after it, also when the block fails."""
        self.pause(server)
        try:
            yield
        finally:
            self.resume(server)

    def _script(self, server: str, command: str) -> None:
        script = REPO / "scripts" / f"{server}.sh"
        result = subprocess.run(["bash", str(script), command], env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/{server}.sh {command} failed ({result.returncode}):\n{result.stderr}")

    def stop_server(self, server: str) -> None:
        """Stop one server (`kafka`, `mosquitto` or `postgres`) the way its script does (SIGTERM, bounded)."""
        if server in self._paused:
            self.resume(server)  # a stopped process would sit out the SIGTERM
        self._script(server, "stop")

    def start_server(self, server: str) -> None:
        """Start one server again on the same port, with the same data directory; returns once it is ready."""
        self._script(server, "start")

    def restart_server(self, server: str) -> None:
        self.stop_server(server)
        self.start_server(server)


@contextlib.contextmanager
def started_locally() -> Iterator[tuple[LocalServers, Servers]]:
    """Private servers for as long as the block runs; a server that cannot start fails the test loudly."""
    local = LocalServers()
    try:
        started = local.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield local, started
    finally:
        local.stop()


class SecureBroker:
    """A Mosquitto of its own that requires authentication (IOTJOBS_MQTT_AUTH=on): passwords on `port`,
    client certificates on `tls_port`, credentials made by `iotjobs-admin credentials` in `credentials`."""

    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="iotjobs-secure-"))
        os.chmod(self.run_dir, 0o755)  # the mosquitto user reads the credentials under it
        self.credentials = self.run_dir / "credentials"
        self.port = free_port()
        self.tls_port = free_port()
        self.env = {
            **os.environ,
            "IOTJOBS_RUN_DIR": str(self.run_dir),
            "IOTJOBS_MQTT_PORT": str(self.port),
            "IOTJOBS_MQTT_TLS_PORT": str(self.tls_port),
            "IOTJOBS_MQTT_AUTH": "on",
            "IOTJOBS_CREDENTIALS_DIR": str(self.credentials),
            # the bridge is a client too: it authenticates as the services do
            "IOTJOBS_MQTT_LOOPBACK_BRIDGE": "1",
        }

    def admin(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`iotjobs-admin credentials ARGS` against this broker's credentials directory; fails loudly."""
        result = subprocess.run(
            [sys.executable, "-m", "services.admin", "credentials", *args, "--dir", str(self.credentials)],
            cwd=REPO,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise RuntimeError(f"iotjobs-admin credentials {' '.join(args)} failed:\n{result.stderr}")
        return result

    def mosquitto(self, command: str) -> None:
        script = REPO / "scripts" / "mosquitto.sh"
        result = subprocess.run(["bash", str(script), command], env=self.env, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"scripts/mosquitto.sh {command} failed:\n{result.stdout}\n{result.stderr}")

    @property
    def service_password(self) -> str:
        return (self.credentials / "service.password").read_text().strip()

    def start(self) -> None:
        self.admin("init")
        self.mosquitto("start")

    def stop(self) -> None:
        subprocess.run(["bash", str(REPO / "scripts" / "mosquitto.sh"), "stop"], env=self.env, capture_output=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)


@contextlib.contextmanager
def secure_broker() -> Iterator[SecureBroker]:
    broker = SecureBroker()
    try:
        broker.start()
    except RuntimeError as exc:
        broker.stop()
        pytest.fail(str(exc))
    try:
        yield broker
    finally:
        broker.stop()
