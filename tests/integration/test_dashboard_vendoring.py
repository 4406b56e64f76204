"""The dashboard's vendored front-end files are exactly what `npm ci` installs from package-lock.json: the
script that vendors them, run in check mode, fetches the pinned tarballs (npm verifies their integrity) and
compares every file byte for byte."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_static_vendor_is_what_npm_ci_installs() -> None:
    assert shutil.which("npm"), "npm is needed to check the dashboard's vendored files (scripts/test.sh installs it)"
    checked = subprocess.run(
        [str(ROOT / "scripts" / "vendor-dashboard.sh"), "--check"], capture_output=True, text=True, timeout=300
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "exactly what npm ci gives" in checked.stdout
