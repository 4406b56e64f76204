"""The deployment files checked by tools: the Compose files against the Compose Specification's JSON schema,
deploy/k8s/ and its scale-out overlay against the Kubernetes API schemas of a pinned Kubernetes version, and
the kustomizations rendered the way kustomize renders them, then checked as a whole (autoscalers, disruption
budgets, resources, the dataplane's MQTT ingress mode).

The schemas come from packages pinned in pyproject.toml's test extra, so every run checks against the same
text: check-jsonschema ships the compose-spec schema (its own sha256 beside it), kubernetes-validate ships
the Kubernetes schemas of every release. No Docker engine, cluster or kustomize binary is needed.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.resources
import json
from dataclasses import fields
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from iotjobs.runtime.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PRODUCTION_FILE = ROOT / "deploy" / "compose.production.yml"
K8S_DIR = ROOT / "deploy" / "k8s"
SCALE_OUT_DIR = ROOT / "deploy" / "k8s-scale-out"
KUSTOMIZATIONS = (K8S_DIR, SCALE_OUT_DIR)
KUSTOMIZATION = "kustomization.yaml"

COMPOSE_SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
COMPOSE_SCHEMA_SHA256 = "d549057ebc2925f39f62799eab0db7b9e2c18b35b6c00595199116da3ed10e64"
"""compose-spec.json as check-jsonschema 0.39.0 ships it: a new schema is taken on purpose, not by accident."""
KUBERNETES_VERSION = "1.33"
"""The Kubernetes release whose API the manifests are checked against (strict: unknown fields are errors)."""

ENV_NAMES = {Settings.env_name(f.name) for f in fields(Settings)}


# --- Compose ---------------------------------------------------------------------------------------


def compose_schema_text() -> str:
    return importlib.resources.files(COMPOSE_SCHEMA_PACKAGE).joinpath("compose-spec.json").read_text()


@pytest.fixture(scope="module")
def compose_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(compose_schema_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def load_yaml(path: Path) -> dict[str, Any]:
    with path.open() as f:
        data = yaml.safe_load(f)
    assert isinstance(data, dict), path
    return data


def merge_compose(base: Any, override: Any, path: tuple[str, ...] = ()) -> Any:
    """`docker compose -f base -f override`, for what these files use (compose-spec, "Merge and override"):
    mappings merge key by key; `command`, `entrypoint` and a healthcheck's `test` are replaced; a service's
    `volumes` merge by container path and its `ports` by value; other sequences append."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge_compose(base[key], value, (*path, key)) if key in base else value
        return merged
    if isinstance(base, list) and isinstance(override, list):
        if path[-1:] in (("command",), ("entrypoint",)) or path[-2:] == ("healthcheck", "test"):
            return override
        if len(path) == 3 and path[0] == "services" and path[2] == "volumes":
            by_target = {str(PurePosixPath(str(v).split(":")[1])): v for v in base}
            by_target.update({str(PurePosixPath(str(v).split(":")[1])): v for v in override})
            return list(by_target.values())
        if len(path) == 3 and path[0] == "services" and path[2] == "ports":
            return base + [p for p in override if p not in base]
        return base + override
    return override


def compose_documents() -> dict[str, dict[str, Any]]:
    base, production = load_yaml(COMPOSE_FILE), load_yaml(PRODUCTION_FILE)
    return {
        "docker-compose.yml": base,
        "deploy/compose.production.yml": production,
        "docker-compose.yml + deploy/compose.production.yml": merge_compose(base, production),
    }


def schema_errors(validator: jsonschema.Draft202012Validator, document: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in validator.iter_errors(document)]


def test_the_compose_schema_is_the_pinned_one():
    text = compose_schema_text()
    shipped = importlib.resources.files(COMPOSE_SCHEMA_PACKAGE).joinpath("sha256", "compose-spec.sha256").read_text()
    digest = hashlib.sha256(text.encode()).hexdigest()
    assert digest == shipped.strip(), "the package's schema does not match the hash it ships"
    assert digest == COMPOSE_SCHEMA_SHA256, "another compose-spec schema: review it, then pin its hash"
    assert json.loads(text)["title"] == "Compose Specification"


@pytest.mark.parametrize("name", list(compose_documents()))
def test_compose_files_follow_the_compose_specification(compose_validator, name):
    document = compose_documents()[name]
    assert schema_errors(compose_validator, document) == [], name


