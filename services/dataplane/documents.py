"""Job documents as devices receive them: presigned-URL placeholders signed at each delivery (ADR 0014).

Deciders keep and hand out documents exactly as CreateJob stored them; this is the I/O shell that, just
before a reply or a notification leaves the dataplane (MQTT or HTTP), replaces every
`${aws:iot:s3-presigned-url:<S3 object URL>}` with a presigned GET URL for the configured S3-compatible
endpoint (IOTJOBS_S3_ENDPOINT), signed with botocore's SigV4 query signer and valid for the job's
`presignedUrlConfig.expiresInSec` (3600 when the job gives none). The control plane never comes here:
DescribeJob and GetJobDocument show the placeholders.

Without an endpoint and credentials, placeholders are delivered unchanged and a warning says so once.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from botocore.config import Config
from botocore.session import get_session

from iotjobs.domain import thing
from iotjobs.domain.documents import S3Object, has_presigned_urls, substitute_presigned_urls
from iotjobs.runtime import clock, logs
from iotjobs.runtime.settings import Settings

log = logs.get("iotjobs.documents")

DEFAULT_EXPIRES_IN_SEC = 3600
"""presignedUrlConfig.expiresInSec when a job does not give it (aws-iot-jobs.md §6.11)."""
CACHE_LIMIT = 4096
WARN_LIMIT = 256


class DeviceDocuments:
    """Replaces presigned-URL placeholders in what the dataplane is about to send to a device."""

    def __init__(self, settings: Settings) -> None:
        self._client: Any = None
        self.configured = bool(settings.s3_endpoint and settings.s3_access_key_id and settings.s3_secret_access_key)
        if self.configured:
            self._client = get_session().create_client(
                "s3",
                endpoint_url=settings.s3_endpoint,
                region_name=settings.s3_region or settings.region,
                aws_access_key_id=settings.s3_access_key_id,
                aws_secret_access_key=settings.s3_secret_access_key,
                config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
            )
        self._warned_unconfigured = False
        self._warned_urls: set[str] = set()
        # Signed URLs of the current second: one signed a moment later in the same second would be the same
        # URL (X-Amz-Date has a resolution of one second), so a release to a fleet signs each object once.
        self._signed: dict[tuple[str, str, int], tuple[int, str]] = {}

    # --- what leaves the dataplane -------------------------------------------------------------

    def for_device(self, message: Any) -> Any:
        """A reply or notification with its execution's document as the device gets it; other messages as
        they are."""
        match message:
            case thing.ExecutionReply(execution=dict() as execution) if message.include_document:
                return replace(message, execution=self.execution(execution))
            case thing.UpdateReply(execution=dict() as execution) if message.include_document:
                return replace(message, execution=self.execution(execution))
            case thing.NotifyNext(execution=dict() as execution):
                return replace(message, execution=self.execution(execution))
        return message

    def execution(self, execution: dict[str, Any]) -> dict[str, Any]:
        """The execution (a decider's view of it) with its document rendered for delivery."""
        document = execution["document"]
        if not has_presigned_urls(document):
            return execution
        expires = execution.get("presigned_url_expires_in_sec") or DEFAULT_EXPIRES_IN_SEC
        context = {"job_id": execution["job_id"], "thing_name": execution["thing_name"]}
        return {**execution, "document": self.render(document, expires, context)}

    def render(self, document: str, expires_in_sec: int, context: dict[str, Any] | None = None) -> str:
        """The document with each presigned-URL placeholder signed for `expires_in_sec` seconds."""
        if not has_presigned_urls(document):
            return document
        if not self.configured:
            if not self._warned_unconfigured:
                self._warned_unconfigured = True
                log.warning(
                    "a job document has presigned-URL placeholders but no S3 signer is configured "
                    "(IOTJOBS_S3_ENDPOINT, IOTJOBS_S3_ACCESS_KEY_ID, IOTJOBS_S3_SECRET_ACCESS_KEY): devices get "
                    "the placeholders unchanged",
                    **(context or {}),
                )
            return document

        def presign(url: str, target: S3Object | None) -> str | None:
            if target is None:
                self._warn_unsigned(url, context)
                return None
            signed = self._presign(target, expires_in_sec)
            log.debug("presigned URL delivered", bucket=target.bucket, key=target.key, **(context or {}))
            return signed

        return substitute_presigned_urls(document, presign)

    # --- signing --------------------------------------------------------------------------------

    def _presign(self, target: S3Object, expires_in_sec: int) -> str:
        second = int(clock.now())
        cache_key = (target.bucket, target.key, expires_in_sec)
        cached = self._signed.get(cache_key)
        if cached is not None and cached[0] == second:
            return cached[1]
        url: str = self._client.generate_presigned_url(
            "get_object", Params={"Bucket": target.bucket, "Key": target.key}, ExpiresIn=expires_in_sec
        )
        if len(self._signed) >= CACHE_LIMIT:
            self._signed.clear()
        self._signed[cache_key] = (second, url)
        return url

    def _warn_unsigned(self, url: str, context: dict[str, Any] | None) -> None:
        if url in self._warned_urls or len(self._warned_urls) >= WARN_LIMIT:
            return
        self._warned_urls.add(url)
        log.warning(
            "a presigned-URL placeholder names no S3 object URL (https://s3.<region>.amazonaws.com/<bucket>/<key> "
            "or https://<bucket>.s3.<region>.amazonaws.com/<key>); devices get it unchanged",
            url=url,
            **(context or {}),
        )
