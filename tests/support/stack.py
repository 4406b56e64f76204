"""The three iotjobs services as real processes against real servers, isolated per stack."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from iotjobs.runtime import pg
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import ensure_topics
from services.projector.projector import READ_MODEL_TABLES
from tests.support.events import next_offsets
from tests.support.servers import Servers, free_port
from tests.support.waiting import until

SERVICES = ("projector", "control", "dataplane")


class Stack:
    def __init__(self, servers: Servers, **overrides: object) -> None:
        name = f"t{uuid.uuid4().hex[:10]}"
        self.database = name
        self.servers = servers
        self.settings = Settings(
            kafka_bootstrap=servers.kafka_bootstrap,
            pg_dsn=servers.pg_dsn_for(name),
            mqtt_host=servers.mqtt_host,
            mqtt_port=servers.mqtt_port,
            control_port=free_port(),
            dataplane_port=free_port(),
            projector_port=free_port(),
            topic_prefix=name,
            partitions=4,
            instance_id=name,
            **overrides,  # type: ignore[arg-type]
        )
        self.https_ca: str | None = None
        """The CA file clients verify the HTTP planes with, once they serve HTTPS (`tls_cert_file`)."""
        self.logs = Path(tempfile.mkdtemp(prefix=f"{name}-logs-"))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._spawned: dict[str, tuple[str, dict[str, str]]] = {}

    @property
    def scheme(self) -> str:
        return "https" if self.settings.tls_cert_file else "http"

    @property
    def control_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.settings.control_port}"

    @property
    def dataplane_url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.settings.dataplane_port}"

    @property
    def projector_url(self) -> str:
        """The projector's `/health` and `/metrics` (plain HTTP: they carry no secret)."""
        return f"http://127.0.0.1:{self.settings.projector_port}"

    async def start(self) -> None:
        admin = await asyncpg.connect(self.servers.pg_dsn)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        await pg.migrate(self.settings.pg_dsn)
        await ensure_topics(self.settings)
        for service in SERVICES:
            self.spawn(service)
        try:
            await self.wait_ready(self.control_url, self.dataplane_url, self.projector_url)
        except BaseException:
            await self.stop()  # a stack that never came up leaves no process behind
            raise

    def spawn(self, service: str, name: str | None = None, **overrides: str) -> None:
        """Start a service process; `name` and `overrides` (IOTJOBS_* values) run a second instance."""
        name = name or service
        # Static membership under the process's name: a restarted process takes its partitions back at once.
        env = {**os.environ, **self.settings.env(), "IOTJOBS_GROUP_INSTANCE_ID": name, **overrides}
        self._spawned[name] = (service, dict(overrides))
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    async def wait_ready(self, *urls: str, timeout: float = 60.0) -> None:
        """Wait until the services at `urls` (default: control and dataplane) own their partitions (the
        projector's url: until it projects)."""
        urls = urls or (self.control_url, self.dataplane_url)

        async def healthy() -> bool:
            for service, proc in self.processes.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{service} exited with {proc.returncode}:\n{self.log_tail(service)}")
            # Readiness only: whether the certificate is right is for the tests that use the planes to say.
            async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=False)) as http:
                for url in urls:
                    try:
                        async with http.get(f"{url}/health") as resp:
                            if resp.status != 200:
                                return False
                    except aiohttp.ClientError:
                        return False
            return True

        await until(healthy, timeout, f"{', '.join(urls)} to be ready")

    def add_instance(self, service: str, name: str, instance_id: str) -> str:
        """Start another instance of control or dataplane sharing the partitions of the first; returns its URL."""
        port = free_port()
        overrides = {f"IOTJOBS_{service.upper()}_PORT": str(port), "IOTJOBS_INSTANCE_ID": instance_id}
        self.spawn(service, name=name, **overrides)
        return f"http://127.0.0.1:{port}"

    def kill(self, service: str) -> None:
        proc = self.processes[service]
        proc.send_signal(signal.SIGKILL)  # a paused process too
        proc.wait(10)

    def restart(self, service: str) -> None:
        """SIGKILL a service (by its name in `processes`) and start it again with the same settings."""
        self.kill(service)
        kind, overrides = self._spawned[service]
        self.spawn(kind, name=service, **overrides)

    def pause(self, service: str) -> None:
        """SIGSTOP: the process keeps its sockets and its Kafka session until the session times out."""
        self.processes[service].send_signal(signal.SIGSTOP)

    def resume(self, service: str) -> None:
        self.processes[service].send_signal(signal.SIGCONT)

    async def health(self, url: str) -> dict[str, Any] | None:
        """The /health body of a service (its `partitions` are the ones it serves), or None if it does not answer."""
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http,
                http.get(f"{url}/health") as resp,
            ):
                return dict(await resp.json())
        except (aiohttp.ClientError, TimeoutError):
            return None

    def log_tail(self, service: str, lines: int = 40) -> str:
        path = self.logs / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)  # a paused process would sit out the SIGTERM
                proc.terminate()
        for service, proc in self.processes.items():
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)
                print(f"{service} did not stop on SIGTERM; killed")


@contextlib.asynccontextmanager
async def running(servers: Servers, **overrides: object) -> AsyncIterator[Stack]:
    """A stack of its own for the block (`overrides` are Settings fields), stopped after it."""
    stack = Stack(servers, **overrides)
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


@contextlib.asynccontextmanager
async def stack_with_two_dataplanes(servers: Servers) -> AsyncIterator[tuple[Stack, str]]:
    """A stack whose devices are served by two dataplane instances through Mosquitto's loopback bridge;
    yields the stack and the second instance's URL (its process is `dataplane-2`, its instance id `second`)."""
    async with running(servers, mqtt_ingress="bridge") as stack:
        second = stack.add_instance("dataplane", "dataplane-2", "second")
        await stack.wait_ready(stack.control_url, stack.dataplane_url, second)
        yield stack, second


# --- read models ------------------------------------------------------------------------------------


async def read_model_rows(dsn: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every read model table and of the projector's offsets, in a comparable order."""
    conn = await pg.connect(dsn)
    try:
        tables = {}
        for table in (*READ_MODEL_TABLES, "projector_offsets"):
            rows = await conn.fetch(f"SELECT * FROM {table}")
            tables[table] = sorted((dict(r) for r in rows), key=repr)
        return tables
    finally:
        await conn.close()


async def admin(
    stack: Stack, command: str, *arguments: str, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """`services.admin <command> <arguments>` with the stack's settings, its output captured."""
    return await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "services.admin", command, *arguments],
        env={**os.environ, **stack.settings.env()},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def rebuild_read_models(stack: Stack) -> subprocess.CompletedProcess[str]:
    """`services.admin rebuild`: the read models replayed from offset 0 of the log (no projector may run)."""
    return await admin(stack, "rebuild")


async def projected_to_end(stack: Stack, timeout: float = 20.0) -> None:
    """Wait until the projector's checkpoints stand at the end of every partition of the log."""
    conn: asyncpg.Connection = await pg.connect(stack.settings.pg_dsn)
    try:

        async def caught_up() -> bool:
            ends = await next_offsets(stack.settings)
            rows = await conn.fetch("SELECT partition, next_offset FROM projector_offsets")
            return ends == {r["partition"]: r["next_offset"] for r in rows} == await next_offsets(stack.settings)

        await until(caught_up, timeout, "the projector to reach the end of the log")
    finally:
        await conn.close()
