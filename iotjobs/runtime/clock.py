"""The one source of `now`: wall-clock epoch seconds. Deciders receive it; they never read it."""

from __future__ import annotations

import time


def now() -> float:
    return time.time()
