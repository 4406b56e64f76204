"""Unit-test setup.

Hypothesis imports `hypothesis.extra._patching` (and through it libcst) only while reporting a
failing example. libcst triggers a DeprecationWarning from mypy_extensions at import time, and
pyproject turns warnings into errors, so the report itself crashed as INTERNALERROR and hid the
falsifying example. Importing it here, once and with that warning silenced, keeps failures readable.
"""

from __future__ import annotations

import contextlib
import warnings

# libcst is optional; without it hypothesis simply skips writing the patch.
with warnings.catch_warnings(), contextlib.suppress(ImportError):
    warnings.simplefilter("ignore", DeprecationWarning)
    import hypothesis.extra._patching  # noqa: F401
