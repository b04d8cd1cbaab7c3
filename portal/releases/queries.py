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
