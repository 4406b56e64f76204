"""Domain rejections, named by the AWS error they become on the wire."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ErrorKind(StrEnum):
    INVALID_REQUEST = "InvalidRequest"
    INVALID_JSON = "InvalidJson"
    RESOURCE_NOT_FOUND = "ResourceNotFound"
    RESOURCE_ALREADY_EXISTS = "ResourceAlreadyExists"
    VERSION_CONFLICT = "VersionConflict"
    VERSION_MISMATCH = "VersionMismatch"
    INVALID_STATE_TRANSITION = "InvalidStateTransition"
    TERMINAL_STATE = "TerminalState"
    LIMIT_EXCEEDED = "LimitExceeded"
    CONFLICT = "Conflict"
    THROTTLED = "Throttled"
    INTERNAL = "Internal"
    INVALID_TOPIC = "InvalidTopic"


@dataclass(frozen=True)
class Rejection:
    """A command the decider refused; `detail` carries modeled extras such as executionState."""

    kind: str
    message: str
    detail: dict[str, Any] = field(default_factory=dict)


class DomainError(Exception):
    """Raised by validation helpers; deciders turn it into a Rejection reply."""

    def __init__(self, kind: ErrorKind, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.detail = detail or {}

    def rejection(self) -> Rejection:
        return Rejection(self.kind.value, self.message, dict(self.detail))


def invalid(message: str) -> DomainError:
    return DomainError(ErrorKind.INVALID_REQUEST, message)


def not_found(message: str) -> DomainError:
    return DomainError(ErrorKind.RESOURCE_NOT_FOUND, message)


def check_version(expected: int | None, version: int, what: str) -> None:
    """An `expectedVersion` given with a registry change must be the resource's current version."""
    if expected is not None and expected != version:
        raise DomainError(
            ErrorKind.VERSION_CONFLICT,
            f"expectedVersion {expected} does not match the current version {version} of {what}",
        )
