"""SigV4 signing as AWS clients do it (botocore's signer), for raw HTTP requests and for clients whose clock is off."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import botocore.auth
import botocore.compat
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"


@contextlib.contextmanager
def client_clock(offset: timedelta) -> Iterator[None]:
    """Within the block, every botocore signer in this process (boto3 clients and the CRT signer they use when
    awscrt is installed) reads a clock `offset` away from the true time: a client whose machine clock is wrong."""
    true_now = botocore.compat.get_current_datetime

    def skewed(*args: Any, **kwargs: Any) -> datetime:
        now: datetime = true_now(*args, **kwargs)
        return now + offset

    with contextlib.ExitStack() as patches:
        for module in _signer_modules():
            patches.enter_context(mock.patch.object(module, "get_current_datetime", skewed))
        yield


def _signer_modules() -> list[Any]:
    modules: list[Any] = [botocore.auth]
    with contextlib.suppress(ImportError):  # awscrt is optional
        modules.append(importlib.import_module("botocore.crt.auth"))
    return modules


def signed_headers(
    method: str,
    url: str,
    key: tuple[str, str],
    service: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    at: datetime | None = None,
) -> dict[str, str]:
    """The headers (given ones, Authorization and X-Amz-Date) of `method url` signed by botocore with `key`
    (access key id, secret) for `service`; at the true time, or `at` (naive UTC)."""
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    signer = SigV4Auth(Credentials(*key), service, REGION)
    if at is None:
        signer.add_auth(request)
    else:
        with mock.patch.object(botocore.auth, "get_current_datetime", lambda: at):
            signer.add_auth(request)
    return {name: value.decode() if isinstance(value, bytes) else value for name, value in request.headers.items()}
