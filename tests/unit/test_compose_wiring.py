"""The deployment files agree with the code: docker-compose.yml, the Dockerfile and deploy/k8s.

Checked against `Settings` (every IOTJOBS_* variable is a real field, values parse, ports and hosts
line up), against pyproject.toml (commands are declared console scripts) and against
iotjobs/runtime/pg.py (the image keeps migrations/ where pg.MIGRATIONS looks for it).
No Docker engine is needed: this reads the files.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib.util
import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import tomllib
from dataclasses import fields
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from iotjobs.runtime import pg, security
from iotjobs.runtime.broker_credentials import CredentialsDir
from iotjobs.runtime.settings import Settings
from services.admin import parser as admin_parser
from tests.support.servers import free_port
from tests.support.waiting import until_sync

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
K8S_DIR = ROOT / "deploy" / "k8s"

ENV_NAMES = {Settings.env_name(f.name): f.name for f in fields(Settings)}
SHARED_ENV_KEY = "x-iotjobs-environment"
PRODUCTION_FILE = ROOT / "deploy" / "compose.production.yml"
PRODUCTION_ENV_KEY = "x-production-environment"
# Kubernetes runs in production mode, its secrets in a Secret (compose's production setting reads files).
K8S_SECURITY_KEYS = {
    "IOTJOBS_SECURITY_MODE",
    "IOTJOBS_MQTT_USERNAME",
    "IOTJOBS_MQTT_PASSWORD",
    "IOTJOBS_SIGV4_CREDENTIALS",
}

# The iotjobs services in compose, and the console script each one runs.
APP_SERVICES = ("migrate", "control", "dataplane", "projector")
SERVICE_SCRIPT = {
    "control": "iotjobs-control",
    "dataplane": "iotjobs-dataplane",
    "projector": "iotjobs-projector",
    "migrate": "iotjobs-admin",
}
# What each service connects to at start-up, as Settings fields (see services/*/app.py, main.py).
# "kafka" stands for kafka_bootstrap, "postgres" for pg_dsn, "mqtt" for mqtt_host/mqtt_port.
NEEDS = {
    "migrate": {"kafka", "postgres"},
    "control": {"kafka", "postgres"},
    "dataplane": {"kafka", "mqtt"},
    "projector": {"kafka", "postgres"},
}
MOSQUITTO_CONF_IN_CONTAINER = "/mosquitto/config/mosquitto.conf"


# --- helpers ---------------------------------------------------------------------------------------


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    with path.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_compose()


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def env_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's `environment`, in either compose form (mapping or list of KEY=VALUE)."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = [item.split("=", 1) if "=" in item else [item, ""] for item in env]
        return {k: v for k, v in pairs}
    return {str(k): v for k, v in env.items()}


def depends_of(service: dict[str, Any]) -> dict[str, str]:
    """depends_on as {target: condition}; the short (list) form means service_started."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def published_ports(service: dict[str, Any]) -> list[tuple[str, int, int]]:
    """`ports` as (host_ip, host_port, container_port); the host ip is "" when not given."""
    out = []
    for spec in service.get("ports") or []:
        if isinstance(spec, dict):
            out.append((spec.get("host_ip", ""), int(spec["published"]), int(spec["target"])))
            continue
        parts = str(spec).split("/")[0].split(":")
        assert len(parts) in (2, 3), f"port {spec!r}: publish it as [ip:]host:container"
        ip = parts[0] if len(parts) == 3 else ""
        out.append((ip, int(parts[-2]), int(parts[-1])))
    return out


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test")
    assert test, "no healthcheck test"
    return test if isinstance(test, str) else " ".join(str(t) for t in test)


def mounts_of(service: dict[str, Any]) -> dict[str, str]:
    """{container path: source} of a service's volumes."""
    return {str(v).split(":")[1]: str(v).split(":")[0] for v in service.get("volumes") or []}


def mosquitto_conf(text: str) -> dict[str, list[str]]:
    """A Mosquitto config as {option: [its values, in order]}, comments dropped."""
    conf: dict[str, list[str]] = {}
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        if words:
            conf.setdefault(words[0], []).append(" ".join(words[1:]))
    return conf


def settings_from(env: dict[str, str]) -> Settings:
    return Settings.from_env({**env, "IOTJOBS_INSTANCE_ID": env.get("IOTJOBS_INSTANCE_ID") or "test"})


