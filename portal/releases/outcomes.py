"""What became of an approved request: how its rollout ended, for the request's page (a
request stays "Approved" as a decision; what happened after is its rollout's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ops import rollout
from portal.audit.models import AuditEvent
from portal.releases.models import ApprovalRequest

_ENDED = {str(s) for s in rollout.ENDED}
_WORDS = {"succeeded": "Released", "rolled_back": "Rolled back",
          "kept_stable": "Stable kept", "failed": "Rollout failed"}


@dataclass(frozen=True)
class RolloutOutcome:
    status: str  # the rollout's status: succeeded, rolled_back, kept_stable or failed
    label: str  # what the request page's badge says, e.g. "Rolled back"
    at: datetime | None
    actor: str  # who ended it ("" for the rollout itself, e.g. a failed check)
    reason: str  # the rollout's words for it
    comment: str  # the person's reason, when a person ended it


def rollout_outcome(request: ApprovalRequest) -> RolloutOutcome | None:
    """How the request's rollout ended, or None (not started, or still running)."""
    deployment = getattr(request, "deployment", None)
    if deployment is None or deployment.status not in _ENDED:
        return None
    last = deployment.events.order_by("-pk").first()
    said = (AuditEvent.objects.filter(object_type="releases.deployment",
                                      object_id=str(deployment.pk),
                                      action__startswith="deployment.")
            .order_by("-id").values_list("changes", flat=True).first()) if last and last.actor \
        else None
    return RolloutOutcome(status=deployment.status, label=_WORDS[deployment.status],
                          at=deployment.finished_at or (last.created_at if last else None),
                          actor=last.actor if last else "",
                          reason=last.reason.split(" — ", 1)[0] if last else "",
                          comment=(said or {}).get("comment", ""))
