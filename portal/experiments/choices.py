from django.db import models


class OutcomeKind(models.TextChoices):
    BINARY = "binary", "Binary (converted or not)"
    NUMERIC = "numeric", "Numeric (a value per unit)"


class DecisionChoice(models.TextChoices):
    PROMOTE = "promote", "Promote B"
    KEEP = "keep", "Keep A"
    EXTEND = "extend", "Extend the test"


class ExperimentStatus(models.TextChoices):
    """An A/B test's status, read from its rollout's (``services.status_of``)."""

    RUNNING = "running", "Running"
    PAUSED = "paused", "Paused"
    AWAITING_DECISION = "awaiting_decision", "Awaiting a decision"
    PROMOTED = "promoted", "Promoted B"
    KEPT = "kept", "Kept A"
    ROLLED_BACK = "rolled_back", "Rolled back"
    FAILED = "failed", "Failed"