def host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    assert host and port.isdigit(), f"{address!r} is not host:port"
    return host, int(port)


def console_scripts() -> dict[str, str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return tomllib.load(f)["project"]["scripts"]  # type: ignore[no-any-return]


def admin_subcommands() -> set[str]:
    """The commands iotjobs-admin's parser accepts."""
    commands = [a for a in admin_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    return set(commands[0].choices)


def invocations(command: Any) -> list[list[str]]:
    """The programs a container command runs: itself, or each `&&` step of `sh -c "..."`."""
    argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
    if argv[:2] == ["sh", "-c"] and len(argv) == 3:
        return [shlex.split(step) for step in argv[2].split("&&")]
    return [argv]


def check_command(command: Any, expected_script: str) -> list[list[str]]:
    scripts = console_scripts()
    steps = invocations(command)
    assert steps, "empty command"
    for step in steps:
        assert step[0] in scripts, f"{step[0]!r} is not a console script in pyproject.toml"
        module = scripts[step[0]].split(":")[0]
        assert importlib.util.find_spec(module) is not None, f"{step[0]} -> {module} does not exist"
        if step[0] == "iotjobs-admin":
            assert len(step) == 2 and step[1] in admin_subcommands(), f"bad admin command {step}"
        else:
            assert len(step) == 1, f"{step[0]} takes its configuration from IOTJOBS_*, not arguments"
    assert {s[0] for s in steps} == {expected_script}
    return steps


def infra_targets(env: dict[str, str]) -> dict[str, tuple[str, int]]:
    """The (compose service name, port) that the settings point at, per NEEDS key."""
    s = settings_from(env)
    kafka = host_port(s.kafka_bootstrap)
    dsn = urlsplit(s.pg_dsn)
    assert dsn.hostname
    return {"kafka": kafka, "postgres": (dsn.hostname, dsn.port or 5432), "mqtt": (s.mqtt_host, s.mqtt_port)}


# --- Settings variables ----------------------------------------------------------------------------


def test_every_iotjobs_variable_on_any_service_is_a_settings_field(compose, services):
    blocks = {name: env_of(svc) for name, svc in services.items()}
    blocks[SHARED_ENV_KEY] = {str(k): v for k, v in compose[SHARED_ENV_KEY].items()}
    for name, env in blocks.items():
        unknown = sorted(k for k in env if k.startswith("IOTJOBS_") and k not in ENV_NAMES)
        assert not unknown, f"{name}: not Settings fields: {unknown}"


def test_app_services_are_configured_only_through_settings_variables(services):
    for name in APP_SERVICES:
        svc = services[name]
        env = env_of(svc)
        assert "env_file" not in svc, f"{name}: configuration comes only from `environment`"
        assert env, f"{name}: no environment"
        others = sorted(k for k in env if k not in ENV_NAMES)
        assert not others, f"{name}: variables that are not Settings fields: {others}"
        assert all(isinstance(v, str) for v in env.values()), f"{name}: quote every value"
        settings_from(env)  # every value parses as its field's type


def test_app_services_share_the_one_environment_block(compose, services):
    shared = compose[SHARED_ENV_KEY]
    assert isinstance(shared, dict) and shared
    for name in APP_SERVICES:
        assert env_of(services[name]) == shared, f"{name}: environment differs from {SHARED_ENV_KEY}"


def test_servers_listen_on_all_interfaces_inside_their_container(compose):
    s = settings_from(compose[SHARED_ENV_KEY])
    assert s.control_host == "0.0.0.0"
    assert s.dataplane_host == "0.0.0.0"
    assert s.projector_host == "0.0.0.0"


# --- ports and health ------------------------------------------------------------------------------


def test_published_ports_match_settings_and_bind_loopback(compose, services):
    s = settings_from(compose[SHARED_ENV_KEY])
    assert published_ports(services["control"]) == [("127.0.0.1", s.control_port, s.control_port)]
    assert published_ports(services["dataplane"]) == [("127.0.0.1", s.dataplane_port, s.dataplane_port)]
    assert published_ports(services[s.mqtt_host]) == [("127.0.0.1", s.mqtt_port, s.mqtt_port)]
    assert not published_ports(services["migrate"])
    assert not published_ports(services["projector"])
    for name, svc in services.items():
        for ip, _, _ in published_ports(svc):
            assert ip == "127.0.0.1", f"{name}: publish on 127.0.0.1 only"


def test_http_healthchecks_probe_the_settings_port(compose, services):
    s = settings_from(compose[SHARED_ENV_KEY])
    for name, port in (("control", s.control_port), ("dataplane", s.dataplane_port)):
        urls = re.findall(r"https?://[^\s'\"]+", healthcheck_text(services[name]))
        assert urls == [f"http://127.0.0.1:{port}/health"], f"{name}: healthcheck {urls}"


# --- the infrastructure the settings name ----------------------------------------------------------


def test_kafka_bootstrap_names_the_kafka_service(compose, services):
    host, port = host_port(settings_from(compose[SHARED_ENV_KEY]).kafka_bootstrap)
    assert host in services, f"IOTJOBS_KAFKA_BOOTSTRAP names {host!r}, not a compose service"
    kafka = services[host]
    assert kafka["image"] == "apache/kafka:3.9.1"
    env = {k: str(v) for k, v in env_of(kafka).items()}
    advertised = dict(re.findall(r"(\w+)://([^,]+)", env["KAFKA_ADVERTISED_LISTENERS"]))
    names = [n for n, addr in advertised.items() if addr == f"{host}:{port}"]
    assert names, f"no advertised listener is {host}:{port}: {advertised}"
    listeners = dict(re.findall(r"(\w+)://([^,]*)", env["KAFKA_LISTENERS"]))
    bind_host, bind_port = listeners[names[0]].rsplit(":", 1)
    assert int(bind_port) == port
    assert bind_host in ("", "0.0.0.0"), "the client listener must accept other containers"
    assert env["KAFKA_PROCESS_ROLES"].split(",") == ["broker", "controller"]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_TRANSACTION_STATE_LOG_MIN_ISR"] == "1"
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    assert f"{host}:{port}" in healthcheck_text(kafka)


def test_pg_dsn_names_the_postgres_service(compose, services):
    dsn = urlsplit(settings_from(compose[SHARED_ENV_KEY]).pg_dsn)
    assert dsn.scheme in ("postgresql", "postgres")
    assert dsn.hostname in services, f"IOTJOBS_PG_DSN names {dsn.hostname!r}, not a compose service"
    postgres = services[dsn.hostname]
    assert postgres["image"] == "postgres:15"
    env = {k: str(v) for k, v in env_of(postgres).items()}
    assert (dsn.port or 5432) == int(env.get("PGPORT", "5432"))
    assert dsn.username == env.get("POSTGRES_USER", "postgres")
    if env.get("POSTGRES_HOST_AUTH_METHOD") != "trust":
        assert dsn.password == env["POSTGRES_PASSWORD"]
    database = dsn.path.lstrip("/")
    assert database == "iotjobs" == env.get("POSTGRES_DB", env.get("POSTGRES_USER", "postgres"))
    assert f"-d {database}" in healthcheck_text(postgres)


def test_mqtt_host_names_the_broker_and_its_config(compose, services):
    s = settings_from(compose[SHARED_ENV_KEY])
    assert s.mqtt_host in services, f"IOTJOBS_MQTT_HOST names {s.mqtt_host!r}, not a compose service"
    broker = services[s.mqtt_host]
    assert broker["image"] == "eclipse-mosquitto:2.0"
    mounts = mounts_of(broker)
    assert MOSQUITTO_CONF_IN_CONTAINER in mounts, "mosquitto.conf is not mounted"
    conf = mosquitto_conf((ROOT / mounts[MOSQUITTO_CONF_IN_CONTAINER]).read_text())
    assert conf["listener"] == [str(s.mqtt_port)], "one listener, on IOTJOBS_MQTT_PORT, all interfaces"
    expected = {
        "allow_anonymous": "true",
        "persistence": "true",
        "set_tcp_nodelay": "true",
        "max_inflight_messages": "1000",
        "max_queued_messages": "100000",
    }
    for key, value in expected.items():
        assert conf.get(key) == [value], f"mosquitto.conf: {key} should be {value}"
    # Device sessions survive a broker restart: the persistence directory is a named volume.
    (location,) = conf["persistence_location"]
    assert location.rstrip("/") in mounts, f"{location} is not mounted"
    assert mounts[location.rstrip("/")] in (compose.get("volumes") or {}), "the broker's data is not a named volume"
    assert str(s.mqtt_port) in healthcheck_text(broker)


# --- start-up order --------------------------------------------------------------------------------


def test_depends_on_targets_exist_with_the_right_conditions(compose, services):
    for name, svc in services.items():
        if "depends_on" in svc:
            assert isinstance(svc["depends_on"], dict), f"{name}: use depends_on with conditions"
        for target in depends_of(svc):
            assert target in services, f"{name} depends on unknown service {target!r}"
    targets = infra_targets(compose[SHARED_ENV_KEY])
    for name in APP_SERVICES:
        deps = depends_of(services[name])
        if name != "migrate":
            assert deps.get("migrate") == "service_completed_successfully", f"{name} must wait for migrate"
        for need in NEEDS[name]:
            infra = targets[need][0]
            assert deps.get(infra) == "service_healthy", f"{name} must wait for {infra} to be healthy"
        assert set(deps) <= {"migrate"} | {targets[n][0] for n in NEEDS[name]}, f"{name}: {deps}"


def test_every_service_waited_on_as_healthy_has_a_healthcheck(services):
    awaited = {t for svc in services.values() for t, c in depends_of(svc).items() if c == "service_healthy"}
    assert awaited >= {"kafka", "postgres", "mosquitto"}
    for name in awaited | {"control", "dataplane"}:
        hc = services[name].get("healthcheck") or {}
        assert hc.get("test") and not hc.get("disable"), f"{name} has no healthcheck"


def test_services_waited_on_to_complete_are_one_shot(services):
    for svc in services.values():
        for target, condition in depends_of(svc).items():
            if condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} would never complete"


# --- image and commands ----------------------------------------------------------------------------


def test_app_services_build_the_one_image_from_the_dockerfile(services):
    images = set()
    for name in APP_SERVICES:
        build = services[name].get("build")
        assert build is not None, f"{name} is not built here"
        context, dockerfile = (
            (build, "Dockerfile")
            if isinstance(build, str)
            else (
                build.get("context", "."),
                build.get("dockerfile", "Dockerfile"),
            )
        )
        assert (ROOT / context).resolve() == ROOT
        assert (ROOT / context / dockerfile).resolve() == DOCKERFILE.resolve()
        images.add(services[name].get("image"))
    assert len(images) == 1 and None not in images, f"one tagged image for all services, got {images}"


@pytest.mark.parametrize("name", APP_SERVICES)
def test_commands_are_declared_console_scripts(services, name):
    steps = check_command(services[name]["command"], SERVICE_SCRIPT[name])
    if name == "migrate":
        assert [s[1] for s in steps] == ["migrate", "topics"]


# --- Dockerfile ------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_base_user_and_command():
    instructions = dockerfile_instructions()
    assert [rest for word, rest in instructions if word == "FROM"] == ["python:3.11-slim"]
    users = [rest for word, rest in instructions if word == "USER"]
    assert users, "the image must not run as root"
    uid = users[-1].split(":")[0]
    assert uid not in ("root", "0")
    assert not [w for w, _ in instructions if w == "ENTRYPOINT"], "the command alone picks the service"
    assert [w for w, _ in instructions if w == "CMD"], "the default command shows the usage"
    runs = " ".join(rest for word, rest in instructions if word == "RUN")
    assert re.search(r"pip install[^&;]*(-e|--editable) \.", runs), "install the copied tree in place"


def test_dockerfile_keeps_migrations_where_pg_looks_for_them():
    workdir = PurePosixPath("/")
    copied: dict[str, PurePosixPath] = {}
    for word, rest in dockerfile_instructions():
        if word == "WORKDIR":
            workdir = workdir / rest
        elif word == "COPY":
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            *sources, dest = args
            for src in sources:
                src_name = src.rstrip("/")
                target = workdir / dest
                if dest.endswith("/") and len(sources) == 1 and not src.endswith("/"):
                    target = target / src_name
                copied[src_name] = target
    for needed in ("pyproject.toml", "iotjobs", "services", "migrations"):
        assert needed in copied, f"the Dockerfile does not copy {needed}"
    # Where pg.py sits in the image, and the migrations directory it computes from there.
    pg_file = Path(pg.__file__).resolve()
    levels = [n for n in range(len(pg_file.parents)) if pg_file.parents[n] / "migrations" == pg.MIGRATIONS]
    assert levels, "pg.MIGRATIONS is not <ancestor of pg.py>/migrations"
    pg_in_image = copied["iotjobs"].joinpath(*pg_file.relative_to(ROOT / "iotjobs").parts)
    assert pg_in_image.parents[levels[0]] / "migrations" == copied["migrations"]


def test_dockerignore_keeps_what_the_dockerfile_copies():
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and p[0] != "#"]
    for name in ("pyproject.toml", "iotjobs", "services", "migrations"):
        excluded = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!").rstrip("/")
            if fnmatch.fnmatch(name, pat):
                excluded = not negate
        assert not excluded, f".dockerignore excludes {name}"


