from django.db import models

from ops import backends, rollout

# Backend kinds and strategies are defined once, in ops (``ops.backends.REGISTRY``,
# ``ops.rollout.Strategy``). Model fields take the callables below as their choices, so a
# new backend or strategy changes no migration; the enums (``BackendKind.LOCAL``,
# ``Strategy.CANARY``, ``.values``, ``.choices``) are built from the same lists for forms,
# serializers (and so the API schema's enums) and code.


def backend_choices() -> list[tuple[str, str]]:
    """``(kind, label)`` of every registered backend (``Environment.backend``)."""
    return backends.choices()


def strategy_choices() -> list[tuple[str, str]]:
    """``(value, label)`` of every rollout strategy (``strategy`` fields)."""
    return [(strategy.value, strategy.label) for strategy in rollout.Strategy]


BackendKind = models.TextChoices(
    "BackendKind", [(kind.upper(), (kind, label)) for kind, label in backend_choices()],
    module=__name__)

Strategy = models.TextChoices(
    "Strategy", [(s.name, (s.value, s.label)) for s in rollout.Strategy], module=__name__)


class RequestStatus(models.TextChoices):
    OPEN = "open", "Awaiting review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"
    CANCELLED = "cancelled", "Cancelled"


class Decision(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


# A rollout's status and an analysis's verdict, as ops says them (``ops.rollout``): the API
# schema's enums (``Deployment.status``, ``DeploymentEvent.verdict``).
DeploymentStatus = models.TextChoices(
    "DeploymentStatus", [(s.name, (s.value, s.value.replace("_", " "))) for s in rollout.Status],
    module=__name__)

Verdict = models.TextChoices(
    "Verdict", [(v.name, (v.value, v.value)) for v in rollout.Verdict], module=__name__)
