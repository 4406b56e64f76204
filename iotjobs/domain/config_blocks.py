"""The configuration blocks jobs and job templates share, checked against the `iot` model's constraints
(aws-iot-jobs.md §5.1, §5.4, §9). Each check returns the block exactly as given, so it can be stored and
echoed; what a block means at run time is the job aggregate's business.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from iotjobs.domain import validation as v
from iotjobs.domain.errors import invalid

ABORT_FAILURE_TYPES = ("FAILED", "REJECTED", "TIMED_OUT", "ALL")
ABORT_ACTIONS = ("CANCEL",)
RETRY_FAILURE_TYPES = ("FAILED", "TIMED_OUT", "ALL")
MAX_RETRIES = 10
MAX_RETRY_CRITERIA = 2
MAX_ROLLOUT_RATE = 1000
MIN_PRESIGNED_EXPIRY, MAX_PRESIGNED_EXPIRY = 60, 3600
MIN_ROLE_ARN, MAX_ROLE_ARN = 20, 2048
MAX_CRON_CHARS = 256
MAX_WINDOW_MINUTES = 1430
MAX_PACKAGE_VERSIONS = 25
MAX_PACKAGE_ARN_CHARS = 1600
PACKAGE_VERSION_ARN = re.compile(r"arn:[!-~]+")


def _object(member: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(f"{member} must be an object")
    return value


def _list(member: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(f"{member} must be a list")
    return value


def _required(block: dict[str, Any], member: str, path: str) -> Any:
    if block.get(member) is None:
        raise invalid(f"{path}.{member} is required")
    return block[member]


def _int_between(member: str, value: Any, low: int, high: int | None = None) -> int:
    number = v.check_int(member, value)
    if number < low or (high is not None and number > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise invalid(f"{member} must be {bound}, got {number}")
    return number


def _number(member: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(f"{member} must be a number")
    return float(value)


def _enum(member: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise invalid(f"{member} must be one of {', '.join(allowed)}, got {value!r}")
    return str(value)


def check_presigned_url_config(value: Any, member: str = "presignedUrlConfig") -> dict[str, Any]:
    block = _object(member, value)
    role = block.get("roleArn")
    if role is not None and (not isinstance(role, str) or not MIN_ROLE_ARN <= len(role) <= MAX_ROLE_ARN):
        raise invalid(f"{member}.roleArn must be a string of {MIN_ROLE_ARN} to {MAX_ROLE_ARN} characters")
    if block.get("expiresInSec") is not None:
        _int_between(f"{member}.expiresInSec", block["expiresInSec"], MIN_PRESIGNED_EXPIRY, MAX_PRESIGNED_EXPIRY)
    return block


def presigned_url_expiry(config: dict[str, Any] | None) -> int | None:
    """presignedUrlConfig.expiresInSec of a job's configuration blocks, if it gives one."""
    block = (config or {}).get("presignedUrlConfig") or {}
    expires = block.get("expiresInSec")
    return expires if isinstance(expires, int) and not isinstance(expires, bool) else None


def check_rollout_config(value: Any, member: str = "jobExecutionsRolloutConfig") -> dict[str, Any]:
    block = _object(member, value)
    if block.get("maximumPerMinute") is not None:
        _int_between(f"{member}.maximumPerMinute", block["maximumPerMinute"], 1, MAX_ROLLOUT_RATE)
    if block.get("exponentialRate") is not None:
        path = f"{member}.exponentialRate"
        rate = _object(path, block["exponentialRate"])
        _int_between(f"{path}.baseRatePerMinute", _required(rate, "baseRatePerMinute", path), 1, MAX_ROLLOUT_RATE)
        factor = _number(f"{path}.incrementFactor", _required(rate, "incrementFactor", path))
        if not 1.1 <= factor <= 5 or round(factor, 1) != factor:
            raise invalid(f"{path}.incrementFactor must be 1.1 to 5.0 with one decimal place, got {factor}")
        criteria_path = f"{path}.rateIncreaseCriteria"
        criteria = _object(criteria_path, _required(rate, "rateIncreaseCriteria", path))
        given = [
            name for name in ("numberOfNotifiedThings", "numberOfSucceededThings") if criteria.get(name) is not None
        ]
        if len(given) != 1:
            raise invalid(f"{criteria_path} must set exactly one of numberOfNotifiedThings, numberOfSucceededThings")
        _int_between(f"{criteria_path}.{given[0]}", criteria[given[0]], 1)
    return block


