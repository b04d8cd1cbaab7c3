"""Errors of webhook delivery (importable without Django, for the task's ``autoretry_for``)."""

from ops.exceptions import TransientError


class DeliveryRetry(TransientError):
    """An attempt failed in a way that may pass (5xx, 429, no connection, timeout).

    The attempt is already recorded and the delivery scheduled for the next one; the task
    retries on this error only.
    """

    code = "delivery_retry"

    def __init__(self, detail: str, retry_in: float):
        super().__init__(detail)
        self.detail = detail
        self.retry_in = retry_in
