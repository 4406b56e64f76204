"""Giving freed memory back to the operating system.

A burst (a release to 100,000 things, a restore) allocates far more than the state that stays; CPython
frees it, but glibc keeps the freed heap for reuse, so the process's RSS stays at the burst's peak.
`malloc_trim` returns it. Elsewhere than glibc there is nothing to do.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_libc_name = ctypes.util.find_library("c")
_trim = getattr(ctypes.CDLL(_libc_name), "malloc_trim", None) if _libc_name else None


def give_back() -> None:
    if _trim is not None:
        _trim(0)
