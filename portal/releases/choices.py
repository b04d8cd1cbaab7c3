from django.db import models


class BackendKind(models.TextChoices):
    LOCAL = "local", "This machine (model-server processes)"
    KUBERNETES = "kubernetes", "Kubernetes"
    SAGEMAKER = "sagemaker", "Amazon SageMaker"


class Strategy(models.TextChoices):
    DIRECT = "direct", "Direct (all traffic at once)"
    CANARY = "canary", "Canary (stepped traffic)"
    AB = "ab", "A/B split"
    BLUEGREEN = "bluegreen", "Blue/green"
    SHADOW = "shadow", "Shadow"


class RequestStatus(models.TextChoices):
    OPEN = "open", "Awaiting review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
