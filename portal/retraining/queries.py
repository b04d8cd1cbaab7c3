from portal.accounts.services import filter_visible
from portal.retraining.models import RetrainingRule, RetrainingTrigger


def rules_for(user):
    return (filter_visible(RetrainingRule.objects.all(), user, "model__project")
            .select_related("model__project", "environment", "created_by"))


def triggers_for(user):
    return (filter_visible(RetrainingTrigger.objects.all(), user, "model__project")
            .select_related("model__project", "environment", "serving_version", "alert")
            .prefetch_related("versions__version__model__project"))


def rules_of(model):
    return RetrainingRule.objects.filter(model=model).select_related("environment")


# What the model page's trigger table shows (``retraining/inc/model_rules.html``): no alert,
# environment nor serving version, whose columns Django would compile on every model page.
TRIGGER_ROW = ("created_at", "rule_name", "reason", "state", "last_error", "next_attempt_at",
               "attempts", "run_id", "run_url")


def triggers_of(model, limit: int = 20):
    # The linked versions with their model and project: each link's address needs both.
    return list(RetrainingTrigger.objects.filter(model=model).only(*TRIGGER_ROW)
                .prefetch_related("versions__version__model__project")
                .order_by("-created_at", "-id")[:limit])
