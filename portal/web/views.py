from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import render

from portal.accounts.services import memberships_read_once, open_invitations_to
from portal.monitoring import queries as monitoring_queries
from portal.monitoring.incidents import open_incidents
from portal.registry import queries
from portal.registry.choices import VersionStatus
from portal.releases import queries as release_queries
from portal.releases.choices import RequestStatus
from portal.releases.deployments import ACTIVE

# The columns the dashboard's rows show: the page is the most visited one, and Django
# compiles (and PostgreSQL sends) every column of every joined table unless told otherwise.
_VERSION_ROW = ("number", "label", "status", "status_reason", "artifact_format", "created_at",
                "model__name", "model__project__slug", "created_by__username")
_REQUEST_ROW = ("created_at", "gates_passed", "version__number", "version__label",
                "version__model__name", "version__model__project__slug", "environment__name")
_ROLLOUT_ROW = ("status", "strategy", "environment__name", "model__name", "candidate__number")
_INVITATION_ROW = ("role", "project__name", "invited_by__username")


@login_required
def dashboard(request):
    # Nine lists, each filtered by the projects the person may see: their memberships are
    # read once for this request, not compiled into each query as a subquery.
    with memberships_read_once(request.user):
        return _dashboard(request)


def _dashboard(request):
    # What is archived (or in an archived project) is out of the dashboard, as of every list;
    # the versions counted are those of the models counted, and their statuses add up to
    # the total (archived versions included).
    versions = queries.version_rows_for(request.user).filter(
        model__archived_at__isnull=True, model__project__archived_at__isnull=True)
    rows = versions.only(*_VERSION_ROW)
    # Projects and their live models counted in one query.
    counts = queries.visible_projects(request.user).filter(archived_at__isnull=True).aggregate(
        projects=Count("pk", distinct=True),
        models=Count("models", filter=Q(models__archived_at__isnull=True), distinct=True))
    status_counts = dict(versions.order_by().values_list("status").annotate(n=Count("id")))
    incidents = open_incidents(monitoring_queries.firing_alerts_for(request.user))
    return render(request, "web/dashboard.html", {
        # The in-portal notice of invitations (no email: the portal knows no base URL).
        "invitations": open_invitations_to(request.user)
        .select_related("project", "invited_by").only(*_INVITATION_ROW)[:5],
        "firing_incidents": incidents[:8],
        "incident_count": len(incidents),
        "firing_count": sum(len(i.alerts) for i in incidents),
        "project_count": counts["projects"],
        "model_count": counts["models"],
        "version_count": sum(status_counts.values()),
        "dataset_count": queries.datasets_for(request.user)
        .filter(archived_at__isnull=True, project__archived_at__isnull=True).count(),
        "status_counts": status_counts,
        "recent_versions": rows[:10],
        "attention": rows.filter(status__in=[VersionStatus.PENDING, VersionStatus.INVALID])[:5],
        "models": queries.model_rows_for(request.user)
        .filter(archived_at__isnull=True, project__archived_at__isnull=True)
        .order_by("-created_at")[:8],
        "open_requests": release_queries.requests_for(request.user)
        .filter(status=RequestStatus.OPEN).select_related(None)
        .select_related("version__model__project", "environment")
        .only(*_REQUEST_ROW).prefetch_related(None)[:5],
        "active_rollouts": release_queries.deployments_for(request.user)
        .filter(status__in=ACTIVE).select_related(None)
        .select_related("environment", "model", "candidate").only(*_ROLLOUT_ROW)[:5],
    })