# --- Kubernetes ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def k8s() -> dict[tuple[str, str], dict[str, Any]]:
    docs: dict[tuple[str, str], dict[str, Any]] = {}
    files = sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")
    assert files, "no manifests in deploy/k8s"
    for path in files:
        with path.open() as f:
            for doc in yaml.safe_load_all(f):
                if doc:
                    key = (doc["kind"], doc["metadata"]["name"])
                    assert key not in docs, f"{key} defined twice"
                    docs[key] = doc
    return docs


def of_kind(k8s: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: doc for (k, name), doc in k8s.items() if k == kind}


def k8s_env(k8s) -> dict[str, str]:
    env: dict[str, str] = {}
    for cm in of_kind(k8s, "ConfigMap").values():
        env.update(cm.get("data") or {})
    for secret in of_kind(k8s, "Secret").values():
        env.update(secret.get("stringData") or {})
        assert not secret.get("data"), "use stringData so the keys can be checked"
    return env


def pod_specs(k8s) -> dict[str, dict[str, Any]]:
    specs = {}
    for kind in ("Deployment", "Job"):
        for name, doc in of_kind(k8s, kind).items():
            specs[name] = doc["spec"]["template"]["spec"]
    return specs


def test_k8s_config_keys_are_settings_fields_and_match_compose(k8s, compose):
    configmaps = of_kind(k8s, "ConfigMap")
    assert configmaps, "no ConfigMap"
    for name, cm in configmaps.items():
        unknown = sorted(k for k in cm.get("data") or {} if k not in ENV_NAMES)
        assert not unknown, f"ConfigMap {name}: not Settings fields: {unknown}"
    for name, secret in of_kind(k8s, "Secret").items():
        unknown = sorted(k for k in secret.get("stringData") or {} if k not in ENV_NAMES)
        assert not unknown, f"Secret {name}: not Settings fields: {unknown}"
    env = k8s_env(k8s)
    assert set(env) == set(compose[SHARED_ENV_KEY]) | K8S_SECURITY_KEYS, "k8s and compose set different variables"
    s = settings_from(env)
    assert s.control_host == s.dataplane_host == "0.0.0.0"


