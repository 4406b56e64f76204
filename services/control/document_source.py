"""CreateJob's `documentSource`: the job document read once, at creation, from a URL.

Any http(s) URL the service can reach works. S3 object URLs (`https://<bucket>.s3[.<region>].amazonaws.com/
<key>`, `https://s3[.<region>].amazonaws.com/<bucket>/<key>`) are read from the S3-compatible endpoint in
`IOTJOBS_S3_ENDPOINT` when one is configured, path-style and unsigned (a public-read bucket).
"""

from __future__ import annotations

from urllib.parse import urlsplit

import aiohttp

from iotjobs.domain import validation as v
from iotjobs.domain.documents import s3_object
from iotjobs.domain.errors import invalid


def resolve(url: str, s3_endpoint: str) -> str:
    """The URL to fetch: S3 object URLs are redirected to the configured S3-compatible endpoint."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise invalid(f"documentSource '{url}' is not an http(s) URL")
    if not s3_endpoint:
        return url
    target = s3_object(url)
    if target is None:
        return url
    return f"{s3_endpoint.rstrip('/')}/{target.bucket}{target.path}"


async def _read_at_most(body: aiohttp.StreamReader, limit: int) -> bytes:
    """The body up to `limit` bytes: one read returns whatever has arrived, which may be a part of it."""
    raw = bytearray()
    while len(raw) < limit:
        chunk = await body.read(limit - len(raw))
        if not chunk:
            break
        raw += chunk
    return bytes(raw)


async def fetch(url: str, s3_endpoint: str, timeout: float) -> str:
    """The document at `url`, checked like an inline document; InvalidRequest naming the reason otherwise."""
    target = resolve(url, s3_endpoint)
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as http,
            http.get(target) as response,
        ):
            if response.status != 200:
                raise invalid(f"documentSource {url} could not be read: HTTP {response.status}")
            raw = await _read_at_most(response.content, v.MAX_DOCUMENT_CHARS * 4 + 1)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise invalid(f"documentSource {url} could not be read: {exc.__class__.__name__} {exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid(f"documentSource {url} is not UTF-8 text") from None
    return v.check_document(text, f"the document at documentSource {url}")
