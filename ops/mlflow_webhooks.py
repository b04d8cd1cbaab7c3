"""MLflow's registry webhooks (MLflow 3.3+): the signature MLflow sends and its check
(decision 66), apart from the tracking server's REST API (``ops.mlflow``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from ops.exceptions import DetailedError, PermanentError

# MLflow's webhook headers (mlflow/webhooks/constants.py).
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
WEBHOOK_TOLERANCE_SECONDS = 300


class WebhookRefused(DetailedError, PermanentError):
    code = "bad_signature"


def webhook_signature(secret: str, delivery_id: str, timestamp: str, body: bytes) -> str:
    """What MLflow sends in ``X-MLflow-Signature``: ``v1,`` and the base64 HMAC-SHA256 of
    ``<delivery id>.<timestamp>.<body>`` (mlflow/webhooks/delivery.py)."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret.encode(), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify_webhook(secret: str, headers, body: bytes, *, now: float | None = None) -> dict:
    """The payload of an MLflow webhook delivery whose signature ``secret`` made and whose
    timestamp is within five minutes; ``WebhookRefused`` otherwise."""
    delivery = headers.get(DELIVERY_HEADER) or ""
    stamp = headers.get(TIMESTAMP_HEADER) or ""
    given = headers.get(SIGNATURE_HEADER) or ""
    if not (secret and delivery and stamp and given):
        raise WebhookRefused(f"an MLflow webhook carries {SIGNATURE_HEADER}, "
                             f"{TIMESTAMP_HEADER} and {DELIVERY_HEADER}")
    try:
        age = abs((time.time() if now is None else now) - int(stamp))
    except ValueError as e:
        raise WebhookRefused(f"{TIMESTAMP_HEADER} is not a Unix time") from e
    if age > WEBHOOK_TOLERANCE_SECONDS:
        raise WebhookRefused(f"the delivery is {age:.0f} s old (at most "
                             f"{WEBHOOK_TOLERANCE_SECONDS}): a replay or a wrong clock",
                             code="stale_webhook")
    expected = webhook_signature(secret, delivery, stamp, body)
    if not any(hmac.compare_digest(expected.encode(),
                                   part.strip().encode("utf-8", "surrogateescape"))
               for part in given.split(" ")):
        raise WebhookRefused("the signature does not match this follow's secret")
    try:
        payload = json.loads(body)
    except ValueError as e:
        raise WebhookRefused("the body is not JSON", code="bad_payload") from e
    return payload if isinstance(payload, dict) else {}
