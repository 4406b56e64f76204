"""The configuration blocks of job templates: model constraints and the cross-field rules (aws-iot-jobs.md §5.4, §9).
Every check returns the block exactly as given, so it is stored and echoed unchanged."""

from __future__ import annotations

from typing import Any

import pytest

from iotjobs.domain import config_blocks as cb
from iotjobs.domain.errors import DomainError

VALID: list[tuple[str, Any]] = [
    ("presignedUrlConfig", {"roleArn": "arn:aws:iam::123456789012:role/r", "expiresInSec": 3600}),
    ("presignedUrlConfig", {}),
    ("jobExecutionsRolloutConfig", {"maximumPerMinute": 1000}),
    (
        "jobExecutionsRolloutConfig",
        {
            "exponentialRate": {
                "baseRatePerMinute": 1,
                "incrementFactor": 5,
                "rateIncreaseCriteria": {"numberOfNotifiedThings": 1},
            }
        },
    ),
    (
        "abortConfig",
        {
            "criteriaList": [
                {"failureType": "ALL", "action": "CANCEL", "thresholdPercentage": 33.33, "minNumberOfExecutedThings": 1}
            ]
        },
    ),
    ("timeoutConfig", {"inProgressTimeoutInMinutes": 10080}),
    ("timeoutConfig", {}),
    (
        "jobExecutionsRetryConfig",
        {
            "criteriaList": [
                {"failureType": "FAILED", "numberOfRetries": 5},
                {"failureType": "ALL", "numberOfRetries": 5},
            ]
        },
    ),
    ("maintenanceWindows", [{"startTime": "cron(0 0 * * ? *)", "durationInMinutes": 1430}]),
    ("maintenanceWindows", []),
    ("destinationPackageVersions", [f"arn:aws:iot:us-east-1:1:package/p/version/{i}" for i in range(25)]),
]


@pytest.mark.parametrize(("member", "block"), VALID)
def test_valid_blocks_come_back_as_given(member: str, block: Any) -> None:
    assert cb.TEMPLATE_BLOCKS[member](block, member) is block


def _retry(*criteria: tuple[str, int]) -> dict[str, Any]:
    return {"criteriaList": [{"failureType": f, "numberOfRetries": n} for f, n in criteria]}


def _abort(**changes: Any) -> dict[str, Any]:
    criterion = {"failureType": "FAILED", "action": "CANCEL", "thresholdPercentage": 10, "minNumberOfExecutedThings": 1}
    return {"criteriaList": [{**criterion, **changes}]}


def _rate(**changes: Any) -> dict[str, Any]:
    rate = {"baseRatePerMinute": 5, "incrementFactor": 2, "rateIncreaseCriteria": {"numberOfSucceededThings": 3}}
    return {"exponentialRate": {**rate, **changes}}


INVALID: list[tuple[str, Any, str]] = [
    ("presignedUrlConfig", {"roleArn": "short"}, "roleArn"),
    ("presignedUrlConfig", {"expiresInSec": 59}, "expiresInSec must be between 60 and 3600"),
    ("presignedUrlConfig", [], "must be an object"),
    ("jobExecutionsRolloutConfig", {"maximumPerMinute": 1001}, "maximumPerMinute"),
    ("jobExecutionsRolloutConfig", {"maximumPerMinute": True}, "must be an integer"),
    ("jobExecutionsRolloutConfig", _rate(incrementFactor=1.05), "incrementFactor"),
    ("jobExecutionsRolloutConfig", _rate(incrementFactor=1.25), "one decimal place"),
    ("jobExecutionsRolloutConfig", _rate(baseRatePerMinute=0), "baseRatePerMinute"),
    ("jobExecutionsRolloutConfig", _rate(rateIncreaseCriteria={}), "exactly one of"),
    (
        "jobExecutionsRolloutConfig",
        _rate(rateIncreaseCriteria={"numberOfSucceededThings": 1, "numberOfNotifiedThings": 1}),
        "exactly one of",
    ),
    ("jobExecutionsRolloutConfig", {"exponentialRate": {"incrementFactor": 2}}, "baseRatePerMinute is required"),
    ("abortConfig", {}, "criteriaList is required"),
    ("abortConfig", {"criteriaList": []}, "at least one"),
    ("abortConfig", _abort(failureType="SOMETIMES"), "failureType must be one of"),
    ("abortConfig", _abort(action="PAUSE"), "action must be one of CANCEL"),
    ("abortConfig", _abort(thresholdPercentage=100.5), "thresholdPercentage"),
    ("abortConfig", _abort(thresholdPercentage=10.125), "two decimals"),
    ("abortConfig", _abort(minNumberOfExecutedThings=0), "minNumberOfExecutedThings"),
    ("timeoutConfig", {"inProgressTimeoutInMinutes": 0}, "inProgressTimeoutInMinutes"),
    ("jobExecutionsRetryConfig", {"criteriaList": []}, "1 to 2 criteria"),
    ("jobExecutionsRetryConfig", _retry(("FAILED", 1), ("TIMED_OUT", 1), ("ALL", 1)), "1 to 2 criteria"),
    ("jobExecutionsRetryConfig", _retry(("REJECTED", 1)), "failureType must be one of"),
    ("jobExecutionsRetryConfig", _retry(("FAILED", 11)), "numberOfRetries"),
    ("jobExecutionsRetryConfig", _retry(("FAILED", 6), ("TIMED_OUT", 5)), "11 retries in total"),
    ("jobExecutionsRetryConfig", _retry(("FAILED", 1), ("FAILED", 1)), "more than once"),
    ("maintenanceWindows", [{"startTime": "", "durationInMinutes": 5}], "startTime"),
    ("maintenanceWindows", [{"startTime": "c" * 257, "durationInMinutes": 5}], "startTime"),
    ("maintenanceWindows", [{"startTime": "cron(x)"}], "durationInMinutes is required"),
    ("maintenanceWindows", {"startTime": "cron(x)"}, "must be a list"),
    ("destinationPackageVersions", ["arn:x"] * 26, "at most 25"),
    ("destinationPackageVersions", ["not-an-arn"], "does not match pattern"),
    ("destinationPackageVersions", ["arn:has space"], "does not match pattern"),
]


@pytest.mark.parametrize(("member", "block", "needle"), INVALID)
def test_invalid_blocks_are_invalid_requests_naming_the_member(member: str, block: Any, needle: str) -> None:
    with pytest.raises(DomainError) as caught:
        cb.TEMPLATE_BLOCKS[member](block, member)
    assert caught.value.kind == "InvalidRequest"
    assert needle in caught.value.message
    assert member in caught.value.message
