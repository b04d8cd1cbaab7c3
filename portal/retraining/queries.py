from functools import partial

from portal.accounts.services import filter_visible
from portal.audit.models import AuditEvent
from portal.prepared import Prepared
from portal.retraining.models import RetrainingRule, RetrainingTrigger

# The audit events of a trigger's attempts (``triggers.send`` records one per attempt).
ATTEMPT_OUTCOMES = ("retraining.retrying", "retraining.sent", "retraining.failed")


def rules_for(user):
    return (filter_visible(RetrainingRule.objects.all(), user, "model__project")
            .select_related("model__project", "environment", "created_by"))


def triggers_for(user):
    return (filter_visible(RetrainingTrigger.objects.all(), user, "model__project")
            .select_related("model__project", "environment", "serving_version", "alert",
                            "rule")
            .prefetch_related("versions__version__model__project"))


def attempts_of(trigger) -> list[dict]:
    """Each attempt to send ``trigger``, oldest first: when, its number, what came of it
    (retrying, sent, failed) and the error. The trigger keeps only the last error; its
    audit trail keeps every attempt's (on the index of an object's events)."""
    events = (AuditEvent.objects.filter(object_type=RetrainingTrigger._meta.label_lower,
                                        object_id=str(trigger.pk),
                                        action__in=ATTEMPT_OUTCOMES)
              .only("created_at", "action", "changes").order_by("id"))
    return [{"at": event.created_at, "attempt": event.changes.get("attempt"),
             "outcome": event.action.removeprefix("retraining."),
             "error": event.changes.get("error", "")} for event in events]


def rules_of(model) -> list:
    return _rules_of.rows(model.pk)


@Prepared
def _rules_of(model_id: int):
    return RetrainingRule.objects.filter(model_id=model_id).select_related("environment")


# What the model page's trigger table shows (``retraining/inc/model_rules.html``): no alert,
# environment nor serving version, whose columns Django would compile on every model page.
TRIGGER_ROW = ("created_at", "rule_name", "reason", "state", "last_error", "next_attempt_at",
               "attempts", "run_id", "run_url")


def triggers_of(model, limit: int = 20) -> list:
    return _triggers_of.rows(limit, model.pk)


@partial(Prepared, literal=1)
def _triggers_of(limit: int, model_id: int):
    # The linked versions with their model and project: each link's address needs both.
    return (RetrainingTrigger.objects.filter(model_id=model_id).only(*TRIGGER_ROW)
            .prefetch_related("versions__version__model__project")
            .order_by("-created_at", "-id")[:limit])
