"""Write the request-side facts of the AWS service models iotjobs serves into iotjobs/wire/models/.

The AWS models (as botocore ships them) define every member's type, location and constraints. iotjobs
enforces them server-side, so it keeps a compact copy without the documentation: operations with their
HTTP binding, and the shapes their inputs reach. Run after changing SCOPE or upgrading botocore:

    python scripts/extract_models.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import botocore.session

OUT = Path(__file__).resolve().parents[1] / "iotjobs" / "wire" / "models"
CONSTRAINTS = ("min", "max", "pattern", "enum")
# The `iot` operations of the jobs scope: jobs, executions, templates, the registry subset job targets
# need, tags and DescribeEndpoint.
SCOPE = {
    "iot": [
        "AddThingToThingGroup",
        "AssociateTargetsWithJob",
        "CancelJob",
        "CancelJobExecution",
        "CreateJob",
        "CreateJobTemplate",
        "CreateThing",
        "CreateThingGroup",
        "DeleteJob",
        "DeleteJobExecution",
        "DeleteJobTemplate",
        "DeleteThing",
        "DeleteThingGroup",
        "DescribeEndpoint",
        "DescribeEventConfigurations",
        "DescribeJob",
        "DescribeJobExecution",
        "DescribeJobTemplate",
        "DescribeManagedJobTemplate",
        "DescribeThing",
        "DescribeThingGroup",
        "GetJobDocument",
        "ListJobExecutionsForJob",
        "ListJobExecutionsForThing",
        "ListJobTemplates",
        "ListJobs",
        "ListManagedJobTemplates",
        "ListTagsForResource",
        "ListThingGroups",
        "ListThingGroupsForThing",
        "ListThings",
        "ListThingsInThingGroup",
        "RemoveThingFromThingGroup",
        "TagResource",
        "UntagResource",
        "UpdateEventConfigurations",
        "UpdateJob",
        "UpdateThing",
        "UpdateThingGroup",
        "UpdateThingGroupsForThing",
    ],
    "iot-jobs-data": [
        "DescribeJobExecution",
        "GetPendingJobExecutions",
        "StartNextPendingJobExecution",
        "UpdateJobExecution",
    ],
}


def _shape(raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"type": raw["type"]}
    out.update({k: raw[k] for k in CONSTRAINTS if k in raw})
    if raw["type"] == "structure":
        out["required"] = raw.get("required", [])
        out["members"] = {
            name: {k: m[k] for k in ("shape", "location", "locationName") if k in m}
            for name, m in raw["members"].items()
        }
    elif raw["type"] == "list":
        out["member"] = raw["member"]["shape"]
    elif raw["type"] == "map":
        out["key"] = raw["key"]["shape"]
        out["value"] = raw["value"]["shape"]
    return out


def extract(service: str) -> dict[str, Any]:
    data = botocore.session.get_session().get_service_data(service)
    shapes: dict[str, Any] = {}
    operations: dict[str, Any] = {}

    def reach(name: str) -> None:
        if name in shapes:
            return
        shapes[name] = _shape(data["shapes"][name])
        for child in _children(shapes[name]):
            reach(child)

    for name in SCOPE[service]:
        op = data["operations"][name]
        operations[name] = {"method": op["http"]["method"], "uri": op["http"]["requestUri"]}
        if "input" in op:
            operations[name]["input"] = op["input"]["shape"]
            reach(op["input"]["shape"])
    return {
        "service": service,
        "apiVersion": data["metadata"]["apiVersion"],
        "operations": operations,
        "shapes": dict(sorted(shapes.items())),
    }


def _children(shape: dict[str, Any]) -> list[str]:
    if shape["type"] == "structure":
        return [m["shape"] for m in shape["members"].values()]
    if shape["type"] == "list":
        return [shape["member"]]
    if shape["type"] == "map":
        return [shape["key"], shape["value"]]
    return []


def render(service: str) -> str:
    return json.dumps(extract(service), indent=1, sort_keys=False) + "\n"


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for service in SCOPE:
        (OUT / f"{service}.json").write_text(render(service))
        print(f"wrote {OUT / f'{service}.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
