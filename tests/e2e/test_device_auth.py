"""Devices authenticate and reach only their own jobs topics; the HTTP planes serve HTTPS.

A broker of the module's own runs with IOTJOBS_MQTT_AUTH=on, its credentials made by `iotjobs-admin
credentials` (the CA, the server certificate, the ACL, the services' identity, each device's password or
certificate). The stack runs in production mode: its services authenticate to the broker, and serve both
HTTP planes over TLS with the same server certificate. Devices are real clients: a plain MQTT client with
a password, the AWS IoT Device SDK v2 with a client certificate, and paho over MQTT 5, whose PUBACK and
CONNACK reason codes show what the broker refused.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest
import requests
from awscrt import mqtt5
from awsiot import iotjobs, mqtt5_client_builder

from tests.support.broker_probe import NOT_AUTHORIZED, Probe, connack
from tests.support.clients import MqttDevice, data_client, iot_client, thing_arn, unique
from tests.support.device_sdk import TIMEOUT, Connected, V2Device
from tests.support.servers import REPO, SecureBroker, Servers, secure_broker
from tests.support.stack import Stack, running
from tests.support.waiting import until, until_sync

pytestmark = pytest.mark.e2e

KEY = ("AKIDSECUREDEPLOY", "a-secret-only-this-deployment-knows")


@pytest.fixture(scope="module")
def broker() -> Iterator[SecureBroker]:
    with secure_broker() as started:
        yield started


@pytest.fixture(scope="module")
async def secure_stack(servers: Servers, broker: SecureBroker) -> AsyncIterator[Stack]:
    own_broker = Servers(servers.kafka_bootstrap, servers.pg_dsn, "127.0.0.1", broker.port)
    stack = Stack(
        own_broker,
        security_mode="production",
        mqtt_username="iotjobs-service",
        mqtt_password=broker.service_password,
        tls_cert_file=str(broker.credentials / "server.crt"),
        tls_key_file=str(broker.credentials / "server.key"),
        sigv4_credentials=":".join(KEY),
    )
    stack.https_ca = str(broker.credentials / "ca.crt")
    await stack.start()
    try:
        yield stack
    finally:
        await stack.stop()


def tls_files(broker: SecureBroker, thing: str) -> dict[str, str]:
    return {
        "ca_certs": str(broker.credentials / "ca.crt"),
        "certfile": str(broker.credentials / "things" / f"{thing}.crt"),
        "keyfile": str(broker.credentials / "things" / f"{thing}.key"),
    }


async def test_a_password_device_works_its_own_jobs_and_reaches_no_other_things(
    secure_stack: Stack, broker: SecureBroker
) -> None:
    iot = iot_client(secure_stack, key=KEY)
    own, other, job = unique("pw"), unique("pw-other"), unique("authjob")
    for thing in (own, other):
        iot.create_thing(thingName=thing)
    own_password = broker.admin("password", own).stdout.strip()
    other_password = broker.admin("password", other).stdout.strip()
    broker.mosquitto("reload")
    # Reloading is asynchronous in the broker: the new password is in once it is accepted.
    await until(
        lambda: asyncio.to_thread(lambda: connack(broker.port, own, own_password) == 0), what="the password to load"
    )

    iot.create_job(jobId=job, targets=[thing_arn(own), thing_arn(other)], document='{"step": "flash"}')
    with Probe(broker.port, own, own_password) as snoop:
        snoop.subscribe("$aws/things/+/jobs/#")  # granted, but the broker delivers it only its own topics
        async with MqttDevice(secure_stack, own, password=own_password) as device:
            outcome, started = await device.request("start-next")
            assert outcome == "accepted" and started["execution"]["jobId"] == job

            # Another thing's execution, its notifications and its requests are out of reach.
            for topic in (
                f"$aws/things/{other}/jobs/{job}/update",
                f"$aws/things/{other}/jobs/start-next",
                f"$aws/things/{other}/jobs/notify-next",
                f"$aws/things/{own}/jobs/notify-next",  # nor can a device fake its own notifications
                f"$aws/things/{own}/jobs/{job}/update/accepted",
            ):
                assert snoop.publish(topic, {"status": "FAILED"}) == NOT_AUTHORIZED, topic

            async with MqttDevice(secure_stack, other, password=other_password) as neighbour:
                # The forged update never landed: the neighbour starts a QUEUED execution at version 2.
                outcome, theirs = await neighbour.request("start-next")
                assert outcome == "accepted" and theirs["execution"]["versionNumber"] == 2
                outcome, _ = await neighbour.request(f"{job}/update", {"status": "SUCCEEDED"})
                assert outcome == "accepted"

            outcome, _ = await device.request(f"{job}/update", {"status": "SUCCEEDED"})
            assert outcome == "accepted"
            # That reply was published after every one the neighbour got, so anything of theirs the snoop
            # was going to receive has arrived by now.
            await until(
                lambda: asyncio.to_thread(lambda: f"$aws/things/{own}/jobs/{job}/update/accepted" in snoop.received),
                what="the snoop's own reply",
            )
        assert snoop.received and all(f"/things/{own}/" in topic for topic in snoop.received), snoop.received
    until_sync(
        lambda: iot.describe_job_execution(jobId=job, thingName=other)["execution"]["status"] == "SUCCEEDED",
        what="the neighbour's update in the read models",
    )

    assert connack(broker.port) == NOT_AUTHORIZED  # anonymous
    assert connack(broker.port, own, "wrong") == NOT_AUTHORIZED
    assert connack(broker.port, other, own_password) == NOT_AUTHORIZED

    broker.admin("revoke", own)
    broker.mosquitto("reload")
    await until(
        lambda: asyncio.to_thread(lambda: connack(broker.port, own, own_password) == NOT_AUTHORIZED),
        what="the revoked password to stop working",
    )


def _mtls(broker: SecureBroker, thing: str, on_connected: Connected) -> mqtt5.Client:
    files = tls_files(broker, thing)
    return mqtt5_client_builder.mtls_from_path(
        endpoint="localhost",
        port=broker.tls_port,
        cert_filepath=files["certfile"],
        pri_key_filepath=files["keyfile"],
        ca_filepath=files["ca_certs"],
        client_id=thing,
        on_lifecycle_connection_success=on_connected,
    )


def test_a_device_sdk_with_its_certificate_works_its_jobs_and_reaches_no_other_things(
    secure_stack: Stack, broker: SecureBroker, tmp_path_factory: pytest.TempPathFactory
) -> None:
    iot = iot_client(secure_stack, key=KEY)
    own, other, job = unique("cert"), unique("cert-other"), unique("certjob")
    for thing in (own, other):
        iot.create_thing(thingName=thing)
        broker.admin("certificate", thing)

    with V2Device(secure_stack, own, connect_with=lambda done: _mtls(broker, own, done)) as device:
        iot.create_job(jobId=job, targets=[thing_arn(own), thing_arn(other)], document='{"step": "flash"}')
        announced = until_sync(lambda: device.nexts(), what="notify-next")[0]
        assert announced.execution.job_id == job
        started = device.jobs.start_next_pending_job_execution(
            iotjobs.StartNextPendingJobExecutionRequest(thing_name=own)
        ).result(TIMEOUT)
        assert started.execution.job_id == job
        done = device.jobs.update_job_execution(
            iotjobs.UpdateJobExecutionRequest(thing_name=own, job_id=job, status=iotjobs.JobStatus.SUCCEEDED)
        ).result(TIMEOUT)
        assert done is not None
    # A device's update reaches the read models a moment after its reply.
    until_sync(
        lambda: iot.describe_job_execution(jobId=job, thingName=own)["execution"]["status"] == "SUCCEEDED",
        what="the update in the read models",
    )

    # The certificate names the thing: with its own certificate a client reaches only its own topics.
    with Probe(broker.tls_port, **tls_files(broker, own)) as probe:
        assert probe.connack is not None and probe.connack.value == 0
        assert probe.publish(f"$aws/things/{other}/jobs/{job}/update", {"status": "FAILED"}) == NOT_AUTHORIZED
        assert probe.publish(f"$aws/things/{own}/jobs/get", {}) == 0
    assert iot.describe_job_execution(jobId=job, thingName=other)["execution"]["status"] == "QUEUED"

    # No certificate, or one the deployment's CA did not sign: no connection at all.
    assert connack(broker.tls_port, ca_certs=str(broker.credentials / "ca.crt")) is None
    stranger = SecureBroker()  # another CA altogether
    try:
        stranger.admin("init")
        stranger.admin("certificate", own)
        foreign = {**tls_files(stranger, own), "ca_certs": str(broker.credentials / "ca.crt")}
        assert connack(broker.tls_port, **foreign) is None
        assert connack(broker.tls_port, **tls_files(broker, own)) == 0  # while the thing's own one works
    finally:
        stranger.stop()

    # Revoked, and the broker restarted to read the revocation list: the certificate no longer connects.
    kept = tmp_path_factory.mktemp("revoked")
    files = {name: shutil.copy(path, kept) for name, path in tls_files(broker, own).items()}
    broker.admin("revoke", own)
    broker.mosquitto("restart")
    assert connack(broker.tls_port, **files) is None
    assert connack(broker.tls_port, **tls_files(broker, other)) == 0


async def test_the_projector_publishes_jobs_events_with_the_services_certificate(
    secure_stack: Stack, broker: SecureBroker
) -> None:
    # The dataplane connects with the services' password; the projector, restarted here, with their
    # certificate on the TLS listener.
    creds = broker.credentials
    secure_stack.kill("projector")
    secure_stack.spawn(
        "projector",
        IOTJOBS_MQTT_PORT=str(broker.tls_port),
        IOTJOBS_MQTT_USERNAME="",
        IOTJOBS_MQTT_PASSWORD="",
        IOTJOBS_MQTT_CA_FILE=str(creds / "ca.crt"),
        IOTJOBS_MQTT_CERT_FILE=str(creds / "service.crt"),
        IOTJOBS_MQTT_KEY_FILE=str(creds / "service.key"),
    )
    iot = iot_client(secure_stack, key=KEY)
    await asyncio.to_thread(iot.update_event_configurations, eventConfigurations={"JOB": {"Enabled": True}})
    thing, job = unique("events"), unique("eventjob")
    await asyncio.to_thread(iot.create_thing, thingName=thing)
    device_password = broker.admin("password", thing).stdout.strip()
    broker.mosquitto("reload")
    await until(
        lambda: asyncio.to_thread(lambda: connack(broker.port, thing, device_password) == 0), what="the password"
    )
    with (
        Probe(broker.port, "iotjobs-service", broker.service_password) as watcher,
        Probe(broker.port, thing, device_password) as device,
    ):
        watcher.subscribe("$aws/events/job/#")
        device.subscribe("$aws/events/#")  # a device may not listen to the account's events
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
        await asyncio.to_thread(iot.cancel_job, jobId=job)
        await asyncio.to_thread(
            until_sync, lambda: f"$aws/events/job/{job}/canceled" in watcher.received, 30, "the JOB canceled event"
        )
        # The broker hands a message to every subscriber before it reads the next: by the time the
        # watcher's next one (an event of a later job) arrives, the device would have had the first.
        later = unique("eventjob")
        await asyncio.to_thread(iot.create_job, jobId=later, targets=[thing_arn(thing)], document="{}")
        await asyncio.to_thread(iot.cancel_job, jobId=later)
        await asyncio.to_thread(
            until_sync, lambda: f"$aws/events/job/{later}/canceled" in watcher.received, 30, "the later event"
        )
        assert device.received == []


async def test_dataplanes_sharing_requests_through_the_loopback_bridge_serve_password_devices(
    servers: Servers,
) -> None:
    # A broker of its own: the module's stack would answer these requests too (its dataplane hears every
    # thing's requests on the same broker).
    with secure_broker() as broker:
        await _bridged_device_works(servers, broker)


async def _bridged_device_works(servers: Servers, broker: SecureBroker) -> None:
    own_broker = Servers(servers.kafka_bootstrap, servers.pg_dsn, "127.0.0.1", broker.port)
    overrides = {"mqtt_username": "iotjobs-service", "mqtt_password": broker.service_password}
    async with running(own_broker, mqtt_ingress="bridge", **overrides) as bridged:
        iot = iot_client(bridged)
        thing, job = unique("bridged"), unique("bridgedjob")
        await asyncio.to_thread(iot.create_thing, thingName=thing)
        password = broker.admin("password", thing).stdout.strip()
        broker.mosquitto("reload")
        await until(lambda: asyncio.to_thread(lambda: connack(broker.port, thing, password) == 0), what="password")
        await asyncio.to_thread(iot.create_job, jobId=job, targets=[thing_arn(thing)], document="{}")
        async with MqttDevice(bridged, thing, password=password) as device:
            outcome, started = await device.request("start-next")
            assert outcome == "accepted" and started["execution"]["jobId"] == job


def test_both_http_planes_serve_https_with_the_deployments_certificate(secure_stack: Stack) -> None:
    iot, data = iot_client(secure_stack, key=KEY), data_client(secure_stack, key=KEY)
    thing = unique("https")
    iot.create_thing(thingName=thing)
    assert iot.describe_thing(thingName=thing)["thingName"] == thing
    assert data.get_pending_job_executions(thingName=thing)["queuedJobs"] == []
    # Plain HTTP on the same port is not served.
    plain = secure_stack.control_url.replace("https://", "http://")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{plain}/things/{thing}", timeout=5)
    # Nor is HTTPS to a client that does not trust the deployment's CA.
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{secure_stack.control_url}/health", timeout=5)


@pytest.mark.parametrize(
    ("service", "missing"),
    [
        ("dataplane", ["IOTJOBS_MQTT_USERNAME", "IOTJOBS_SIGV4_CREDENTIALS"]),
        ("projector", ["IOTJOBS_MQTT_USERNAME"]),
        ("control", ["IOTJOBS_SIGV4_CREDENTIALS"]),
    ],
)
def test_production_mode_refuses_to_start_with_a_door_open(service: str, missing: list[str]) -> None:
    env = {**_without_security(), "IOTJOBS_SECURITY_MODE": "production"}
    result = subprocess.run(
        [sys.executable, "-m", f"services.{service}"], env=env, cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "IOTJOBS_SECURITY_MODE=production" in result.stderr
    assert all(name in result.stderr for name in missing), result.stderr


def test_development_mode_says_loudly_that_anyone_may_connect() -> None:
    # Nothing to connect to: the warning comes first, before the service looks for its servers.
    env = {**_without_security(), "IOTJOBS_KAFKA_BOOTSTRAP": "127.0.0.1:1", "IOTJOBS_LOG_LEVEL": "INFO"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.projector"],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(iter(process.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        line = until_sync(lambda: next((x for x in seen if "DEVELOPMENT MODE" in x), None), 30, "the warning")
        assert "anonymous" in line and "warning" in line.lower()
    finally:
        process.kill()
        process.wait(10)
        reader.join(10)
        process.stdout.close()  # type: ignore[union-attr]


def _without_security() -> dict[str, str]:
    prefixes = ("IOTJOBS_MQTT_", "IOTJOBS_SECURITY", "IOTJOBS_SIGV4")
    return {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