def test_the_compose_schema_check_catches_a_misspelt_or_mistyped_key(compose_validator):
    base = load_yaml(COMPOSE_FILE)
    misspelt = copy.deepcopy(base)
    misspelt["services"]["control"]["helthcheck"] = misspelt["services"]["control"].pop("healthcheck")
    assert any("helthcheck" in e for e in schema_errors(compose_validator, misspelt))
    mistyped = copy.deepcopy(base)
    mistyped["services"]["control"]["depends_on"]["migrate"]["condition"] = "service_finished"
    assert schema_errors(compose_validator, mistyped)


def test_the_merged_production_stack_is_what_compose_would_run():
    merged = compose_documents()["docker-compose.yml + deploy/compose.production.yml"]
    services = merged["services"]
    broker = services["mosquitto"]
    config_mounts = [v for v in broker["volumes"] if str(v).split(":")[1] == "/mosquitto/config/mosquitto.conf"]
    assert config_mounts == ["./deploy/mosquitto/mosquitto.production.conf:/mosquitto/config/mosquitto.conf:ro"]
    assert "127.0.0.1:1883:1883" in broker["ports"] and "127.0.0.1:8883:8883" in broker["ports"]
    for name in ("migrate", "control", "dataplane", "projector"):
        env = services[name]["environment"]
        assert set(env) <= ENV_NAMES, name
        settings = Settings.from_env({**env, "IOTJOBS_INSTANCE_ID": "check"})
        assert settings.security_mode == "production", name
    for name in ("control", "dataplane"):
        assert "https://127.0.0.1" in " ".join(services[name]["healthcheck"]["test"]), name


# --- Kubernetes ------------------------------------------------------------------------------------


def manifest_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.yaml") if p.name != KUSTOMIZATION)


def documents_of(path: Path) -> list[dict[str, Any]]:
    with path.open() as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def all_manifests() -> list[tuple[str, int, dict[str, Any]]]:
    return [
        (str(path.relative_to(ROOT)), index, doc)
        for directory in KUSTOMIZATIONS
        for path in manifest_files(directory)
        for index, doc in enumerate(documents_of(path))
    ]


