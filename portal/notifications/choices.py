"""Event names, delivery states, and the delivery policy shared by the service and the task.

This module imports nothing from the ORM's app registry, so ``workers.notifications`` can read
the retry policy when the Celery worker imports it.
"""

from django.db import models


class Event(models.TextChoices):
    """What webhooks can subscribe to; ``services.notify`` accepts exactly these."""

    RELEASE_REQUESTED = "release.requested", "Release requested"
    RELEASE_APPROVED = "release.approved", "Release approved"
    RELEASE_REJECTED = "release.rejected", "Release rejected"
    ROLLOUT_SUCCEEDED = "rollout.succeeded", "Rollout succeeded"
    ROLLOUT_ROLLED_BACK = "rollout.rolled_back", "Rollout rolled back"
    ROLLOUT_FAILED = "rollout.failed", "Rollout failed"
    ROLLOUT_PAUSED = "rollout.paused", "Rollout paused"
    ALERT_FIRING = "alert.firing", "Alert firing"
    ALERT_RESOLVED = "alert.resolved", "Alert resolved"


# Sent only by "test webhook", to one webhook; nobody subscribes to it.
PING = "ping"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


# Delivery policy. Attempt n (1-based) that fails transiently is followed by attempt n + 1
# after BACKOFF_BASE_SECONDS * 2 ** (n - 1) seconds (1, 2, 4, 8 minutes), at most
# MAX_ATTEMPTS attempts in all; the Celery task's retry_backoff uses the same numbers, so the
# retry arrives when the delivery is due.
MAX_ATTEMPTS = 5
BACKOFF_BASE_SECONDS = 60
BACKOFF_MAX_SECONDS = 15 * 60
REQUEST_TIMEOUT_SECONDS = 5