def check_abort_config(value: Any, member: str = "abortConfig") -> dict[str, Any]:
    block = _object(member, value)
    criteria = _list(f"{member}.criteriaList", _required(block, "criteriaList", member))
    if not criteria:
        raise invalid(f"{member}.criteriaList must hold at least one criterion")
    for i, item in enumerate(criteria):
        path = f"{member}.criteriaList[{i}]"
        criterion = _object(path, item)
        _enum(f"{path}.failureType", _required(criterion, "failureType", path), ABORT_FAILURE_TYPES)
        _enum(f"{path}.action", _required(criterion, "action", path), ABORT_ACTIONS)
        threshold = _number(f"{path}.thresholdPercentage", _required(criterion, "thresholdPercentage", path))
        if not 0 <= threshold <= 100 or round(threshold, 2) != threshold:
            raise invalid(f"{path}.thresholdPercentage must be 0 to 100 with at most two decimals, got {threshold}")
        _int_between(f"{path}.minNumberOfExecutedThings", _required(criterion, "minNumberOfExecutedThings", path), 1)
    return block


def check_timeout_config(value: Any, member: str = "timeoutConfig") -> dict[str, Any]:
    block = _object(member, value)
    if block.get("inProgressTimeoutInMinutes") is not None:
        v.check_timeout_minutes(f"{member}.inProgressTimeoutInMinutes", block["inProgressTimeoutInMinutes"])
    return block


def check_retry_config(value: Any, member: str = "jobExecutionsRetryConfig") -> dict[str, Any]:
    block = _object(member, value)
    criteria = _list(f"{member}.criteriaList", _required(block, "criteriaList", member))
    if not 1 <= len(criteria) <= MAX_RETRY_CRITERIA:
        raise invalid(f"{member}.criteriaList must hold 1 to {MAX_RETRY_CRITERIA} criteria, got {len(criteria)}")
    seen: set[str] = set()
    total = 0
    for i, item in enumerate(criteria):
        path = f"{member}.criteriaList[{i}]"
        criterion = _object(path, item)
        failure = _enum(f"{path}.failureType", _required(criterion, "failureType", path), RETRY_FAILURE_TYPES)
        if failure in seen:
            raise invalid(f"{member}.criteriaList names failureType {failure} more than once")
        seen.add(failure)
        total += _int_between(f"{path}.numberOfRetries", _required(criterion, "numberOfRetries", path), 0, MAX_RETRIES)
    if total > MAX_RETRIES:
        raise invalid(f"{member} allows {total} retries in total; at most {MAX_RETRIES} are allowed")
    return block


def check_maintenance_windows(value: Any, member: str = "maintenanceWindows") -> list[Any]:
    windows = _list(member, value)
    for i, item in enumerate(windows):
        path = f"{member}[{i}]"
        window = _object(path, item)
        start = _required(window, "startTime", path)
        if not isinstance(start, str) or not 1 <= len(start) <= MAX_CRON_CHARS:
            raise invalid(f"{path}.startTime must be a cron expression of 1 to {MAX_CRON_CHARS} characters")
        _int_between(f"{path}.durationInMinutes", _required(window, "durationInMinutes", path), 1, MAX_WINDOW_MINUTES)
    return windows


def check_destination_package_versions(value: Any, member: str = "destinationPackageVersions") -> list[Any]:
    arns = _list(member, value)
    if len(arns) > MAX_PACKAGE_VERSIONS:
        raise invalid(f"{member} may list at most {MAX_PACKAGE_VERSIONS} package versions, got {len(arns)}")
    for i, arn in enumerate(arns):
        if not isinstance(arn, str) or not 1 <= len(arn) <= MAX_PACKAGE_ARN_CHARS:
            raise invalid(f"{member}[{i}] must be an ARN of 1 to {MAX_PACKAGE_ARN_CHARS} characters")
        if not PACKAGE_VERSION_ARN.fullmatch(arn):
            raise invalid(f"{member}[{i}] '{arn}' does not match pattern ^{PACKAGE_VERSION_ARN.pattern}$")
    return arns


def check_scheduling_config(value: Any, member: str = "schedulingConfig") -> dict[str, Any]:
    """Stored as given; the model's member rules are enforced before any handler runs."""
    block = _object(member, value)
    if block.get("maintenanceWindows") is not None:
        check_maintenance_windows(block["maintenanceWindows"], f"{member}.maintenanceWindows")
    return block


TEMPLATE_BLOCKS: dict[str, Callable[[Any, str], Any]] = {
    "presignedUrlConfig": check_presigned_url_config,
    "jobExecutionsRolloutConfig": check_rollout_config,
    "abortConfig": check_abort_config,
    "timeoutConfig": check_timeout_config,
    "jobExecutionsRetryConfig": check_retry_config,
    "maintenanceWindows": check_maintenance_windows,
    "destinationPackageVersions": check_destination_package_versions,
}
"""The configuration members of CreateJobTemplate (and DescribeJobTemplate), with their checks."""
