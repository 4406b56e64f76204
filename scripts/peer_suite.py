#!/usr/bin/env python3
"""Run MiniStack's published IoT Jobs test suite against a running iotjobs stack (a compatibility check, not CI).

    python scripts/peer_suite.py [--control-url http://127.0.0.1:8080] [--data-url http://127.0.0.1:8081]
                                 [--s3-url URL] [--version 1.5.33] [--junit FILE] [--test-timeout 120]
                                 [--total-timeout 1800] [--workdir DIR] [--show-output] [-- PYTEST_ARGS...]

What it does:

1. `pip download --no-deps --no-binary :all: ministack==VERSION` into a temporary directory (nothing is
   installed: MiniStack pins a botocore this project cannot use; only its test file is needed) and extracts
   `tests/test_iot_jobs_data.py` from the sdist. The sdist ships no tests/conftest.py; the fixtures the file
   uses (`iot_client`, `iot_jobs_data`, `iot_data_client`, `s3`, `iam`, `make_client`, `patch_endpoint_dns`)
   come from the adapter scripts/peer_suite/conftest.py, copied next to it.
2. Runs pytest on it in a subprocess with this interpreter (so this project's boto3), `-p no:cacheprovider`,
   every test phase bounded by --test-timeout (SIGALRM in the adapter; pytest-timeout is not needed), stack
   dumps by `-o faulthandler_timeout`, and the whole run bounded by --total-timeout.
3. Selection: the suite's MQTT section drives MiniStack's own MQTT-over-WebSocket broker through helpers in
   MiniStack's tests/test_iot_data.py, so every test that takes the `iot_data_client` fixture or is
   parametrized with transport="mqtt" is deselected (the adapter lists them). Everything else runs, including
   tests that poke MiniStack's in-process modules: they fail with ModuleNotFoundError and are reported as such.
4. Prints passed / failed / errors / skipped / deselected and each failing test with the first line of its
   failure; --junit FILE keeps pytest's JUnit XML. The temporary directory is removed unless --workdir is given.

The S3 documentSource and presigned-URL tests need an S3 (and IAM) endpoint: --s3-url, the same one the stack
reads S3 URLs from (IOTJOBS_S3_ENDPOINT; e.g. a moto server). Without it those tests are skipped.

Exit status: pytest's (0 all passed, 1 some failed), 2 when the suite could not be fetched or run.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

HERE = Path(__file__).resolve().parent
ADAPTER = HERE / "peer_suite" / "conftest.py"
SUITE = "tests/test_iot_jobs_data.py"
DEFAULT_VERSION = "1.5.33"


@dataclass
class Outcome:
    nodeid: str
    result: str  # passed | failed | error | skipped
    message: str = ""


def fail(message: str) -> int:
    print(f"peer_suite: {message}", file=sys.stderr)
    return 2


def reachable(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=3):
            return True
    except OSError:
        return False


def download_suite(version: str, into: Path) -> tuple[Path, str]:
    """The sdist's test file, written to `into`; returns its path and the sdist's sha256."""
    dist = into / "dist"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--no-binary",
        ":all:",
        f"ministack=={version}",
        "-d",
        str(dist),
    ]
    subprocess.run(cmd, check=True, timeout=600, stdin=subprocess.DEVNULL)
    sdists = sorted(dist.glob(f"ministack-{version}.tar.gz"))
    if not sdists:
        raise RuntimeError(f"pip left no ministack-{version}.tar.gz in {dist}")
    sdist = sdists[0]
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    with tarfile.open(sdist) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and m.name.endswith(f"/{SUITE}")), None)
        if member is None:
            raise RuntimeError(f"{sdist.name} has no {SUITE}")
        source = tar.extractfile(member)
        assert source is not None
        target = into / Path(SUITE).name
        target.write_bytes(source.read())
    shutil.rmtree(dist)
    return target, digest


def read_junit(path: Path) -> list[Outcome]:
    outcomes = []
    for case in ET.parse(path).getroot().iter("testcase"):
        module = (case.get("classname") or "").rsplit(".", 1)[-1]
        nodeid = f"{module}.py::{case.get('name')}"
        result, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                result = {"failure": "failed"}.get(tag, tag)
                text = found.get("message") or (found.text or "")
                message = next((line.strip() for line in text.splitlines() if line.strip()), "")
                break
        outcomes.append(Outcome(nodeid, result, message))
    return outcomes


def category(outcome: Outcome) -> str:
    if "No module named 'ministack" in outcome.message:
        return "imports MiniStack's in-process modules"
    return ""


def run(args: argparse.Namespace, work: Path) -> int:
    for name, url in (("--control-url", args.control_url), ("--data-url", args.data_url), ("--s3-url", args.s3_url)):
        if url and not reachable(url):
            return fail(f"nothing listens at {name} {url}; start the stack first (scripts/stack.sh up)")
    started = time.time()
    print(f"peer_suite: downloading ministack=={args.version} (sdist, not installed) ...", flush=True)
    try:
        suite, digest = download_suite(args.version, work)
    except (subprocess.SubprocessError, RuntimeError, tarfile.TarError) as exc:
        return fail(f"could not get MiniStack's suite: {exc}")
    shutil.copyfile(ADAPTER, work / "conftest.py")
    (work / "pytest.ini").write_text("[pytest]\n")  # rootdir here: none of this project's pytest settings
    junit = work / "junit.xml"
    deselected_list = work / "deselected.txt"
    env = {
        **os.environ,
        "PEER_SUITE_CONTROL_URL": args.control_url,
        "PEER_SUITE_DATA_URL": args.data_url,
        "PEER_SUITE_S3_URL": args.s3_url or "",
        "PEER_SUITE_TEST_TIMEOUT": str(args.test_timeout),
        "PEER_SUITE_DESELECTED": str(deselected_list),
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    for var in (
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_CONFIG_FILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "MINISTACK_ENDPOINT",
        "PYTEST_ADDOPTS",
    ):
        env.pop(var, None)
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        suite.name,
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",
        "-p",
        "no:hypothesispytest",
        "-o",
        f"faulthandler_timeout={args.test_timeout * 3 + 30:g}",  # stacks of a phase stuck past its alarm
        "-o",
        "junit_family=xunit1",
        "-o",
        "verbosity_assertions=2",  # whole assertion lines in the report
        f"--junitxml={junit}",
        "-rN",
        "-q",
        *args.pytest_args,
    ]
    print(f"peer_suite: {' '.join(cmd[1:])}  (in {work})", flush=True)
    log_path = work / "pytest.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd,
            cwd=work,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=None if args.show_output else log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=args.total_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return fail(f"the suite ran past --total-timeout {args.total_timeout} s and was killed")
    if not junit.exists():
        tail = log_path.read_text(errors="replace")[-3000:] if log_path.exists() else ""
        return fail(f"pytest exited {rc} without a report:\n{tail}")
    outcomes = read_junit(junit)
    if args.junit:
        shutil.copyfile(junit, args.junit)
    deselected = deselected_list.read_text().split() if deselected_list.exists() else []
    counts = Counter(o.result for o in outcomes)

    print()
    print(f"MiniStack {args.version} {SUITE} (sdist sha256 {digest[:16]}...) against iotjobs")
    print(f"  control {args.control_url}  device {args.data_url}  s3/iam {args.s3_url or '(none)'}")
    print(
        f"  {len(outcomes)} run, {len(deselected)} deselected (MQTT over MiniStack's WebSocket broker), "
        f"{time.time() - started:.0f} s"
    )
    print(
        f"  passed {counts['passed']}, failed {counts['failed']}, errors {counts['error']}, skipped {counts['skipped']}"
    )
    bad = [o for o in outcomes if o.result in ("failed", "error")]
    if bad:
        print("\nfailing tests (first line of each failure):")
        for o in bad:
            tag = f" [{category(o)}]" if category(o) else ""
            print(f"  {o.result.upper():6} {o.nodeid}{tag}\n         {o.message[:300]}")
    skipped = [o for o in outcomes if o.result == "skipped"]
    if skipped:
        print("\nskipped:")
        for o in skipped:
            print(f"  {o.nodeid}: {o.message}")
    print(f"\n{counts['passed']} passed, {counts['failed'] + counts['error']} failed")
    return rc if rc in (0, 1) else 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--control-url", default="http://127.0.0.1:8080", help="iotjobs control plane (iot)")
    parser.add_argument("--data-url", default="http://127.0.0.1:8081", help="iotjobs device plane (iot-jobs-data)")
    parser.add_argument("--s3-url", default="", help="S3 and IAM endpoint the stack reads S3 URLs from (optional)")
    parser.add_argument("--version", default=DEFAULT_VERSION, help="MiniStack release whose suite to run")
    parser.add_argument("--junit", type=Path, help="also write pytest's JUnit XML here")
    parser.add_argument("--test-timeout", type=float, default=120.0, help="bound on each test phase, seconds")
    parser.add_argument("--total-timeout", type=float, default=1800.0, help="bound on the whole run, seconds")
    parser.add_argument("--workdir", type=Path, help="work here and keep it (default: a temporary directory)")
    parser.add_argument("--show-output", action="store_true", help="show pytest's own output as it runs")
    parser.add_argument("pytest_args", nargs="*", help="after --: more pytest arguments (e.g. -k create)")
    args = parser.parse_args(argv)
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
        return run(args, args.workdir.resolve())
    with tempfile.TemporaryDirectory(prefix="peer-suite-") as tmp:
        return run(args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