def test_k8s_workloads_run_the_image_with_the_shared_config(k8s, services):
    image = services["control"]["image"]
    uid = [rest for word, rest in dockerfile_instructions() if word == "USER"][-1].split(":")[0]
    configmaps, secrets = of_kind(k8s, "ConfigMap"), of_kind(k8s, "Secret")
    specs = pod_specs(k8s)
    assert set(specs) == {f"iotjobs-{n}" for n in APP_SERVICES}
    for name, spec in specs.items():
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert str(spec["securityContext"]["runAsUser"]) == uid
        (container,) = spec["containers"]
        assert container["image"] == image
        refs = container.get("envFrom") or []
        assert refs, f"{name}: no envFrom"
        for ref in refs:
            if "configMapRef" in ref:
                assert ref["configMapRef"]["name"] in configmaps, f"{name}: unknown ConfigMap"
            else:
                assert ref["secretRef"]["name"] in secrets, f"{name}: unknown Secret"
        for var in container.get("env") or []:
            assert var["name"] in ENV_NAMES, f"{name}: {var['name']} is not a Settings field"


def test_k8s_commands_are_console_scripts(k8s, services):
    specs = pod_specs(k8s)
    for name in APP_SERVICES:
        (container,) = specs[f"iotjobs-{name}"]["containers"]
        check_command(container["command"], SERVICE_SCRIPT[name])
    (job_container,) = specs["iotjobs-migrate"]["containers"]
    assert job_container["command"] == services["migrate"]["command"]
    assert of_kind(k8s, "Job")["iotjobs-migrate"]["spec"]["template"]["spec"]["restartPolicy"] in (
        "OnFailure",
        "Never",
    )


