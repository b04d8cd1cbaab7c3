"""boto3 at arm's length: the clients of one session, every botocore error translated.

``BackendUnavailable`` for what may pass (throttling, 5xx, connections, timeouts),
``BackendError`` for the rest (validation, permissions, quotas, missing credentials).
"""

from __future__ import annotations

import re
import threading

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from ops.backends.base import BackendError, BackendUnavailable
from ops.exceptions import OpsError

# Error codes AWS uses for "slow down" or "try again", whatever the HTTP status.
TRANSIENT_CODES = frozenset({
    "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "RequestThrottledException", "TooManyRequestsException", "RequestLimitExceeded",
    "SlowDown", "PriorRequestNotComplete", "RequestTimeout", "RequestTimeoutException",
    "InternalFailure", "InternalError", "InternalServerError", "ServiceUnavailable",
    "ServiceUnavailableException", "EC2ThrottledException", "BandwidthLimitExceeded",
})

# Settings that would be credentials: they come from the process environment (the usual
# boto3 chain), never from an environment's settings.
CREDENTIAL_SETTINGS = frozenset({
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "access_key",
    "secret_key", "session_token", "profile", "profile_name", "credentials",
})


class AwsClients:
    """The SageMaker client (built at once) and the S3 and other clients (built on first
    use) of one boto3 session, aimed at ``endpoint_url`` when given (an emulator)."""

    def __init__(self, region: str | None, endpoint_url: str | None, max_attempts: int = 3,
                 connect_timeout: float = 5.0, read_timeout: float = 30.0):
        self.endpoint_url = endpoint_url
        # Few retries: the rollout worker retries a BackendUnavailable itself, with a bound.
        self._config = Config(retries={"max_attempts": int(max_attempts), "mode": "standard"},
                              connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._s3_client = None
        self._lock = threading.Lock()
        try:
            self._session = boto3.session.Session(region_name=region)
            self.sagemaker = self._session.client("sagemaker", endpoint_url=endpoint_url,
                                                  config=self._config)
        except (BotoCoreError, ValueError) as e:
            raise BackendError(f"cannot build a SageMaker client: {e}") from e

    @property
    def s3(self):
        """The S3 client, built on first use (~0.1 s): observing never needs it."""
        with self._lock:  # a boto3 session must not build two clients at once
            if self._s3_client is None:
                # An emulator on an IP address or localhost has no per-bucket host names.
                config = self._config.merge(Config(s3={"addressing_style": "path"})) \
                    if self.endpoint_url else self._config
                try:
                    self._s3_client = self._session.client(
                        "s3", endpoint_url=self.endpoint_url, config=config)
                except (BotoCoreError, ValueError) as e:
                    raise BackendError(f"cannot build an S3 client: {e}") from e
            return self._s3_client

    def client(self, service: str):
        """A new client of ``service`` (CloudWatch, the SageMaker runtime)."""
        try:
            with self._lock:  # a boto3 session must not build two clients at once
                return self._session.client(service, endpoint_url=self.endpoint_url,
                                            config=self._config)
        except (BotoCoreError, ValueError) as e:
            raise BackendError(f"cannot build a {service} client: {e}") from e

    def call(self, client, operation: str, missing_ok: bool = False, **kwargs):
        """Call ``operation``; botocore errors become ``BackendError`` or
        ``BackendUnavailable``. With ``missing_ok`` a "not found" answer returns None."""
        try:
            return getattr(client, operation)(**kwargs)
        except ClientError as e:
            if missing_ok and not_found(e):
                return None
            raise translate(e, operation) from e
        except BotoCoreError as e:
            raise translate(e, operation) from e

    def pages(self, client, operation: str, key: str, **kwargs):
        try:
            for page in client.get_paginator(operation).paginate(**kwargs):
                yield page.get(key) or []
        except ClientError as e:
            if not_found(e):
                return  # no bucket, nothing to list
            raise translate(e, operation) from e
        except BotoCoreError as e:
            raise translate(e, operation) from e

    def list(self, operation: str, key: str, **kwargs) -> list[dict]:
        return [item for page in self.pages(self.sagemaker, operation, key, **kwargs)
                for item in page]

    def lacks_operation(self, error: ClientError) -> bool:
        """moto answers an unimplemented operation with an HTML 500; AWS never sends HTML,
        and without an ``endpoint_url`` we are talking to AWS."""
        if self.endpoint_url is None:
            return False
        response = error.response or {}
        meta = response.get("ResponseMetadata", {})
        code = str(response.get("Error", {}).get("Code", ""))
        content_type = str(meta.get("HTTPHeaders", {}).get("content-type", ""))
        return meta.get("HTTPStatusCode") in (500, 501) and (
            code.startswith("NotImplemented") or "text/html" in content_type)


def not_found(error: ClientError) -> bool:
    """SageMaker says "not found" as a ValidationException reading "Could not find ..."."""
    err = (error.response or {}).get("Error", {})
    code, message = str(err.get("Code", "")), str(err.get("Message", ""))
    status = (error.response or {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in ("ResourceNotFound", "ResourceNotFoundException", "NoSuchKey", "NoSuchBucket",
                "NotFound", "404"):
        return True
    return status == 400 and code.startswith("Validation") \
        and message.lower().startswith("could not find")


def translate(error: Exception, operation: str) -> OpsError:
    """A botocore error as ours: throttling, 5xx, connections and timeouts may pass; the
    rest (validation, permissions, quotas, missing credentials) will not."""
    if isinstance(error, ClientError):
        response = error.response or {}
        err = response.get("Error", {})
        code = str(err.get("Code", ""))
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        message = re.sub(r"<[^>]+>|\s+", " ", str(err.get("Message", ""))).strip()[:300]
        text = f"SageMaker backend: {operation} failed: {code or status} {message}".rstrip()
        if code in TRANSIENT_CODES or status == 429 or status >= 500:
            return BackendUnavailable(text)
        return BackendError(text)
    if isinstance(error, (BotoConnectionError, HTTPClientError)):
        return BackendUnavailable(f"SageMaker backend: {operation} could not reach the API: "
                                  f"{error}")
    return BackendError(f"SageMaker backend: {operation} failed: {error}")
