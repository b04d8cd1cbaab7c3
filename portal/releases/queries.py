from django.db.models import Prefetch

from portal.accounts.services import filter_visible
from portal.releases.models import ApprovalRequest, Deployment, Environment, Review


def environments_for(user):
    return filter_visible(Environment.objects.all(), user, "project").select_related(
        "project", "archived_by")


def requests_for(user):
    return (filter_visible(ApprovalRequest.objects.all(), user, "environment__project")
            .select_related("version__model__project", "environment__project", "requested_by",
                            "champion")
            .prefetch_related(Prefetch("reviews",
                                       queryset=Review.objects.select_related("reviewer"))))


def deployments_for(user):
    return (filter_visible(Deployment.objects.all(), user, "environment__project")
            .select_related("environment__project", "model", "candidate", "stable"))


# What a row of the rollouts page shows (with what its links read): not the spec and state,
# nor the versions' schemas and metrics.
ROLLOUT_ROW = ("status", "strategy", "created_at", "finished_at", "updated_at",
               "environment__name", "environment__project__slug",
               "environment__project__name", "model__name", "candidate__number",
               "candidate__label", "stable__number", "stable__label", "created_by__username")


def rollout_rows_for(user):
    """Every rollout the user may see, newest first, shaped for the rollouts page."""
    return (filter_visible(Deployment.objects.all(), user, "environment__project")
            .select_related("environment__project", "model", "candidate", "stable",
                            "created_by")
            .only(*ROLLOUT_ROW).order_by("-created_at", "-id"))
