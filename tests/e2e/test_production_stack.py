"""The native stack's documented production setting: `IOTJOBS_SECURITY_MODE=production scripts/stack.sh up`.

The whole stack starts from the script, on ports and a run directory of the test's own: credentials are made
on the first start, the broker refuses anonymous clients, the HTTP planes serve HTTPS and accept only the
operator's SigV4 key, and a device password issued with `iotjobs-admin` works once the broker reloads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import ClientError

from tests.support.broker_probe import NOT_AUTHORIZED, connack
from tests.support.clients import REGION, unique
from tests.support.servers import REPO, free_port
from tests.support.waiting import until_sync

pytestmark = pytest.mark.e2e


class NativeStack:
    def __init__(self) -> None:
        self.run_dir = Path(tempfile.mkdtemp(prefix="iotjobs-prod-"))
        os.chmod(self.run_dir, 0o755)  # the postgres and mosquitto users enter it
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("IOTJOBS_")},
            "PYTHON": sys.executable,
            "IOTJOBS_RUN_DIR": str(self.run_dir),
            "IOTJOBS_SECURITY_MODE": "production",
            **{
                f"IOTJOBS_{name}_PORT": str(free_port())
                for name in ("KAFKA", "KAFKA_CONTROLLER", "PG", "MQTT", "MQTT_TLS", "CONTROL", "DATAPLANE", "PROJECTOR")
            },
        }
        self.credentials = self.run_dir / "credentials"

    def script(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", str(REPO / "scripts" / args[0]), *args[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def port(self, name: str) -> int:
        return int(self.env[f"IOTJOBS_{name}_PORT"])

    def operator_key(self) -> tuple[str, str]:
        values = dict(line.split("=", 1) for line in (self.credentials / "operator.env").read_text().splitlines())
        return values["AWS_ACCESS_KEY_ID"], values["AWS_SECRET_ACCESS_KEY"]

    def client(self, service: str, key: tuple[str, str] | None, **config: Any) -> Any:
        plane = "CONTROL" if service == "iot" else "DATAPLANE"
        return boto3.client(
            service,
            endpoint_url=f"https://127.0.0.1:{self.port(plane)}",
            region_name=REGION,
            aws_access_key_id=key[0] if key else "x",
            aws_secret_access_key=key[1] if key else "y",
            verify=str(self.credentials / "ca.crt"),
            config=Config(retries={"max_attempts": 1}, **config),
        )


@pytest.fixture(scope="module")
def native() -> Iterator[NativeStack]:
    stack = NativeStack()
    try:
        started = stack.script("stack.sh", "up", "--detach")
        if started.returncode != 0:
            pytest.fail(f"scripts/stack.sh up failed ({started.returncode}):\n{started.stdout}\n{started.stderr}")
        assert "production mode" in started.stdout
        yield stack
    finally:
        stack.script("stack.sh", "down", timeout=120)
        shutil.rmtree(stack.run_dir, ignore_errors=True)


def test_the_http_planes_take_only_the_operators_key_over_https(native: NativeStack) -> None:
    iot = native.client("iot", native.operator_key())
    thing = unique("prod")
    iot.create_thing(thingName=thing)
    assert iot.describe_thing(thingName=thing)["thingName"] == thing
    data = native.client("iot-jobs-data", native.operator_key())
    assert data.get_pending_job_executions(thingName=thing)["queuedJobs"] == []

    with pytest.raises(ClientError) as unsigned:
        native.client("iot", None, signature_version=UNSIGNED).list_things()
    assert unsigned.value.response["Error"]["Code"] == "MissingAuthenticationTokenException"
    with pytest.raises(ClientError) as stranger:
        native.client("iot-jobs-data", None).get_pending_job_executions(thingName=thing)
    assert stranger.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_the_broker_takes_only_issued_credentials(native: NativeStack) -> None:
    port = native.port("MQTT")
    assert connack(port) == NOT_AUTHORIZED
    thing = unique("prod-device")
    issued = subprocess.run(
        [sys.executable, "-m", "services.admin", "credentials", "password", thing, "--dir", str(native.credentials)],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    password = issued.stdout.strip()
    assert connack(port, thing, password) == NOT_AUTHORIZED  # not before the broker reloads
    reloaded = native.script("mosquitto.sh", "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    until_sync(lambda: connack(port, thing, password) == 0, what="the issued password to work")
    assert connack(port, thing, "not-it") == NOT_AUTHORIZED
