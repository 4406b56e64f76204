"""The one source of `now`: wall-clock epoch seconds, moved forward by the test clock when an operator asks
(IOTJOBS_TEST_CLOCK=on, `iotjobs/runtime/test_clock.py`). Deciders receive it; they never read it."""

from __future__ import annotations

import time
from collections.abc import Callable

_offset = 0.0
_listeners: list[Callable[[], None]] = []


def now() -> float:
    return time.time() + _offset


def offset() -> float:
    """Seconds the test clock has moved this process's clock forward (0 unless it is enabled)."""
    return _offset


def move_to(new_offset: float) -> None:
    """Set the test clock's offset; it only moves forward, so time never runs backwards for a decider."""
    global _offset
    if new_offset > _offset:
        _offset = new_offset
        for listener in list(_listeners):
            listener()


def on_change(listener: Callable[[], None]) -> Callable[[], None]:
    """Call `listener` whenever the clock jumps (timers waiting for a due time must look again); returns a
    function that removes it."""
    _listeners.append(listener)
    return lambda: _listeners.remove(listener) if listener in _listeners else None
