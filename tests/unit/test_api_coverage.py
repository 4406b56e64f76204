"""docs/api-coverage.md cannot go stale: it must be exactly what services.control.coverage renders now, and
the table of operations it renders from must route every served operation as the `iot` model does."""

from __future__ import annotations

import botocore.session

from services.control import coverage
from services.control.operations import OPERATIONS

REGENERATE = "python -m services.control.coverage"


def test_the_committed_document_is_what_the_generator_writes() -> None:
    assert coverage.DOCUMENT.exists(), f"docs/api-coverage.md is missing; run `{REGENERATE}`"
    committed = coverage.DOCUMENT.read_text()
    assert committed == coverage.render(), f"docs/api-coverage.md is stale; run `{REGENERATE}` and commit it"


def test_served_operations_use_the_models_method_and_path() -> None:
    model = botocore.session.get_session().get_service_model("iot")
    for op in OPERATIONS:
        assert op.name in model.operation_names, f"{op.name} is not an `iot` operation"
        http = model.operation_model(op.name).http
        assert (op.method, op.path) == (http["method"], http["requestUri"].split("?", 1)[0]), op.name


def test_each_operation_is_served_at_most_once_and_routes_do_not_collide() -> None:
    names = [op.name for op in OPERATIONS]
    assert len(names) == len(set(names))
    routes = [(op.method, op.path) for op in OPERATIONS]
    assert len(routes) == len(set(routes))


def test_every_model_operation_is_in_exactly_one_section() -> None:
    model = botocore.session.get_session().get_service_model("iot")
    missing = coverage.JOBS_SCOPE - set(model.operation_names)
    assert not missing, missing
    document = coverage.render()
    control_plane = document.split("## Device plane")[0]
    for name in model.operation_names:
        assert control_plane.count(f"| {name} |") == 1, name
    served = {op.name for op in OPERATIONS}
    assert f"iotjobs serves {len(served)}," in document
    assert f"not served yet ({len(coverage.JOBS_SCOPE - served)})" in document


def test_the_device_plane_section_lists_the_mqtt_topics() -> None:
    document = coverage.render()
    for topic in (
        "$aws/things/{thingName}/jobs/get",
        "$aws/things/{thingName}/jobs/start-next",
        "$aws/things/{thingName}/jobs/{jobId}/get",
        "$aws/things/{thingName}/jobs/{jobId}/update",
        "$aws/things/{thingName}/jobs/notify",
        "$aws/things/{thingName}/jobs/notify-next",
    ):
        assert f"- `{topic}`" in document