def validate_k8s(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize(
    "doc", [doc for _f, _i, doc in all_manifests()], ids=[f"{f}#{i}" for f, i, _d in all_manifests()]
)
def test_every_manifest_follows_the_kubernetes_api(doc):
    validate_k8s(doc)


def test_the_kubernetes_schema_check_catches_a_misspelt_or_mistyped_field():
    (deployment,) = [d for d in documents_of(K8S_DIR / "control.yaml") if d["kind"] == "Deployment"]
    misspelt = copy.deepcopy(deployment)
    container = misspelt["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        validate_k8s(misspelt)
    mistyped = copy.deepcopy(deployment)
    mistyped["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_k8s(mistyped)


# --- kustomize -------------------------------------------------------------------------------------


def kustomization(directory: Path) -> dict[str, Any]:
    data = load_yaml(directory / KUSTOMIZATION)
    assert data["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and data["kind"] == "Kustomization"
    assert set(data) <= {"apiVersion", "kind", "resources", "patches"}, "render() knows only these fields"
    return data


def strategic_merge(target: Any, patch: Any) -> Any:
    """A strategic-merge patch of mappings, as kustomize applies one: keys merge recursively, null deletes."""
    if not isinstance(target, dict) or not isinstance(patch, dict):
        return patch
    merged = dict(target)
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = strategic_merge(merged.get(key), value)
    return merged


def render(directory: Path) -> list[dict[str, Any]]:
    """What `kustomize build` gives for these kustomizations: the resources in order (a directory is its own
    kustomization), then each patch applied to the one object of its kind and name."""
    docs: list[dict[str, Any]] = []
    spec = kustomization(directory)
    for entry in spec.get("resources") or []:
        path = (directory / entry).resolve()
        docs.extend(render(path) if path.is_dir() else documents_of(path))
    for item in spec.get("patches") or []:
        assert set(item) == {"patch"}, "only inline strategic-merge patches"
        patch = yaml.safe_load(item["patch"])
        key = (patch["kind"], patch["metadata"]["name"])
        targets = [i for i, d in enumerate(docs) if (d["kind"], d["metadata"]["name"]) == key]
        assert len(targets) == 1, f"patch target {key}: {len(targets)} objects"
        docs[targets[0]] = strategic_merge(docs[targets[0]], patch)
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), f"an object defined twice: {keys}"
    return docs


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_each_kustomization_lists_exactly_the_manifests_beside_it(directory):
    resources = kustomization(directory).get("resources") or []
    files = [r for r in resources if not (directory / r).is_dir()]
    assert len(resources) == len(set(resources)), "a resource listed twice"
    assert sorted(files) == [p.name for p in manifest_files(directory)], "listed files differ from the directory"
    for entry in resources:
        if (directory / entry).is_dir():
            assert (directory / entry / KUSTOMIZATION).is_file(), f"{entry} is not a kustomization"


def rendered(directory: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in render(directory)}


def of_kind(objects: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {name: doc for (k, name), doc in objects.items() if k == kind}


def settings_of(objects: dict[tuple[str, str], dict[str, Any]]) -> Settings:
    env: dict[str, str] = {}
    for cm in of_kind(objects, "ConfigMap").values():
        env.update(cm["data"])
    for secret in of_kind(objects, "Secret").values():
        env.update(secret["stringData"])
    return Settings.from_env({**env, "IOTJOBS_INSTANCE_ID": "check"})


def quantity(value: str | int) -> float:
    """A Kubernetes CPU or memory quantity as a number (cores, bytes)."""
    text = str(value)
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_the_rendered_objects_follow_the_kubernetes_api(directory):
    for doc in render(directory):
        validate_k8s(doc)


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_every_container_has_requests_and_limits(directory):
    for (kind, name), doc in rendered(directory).items():
        if kind not in ("Deployment", "Job"):
            continue
        for container in doc["spec"]["template"]["spec"]["containers"]:
            resources = container.get("resources") or {}
            for resource in ("cpu", "memory"):
                request = resources.get("requests", {}).get(resource)
                limit = resources.get("limits", {}).get(resource)
                assert request and limit, f"{name}/{container['name']}: {resource} request and limit"
                assert quantity(request) <= quantity(limit), f"{name}/{container['name']}: {resource}"


def test_the_dataplane_memory_holds_a_fleet_as_benchmarked():
    """docs/benchmarks.md: the dataplane's RSS peaks near 410 MB during a fan-out to 100,000 things."""
    (container,) = rendered(K8S_DIR)[("Deployment", "iotjobs-dataplane")]["spec"]["template"]["spec"]["containers"]
    resources = container["resources"]
    assert quantity(resources["requests"]["memory"]) >= 410 * 10**6  # the peak is scheduled for
    assert quantity(resources["limits"]["memory"]) >= 600 * 2**20  # with headroom for a larger fleet


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_autoscalers_and_disruption_budgets_fit_their_deployments(directory):
    objects = rendered(directory)
    settings = settings_of(objects)
    deployments = of_kind(objects, "Deployment")
    autoscaled = set()
    for name, hpa in of_kind(objects, "HorizontalPodAutoscaler").items():
        target = hpa["spec"]["scaleTargetRef"]
        assert (target["apiVersion"], target["kind"]) == ("apps/v1", "Deployment"), name
        assert target["name"] in deployments, f"{name} scales no Deployment of this kustomization"
        assert "replicas" not in deployments[target["name"]]["spec"], f"{target['name']}: an apply resets the HPA"
        # A replica beyond the partition count owns nothing.
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"] <= settings.partitions, name
        autoscaled.add(target["name"])
    budgets = of_kind(objects, "PodDisruptionBudget")
    assert {"iotjobs-control", "iotjobs-dataplane"} <= set(budgets)
    for name, pdb in budgets.items():
        selector = pdb["spec"]["selector"]["matchLabels"]
        matched = [
            d
            for d, doc in deployments.items()
            if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()
        ]
        assert matched == [name], f"{name} selects {matched}"
        # A budget that allows no eviction would block every node drain.
        fewest = objects.get(("HorizontalPodAutoscaler", name), {}).get("spec", {}).get("minReplicas")
        fewest = fewest or deployments[name]["spec"].get("replicas", 1)
        if "minAvailable" in pdb["spec"]:
            assert int(pdb["spec"]["minAvailable"]) < fewest, name
        else:
            assert int(pdb["spec"]["maxUnavailable"]) >= 1, name


@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda d: str(d.relative_to(ROOT)))
def test_several_dataplanes_run_only_with_a_shared_mqtt_ingress(directory):
    """In `direct` mode every dataplane uses the one MQTT client id: a second instance, scaled or surged
    during a rolling update, would take the session away from the first (docs/adr/0006)."""
    objects = rendered(directory)
    dataplane = objects[("Deployment", "iotjobs-dataplane")]["spec"]
    scaled = ("HorizontalPodAutoscaler", "iotjobs-dataplane") in objects
    if settings_of(objects).mqtt_ingress == "direct":
        assert not scaled and dataplane["replicas"] == 1
        assert dataplane["strategy"] == {"type": "Recreate"}
    else:
        assert scaled, "a shared ingress is for scaling out"
    assert directory != SCALE_OUT_DIR or scaled
