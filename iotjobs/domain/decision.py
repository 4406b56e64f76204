"""What a decider returns: its reply, the events to append, and what must happen elsewhere."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Send:
    """A command for another aggregate, written in the same transaction as the events."""

    key: str
    command: Any
    forward_reply: bool = False


@dataclass(frozen=True)
class Context:
    """Everything a decider may know about the world besides state and command."""

    now: float
    seconds_per_minute: float = 60.0
    per_namespace_queues: bool = False
    """Opt-in: the plain device topics see only jobs without a namespace (AWS shares one queue per thing)."""
    max_concurrent_jobs: int = 0
    """Jobs that may roll out at once (the job-concurrency quota); 0: unlimited."""

    def minutes(self, m: float) -> float:
        return m * self.seconds_per_minute


@dataclass(frozen=True)
class Decision:
    reply: Any = None
    events: tuple[Any, ...] = ()
    sends: tuple[Send, ...] = ()
    effects: tuple[Any, ...] = field(default=())


@dataclass(frozen=True)
class Done:
    """The reply of an operation whose output has no members."""


@dataclass(frozen=True)
class Timer:
    """A command the runtime delivers to the same key once `due` has passed."""

    due: float
    command: Any