# The HTTP path of each probe: readiness is /health; liveness is /live where the runtime can tell a stalled
# partition apart from a passing outage, and the projector's /health (it fails only while projecting stalls).
PROBE_PATHS = {
    "iotjobs-control": {"readinessProbe": "/health", "livenessProbe": "/live", "startupProbe": "/live"},
    "iotjobs-dataplane": {"readinessProbe": "/health", "livenessProbe": "/live", "startupProbe": "/live"},
    "iotjobs-projector": {"readinessProbe": "/health", "livenessProbe": "/health", "startupProbe": "/health"},
}


def test_k8s_probes_use_the_settings_ports_and_paths(k8s):
    s = settings_from(k8s_env(k8s))
    ports = {"iotjobs-control": s.control_port, "iotjobs-dataplane": s.dataplane_port}
    ports["iotjobs-projector"] = s.projector_port
    assert s.projector_host == "0.0.0.0", "the kubelet probes the projector from outside its pod"
    deployments = of_kind(k8s, "Deployment")
    assert set(deployments) == set(PROBE_PATHS)
    for name, port in ports.items():
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        named = {p.get("name"): p["containerPort"] for p in container["ports"]}
        assert list(named.values()) == [port], f"{name}: container port"
        for kind, path in PROBE_PATHS[name].items():
            probe = container[kind]["httpGet"]
            target = named[probe["port"]] if isinstance(probe["port"], str) else probe["port"]
            assert (probe["path"], target, probe.get("scheme", "HTTP")) == (path, port, "HTTP"), f"{name}: {kind}"
        # Liveness gives up later than readiness: a short outage takes the pod out of rotation, no more.
        patience = {k: container[k]["periodSeconds"] * container[k]["failureThreshold"] for k in PROBE_PATHS[name]}
        assert patience["livenessProbe"] > patience["readinessProbe"], name
    assert not s.tls_cert_file, "the probes speak HTTP: TLS ends in front of the pods"


