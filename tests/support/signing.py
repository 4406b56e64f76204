"""SigV4 signing as AWS clients do it (botocore's signer), for raw HTTP requests and for clients whose clock is off."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import datetime, timedelta
from unittest import mock

import botocore.auth
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

REGION = "us-east-1"


@contextlib.contextmanager
def client_clock(offset: timedelta) -> Iterator[None]:
    """Within the block, every botocore signer in this process (boto3 clients included) reads a clock `offset`
    away from the true time: a client on a machine whose clock is wrong."""
    true_now = botocore.auth.get_current_datetime
    with mock.patch.object(botocore.auth, "get_current_datetime", lambda: true_now() + offset):
        yield


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
