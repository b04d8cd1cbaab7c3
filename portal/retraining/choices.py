"""Conditions, trigger states and the sending policy shared by the service and the task.

Importable without the app registry, so ``workers.retraining`` can read the retry policy.
"""

from django.db import models

from ops import retraining


class Condition(models.TextChoices):
    DRIFT = "drift", "Critical drift on the endpoint for a while"
    ACCURACY = "accuracy", "Measured accuracy (feedback) below a threshold"


class TriggerState(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


def kind_choices() -> list[tuple[str, str]]:
    """Target kinds, from ``ops.retraining.REGISTRY`` (a new kind needs no migration)."""
    return retraining.choices()


# The alerts that count as critical drift (ops/prometheus.py writes them).
DRIFT_ALERTS = ("ModelgateFeatureDriftCritical", "ModelgateDatasetDrift")
# The rule name of a project's own webhook (every other target is the operator's).
WEBHOOK = "webhook"

# Sending policy: attempt n (1-based) failing on an unreachable target is followed by
# attempt n + 1 after BACKOFF_BASE_SECONDS * 2 ** (n - 1) seconds (30 s, 1, 2, 4, 8 min), at
# most MAX_ATTEMPTS in all; the task's retry_backoff uses the same numbers.
MAX_ATTEMPTS = 6
BACKOFF_BASE_SECONDS = 30
BACKOFF_MAX_SECONDS = 15 * 60