def test_k8s_services_use_the_settings_ports(k8s):
    s = settings_from(k8s_env(k8s))
    deployments, k8s_services = of_kind(k8s, "Deployment"), of_kind(k8s, "Service")
    for name, port in (("iotjobs-control", s.control_port), ("iotjobs-dataplane", s.dataplane_port)):
        pod = deployments[name]["spec"]["template"]
        (container,) = pod["spec"]["containers"]
        named = {p.get("name"): p["containerPort"] for p in container["ports"]}

        def resolve(p: int | str, named: dict[Any, int] = named) -> int:
            return named[p] if isinstance(p, str) else p

        svc = k8s_services[name]["spec"]
        assert [p["port"] for p in svc["ports"]] == [port]
        assert resolve(svc["ports"][0].get("targetPort", port)) == port
        assert svc["selector"].items() <= pod["metadata"]["labels"].items(), f"{name}: selector"
        match_labels = deployments[name]["spec"]["selector"]["matchLabels"]
        assert match_labels.items() <= pod["metadata"]["labels"].items(), f"{name}: matchLabels"


def test_k8s_service_links_cannot_shadow_settings(k8s):
    link_vars = set()
    for name in of_kind(k8s, "Service"):
        prefix = name.upper().replace("-", "_")
        link_vars |= {f"{prefix}_PORT", f"{prefix}_SERVICE_HOST", f"{prefix}_SERVICE_PORT"}
    if link_vars & set(ENV_NAMES):
        for name, spec in pod_specs(k8s).items():
            assert spec.get("enableServiceLinks") is False, f"{name}: Service links shadow IOTJOBS_* settings"


def test_k8s_runs_in_production_mode_with_no_door_open(k8s):
    s = settings_from(k8s_env(k8s))
    assert s.security_mode == "production"
    for service in APP_SERVICES:
        assert security.open_doors(s, service) == [], service


# --- compose, production setting ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def production() -> dict[str, Any]:
    return load_compose(PRODUCTION_FILE)


