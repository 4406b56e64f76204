"""The service models iotjobs enforces: current with botocore's, and applied rule by rule."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest

from iotjobs.domain.errors import DomainError
from iotjobs.wire.model import MODELS, ServiceModel, from_query

REPO = Path(__file__).resolve().parents[2]


def _extractor() -> Any:
    spec = importlib.util.spec_from_file_location("extract_models", REPO / "scripts" / "extract_models.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("service", ["iot", "iot-jobs-data"])
def test_committed_models_match_the_installed_botocore_models(service: str) -> None:
    assert (MODELS / f"{service}.json").read_text() == _extractor().render(service), (
        "run: python scripts/extract_models.py"
    )


IOT = ServiceModel.load("iot")


def refused(operation: str, params: dict[str, Any]) -> str:
    with pytest.raises(DomainError) as caught:
        IOT.validate_input(operation, params)
    assert caught.value.kind == "InvalidRequest"
    return caught.value.message


def test_a_valid_request_passes() -> None:
    IOT.validate_input(
        "CreateJob",
        {
            "jobId": "j-1_a",
            "targets": ["arn:aws:iot:us-east-1:123456789012:thing/t1"],
            "document": "{}",
            "description": "déploiement ✓",
            "jobExecutionsRolloutConfig": {"maximumPerMinute": 10},
            "tags": [{"Key": "team", "Value": ""}],
        },
    )


@pytest.mark.parametrize(
    ("operation", "params", "needle"),
    [
        ("CreateJob", {"jobId": "j1"}, "targets is required"),
        ("CreateJob", {"jobId": "x" * 65, "targets": ["a"]}, "jobId must have at most 64 characters, got 65"),
        ("CreateJob", {"jobId": "a b", "targets": ["a"]}, "jobId 'a b' does not match pattern [a-zA-Z0-9_-]+"),
        ("CreateJob", {"jobId": "j", "targets": []}, "targets must have at least 1 entries"),
        ("CreateJob", {"jobId": "j", "targets": [3]}, "targets[0] must be a string"),
        ("CreateJob", {"jobId": "j", "targets": ["a"], "description": "bell\u0007"}, "description 'bell\u0007'"),
        ("CreateJob", {"jobId": "j", "targets": ["a"], "targetSelection": "SOMETIMES"}, "must be one of CONTINUOUS"),
        (
            "CreateJob",
            {
                "jobId": "j",
                "targets": ["a"],
                "jobExecutionsRolloutConfig": {"exponentialRate": {"baseRatePerMinute": 5}},
            },
            "jobExecutionsRolloutConfig.exponentialRate.incrementFactor is required",
        ),
        (
            "CreateJob",
            {"jobId": "j", "targets": ["a"], "presignedUrlConfig": {"expiresInSec": 59}},
            "presignedUrlConfig.expiresInSec must be at least 60, got 59",
        ),
        (
            "CreateJob",
            {"jobId": "j", "targets": ["a"], "jobExecutionsRolloutConfig": {"maximumPerMinute": True}},
            "maximumPerMinute must be an integer",
        ),
        ("CreateJob", {"jobId": "j", "targets": ["a"], "tags": [{"Key": "a\u0000"}]}, "tags[0].Key"),
        (
            "CreateJob",
            {"jobId": "j", "targets": ["a"], "documentParameters": {"bad key": "v"}},
            "documentParameters key",
        ),
        ("CancelJob", {"jobId": "j", "reasonCode": "ÉTÉ"}, "reasonCode 'ÉTÉ' does not match"),
        ("CreateThingGroup", {"thingGroupName": "g", "thingGroupProperties": {"thingGroupDescription": "é"}}, "é"),
        ("ListJobs", {"maxResults": 251}, "maxResults must be at most 250, got 251"),
        (
            "DescribeJobExecution",
            {"jobId": "j", "thingName": "t", "executionNumber": 2**63},
            "executionNumber must be a 64-bit integer, from -9223372036854775808 to 9223372036854775807",
        ),
        (
            "CreateJob",
            {"jobId": "j", "targets": ["a"], "timeoutConfig": {"inProgressTimeoutInMinutes": 2**63}},
            "inProgressTimeoutInMinutes must be a 64-bit integer",
        ),
        ("ListJobs", {"maxResults": 2**31}, "maxResults must be a 32-bit integer"),
    ],
)
def test_each_rule_names_the_member_and_the_rule(operation: str, params: dict[str, Any], needle: str) -> None:
    assert needle in refused(operation, params)


def test_java_posix_classes_are_ascii_only() -> None:
    IOT.validate_input("CancelJob", {"jobId": "j", "reasonCode": "OPERATOR_1"})
    IOT.validate_input(
        "CreateThingGroup", {"thingGroupName": "g", "thingGroupProperties": {"thingGroupDescription": "a ~!"}}
    )


def test_query_values_take_their_declared_types() -> None:
    shapes = IOT.shapes
    assert from_query(shapes["LaserMaxResults"], ["25"], "maxResults") == 25
    assert from_query(shapes["ForceFlag"], ["true"], "force") is True
    with pytest.raises(DomainError, match="maxResults must be an integer"):
        from_query(shapes["LaserMaxResults"], ["many"], "maxResults")
    with pytest.raises(DomainError, match="force must be true or false"):
        from_query(shapes["ForceFlag"], ["yes"], "force")
