"""The three iotjobs services as real processes against real servers, isolated per stack."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import aiohttp
import asyncpg

from iotjobs.runtime import pg
from iotjobs.runtime.settings import Settings
from iotjobs.runtime.topics import ensure_topics
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
            topic_prefix=name,
            partitions=4,
            instance_id=name,
            **overrides,  # type: ignore[arg-type]
        )
        self.logs = Path(tempfile.mkdtemp(prefix=f"{name}-logs-"))
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def control_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.control_port}"

    @property
    def dataplane_url(self) -> str:
        return f"http://127.0.0.1:{self.settings.dataplane_port}"

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
        await self.wait_ready()

    def spawn(self, service: str, name: str | None = None, **overrides: str) -> None:
        """Start a service process; `name` and `overrides` (IOTJOBS_* values) run a second instance."""
        env = {**os.environ, **self.settings.env(), **overrides}
        name = name or service
        with open(self.logs / f"{name}.log", "ab") as log:  # the child keeps its own descriptor
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", f"services.{service}"], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    async def wait_ready(self, *urls: str, timeout: float = 60.0) -> None:
        """Wait until the services at `urls` (default: control and dataplane) own their partitions."""
        urls = urls or (self.control_url, self.dataplane_url)

        async def healthy() -> bool:
            for service, proc in self.processes.items():
                if proc.poll() is not None:
                    raise AssertionError(f"{service} exited with {proc.returncode}:\n{self.log_tail(service)}")
            async with aiohttp.ClientSession() as http:
                for url in urls:
                    try:
                        async with http.get(f"{url}/health") as resp:
                            if resp.status != 200:
                                return False
                    except aiohttp.ClientError:
                        return False
            return True

        await until(healthy, timeout, "control and dataplane to own their partitions")

    def kill(self, service: str) -> None:
        proc = self.processes[service]
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def log_tail(self, service: str, lines: int = 40) -> str:
        path = self.logs / f"{service}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    async def stop(self) -> None:
        for proc in self.processes.values():
            if proc.poll() is None:
                proc.terminate()
        for service, proc in self.processes.items():
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait, 5)
                print(f"{service} did not stop on SIGTERM; killed")
