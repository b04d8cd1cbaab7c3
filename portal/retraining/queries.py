from portal.accounts.services import filter_visible
from portal.retraining.models import RetrainingRule, RetrainingTrigger


def rules_for(user):
    return (filter_visible(RetrainingRule.objects.all(), user, "model__project")
            .select_related("model__project", "environment", "created_by"))


def triggers_for(user):
    return (filter_visible(RetrainingTrigger.objects.all(), user, "model__project")
            .select_related("model__project", "environment", "serving_version", "alert")
            .prefetch_related("versions__version"))


def rules_of(model):
    return RetrainingRule.objects.filter(model=model).select_related("environment")


def triggers_of(model, limit: int = 20):
    return list(RetrainingTrigger.objects.filter(model=model)
                .select_related("alert", "serving_version", "environment")
                .prefetch_related("versions__version").order_by("-created_at", "-id")[:limit])