@pytest.fixture(scope="module")
def written_by_init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A credentials directory as `iotjobs-admin credentials init` and `access-key` leave it."""
    store = CredentialsDir(tmp_path_factory.mktemp("credentials"))
    store.init(["mosquitto"])
    store.new_access_key("operator")
    return store.path


def test_production_services_are_in_production_mode_with_no_door_open(compose, production):
    overrides = production["services"]
    for name in APP_SERVICES:
        env = {**compose[SHARED_ENV_KEY], **env_of(overrides[name])}
        unknown = sorted(k for k in env if k not in ENV_NAMES)
        assert not unknown, f"{name}: not Settings fields: {unknown}"
        s = settings_from(env)
        assert s.security_mode == "production"
        assert security.open_doors(s, name) == [], name


def test_production_files_are_the_ones_credentials_init_writes_on_the_mounted_volume(production, written_by_init):
    env = production[PRODUCTION_ENV_KEY]
    s = settings_from(env)
    volume = production["services"]["migrate"]["volumes"][0].split(":")[0]
    assert volume in production["volumes"], "the credentials volume is not declared"
    for name in ("migrate", *APP_SERVICES):
        assert mounts_of(production["services"][name]).get(s.credentials_dir) == volume, f"{name}: not mounted"
    files = [s.mqtt_password_file, s.tls_cert_file, s.tls_key_file, s.sigv4_credentials_file]
    for path in files:
        assert PurePosixPath(path).parent == PurePosixPath(s.credentials_dir), path
        assert (written_by_init / PurePosixPath(path).name).is_file(), f"credentials init writes no {path}"


def production_broker_conf(production: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, str], str]:
    broker = production["services"]["mosquitto"]
    mounts = mounts_of(broker)
    text = (ROOT / mounts[MOSQUITTO_CONF_IN_CONTAINER]).read_text()
    return mosquitto_conf(text), mounts, text


def test_production_broker_requires_credentials_from_the_mounted_volume(production, written_by_init):
    conf, mounts, _text = production_broker_conf(production)
    assert conf["allow_anonymous"] == ["false"]
    assert conf["listener"] == ["1883", "8883"]
    assert conf["require_certificate"] == ["true"] and conf["use_identity_as_username"] == ["true"]
    assert ("127.0.0.1", 8883, 8883) in published_ports(production["services"]["mosquitto"])
    for key in ("password_file", "acl_file", "cafile", "certfile", "keyfile", "crlfile"):
        (path,) = conf[key]
        directory = str(PurePosixPath(path).parent)
        assert mounts.get(directory) in production["volumes"], f"{key}: {directory} is not the credentials volume"
        assert (written_by_init / PurePosixPath(path).name).is_file(), f"credentials init writes no {path}"


def test_production_broker_config_loads_and_takes_only_the_services_password(production):
    """The real broker runs the production config (its paths and ports moved to this machine's)."""
    tmp_path = Path(tempfile.mkdtemp(prefix="iotjobs-broker-conf-"))  # pytest's are closed to the broker's user
    credentials = tmp_path / "credentials"
    store = CredentialsDir(credentials)
    store.init(["localhost"])
    data = tmp_path / "data"
    data.mkdir()
    for path in (tmp_path, data):
        path.chmod(0o755)
        if os.geteuid() == 0:
            shutil.chown(path, "mosquitto")
    ports = {"1883": free_port(), "8883": free_port()}
    _conf, _mounts, text = production_broker_conf(production)
    text = text.replace("/mosquitto/credentials", str(credentials)).replace("/mosquitto/data", str(data))
    for port, free in ports.items():
        text = text.replace(f"listener {port}\n", f"listener {free} 127.0.0.1\n")
    conf_file = tmp_path / "mosquitto.conf"
    conf_file.write_text(text)
    conf_file.chmod(0o644)
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(conf_file)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        until_sync(lambda: _can_connect(ports["1883"]) or broker.poll() is not None, 10, "the broker's listener")
        assert broker.poll() is None, broker.communicate()[0]
        pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(ports["1883"]), "-t", "iotjobs/things/check", "-m", "x"]
        service = ["-u", "iotjobs-service", "-P", store.service_password()]
        assert subprocess.run([*pub, *service], capture_output=True, timeout=10).returncode == 0
        refused = subprocess.run(pub, capture_output=True, text=True, timeout=10)
        assert refused.returncode != 0 and "not authorised" in refused.stderr.lower()
    finally:
        broker.terminate()
        output, _ = broker.communicate(timeout=10)
        shutil.rmtree(tmp_path, ignore_errors=True)
    assert "Error" not in output, output


def _can_connect(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
