from django.contrib.auth.decorators import login_required
from django.db.models import Count, Q
from django.shortcuts import render
from django.utils import timezone

from portal.accounts.services import memberships_read_once, visible_project_ids
from portal.monitoring.incidents import group
from portal.registry import queries
from portal.web import lists


@login_required
def dashboard(request):
    # Nine lists, each filtered by the projects the person may see: their memberships are
    # read once for this request and given to each list (``portal.web.lists``).
    with memberships_read_once(request.user):
        return _dashboard(request)


def _dashboard(request):
    ids = visible_project_ids(request.user)
    ids = None if ids is None else tuple(ids)
    # Projects and their live models counted in one query.
    counts = queries.visible_projects(request.user).filter(archived_at__isnull=True).aggregate(
        projects=Count("pk", distinct=True),
        models=Count("models", filter=Q(models__archived_at__isnull=True), distinct=True))
    # Its statuses add up to the total (archived versions included).
    status_counts = dict(lists.status_counts.rows(ids))
    incidents = group(lists.firing_alerts.rows(ids))  # firing alerts only
    return render(request, "web/dashboard.html", {
        "invitations": lists.open_invitations.rows(request.user.pk, timezone.now()),
        "firing_incidents": incidents[:8],
        "incident_count": len(incidents),
        "firing_count": sum(len(i.alerts) for i in incidents),
        "project_count": counts["projects"],
        "model_count": counts["models"],
        "version_count": sum(status_counts.values()),
        "dataset_count": queries.datasets_for(request.user)
        .filter(archived_at__isnull=True, project__archived_at__isnull=True).count(),
        "status_counts": status_counts,
        "recent_versions": lists.recent_versions.rows(ids),
        "attention": lists.attention.rows(ids),
        "models": lists.models.rows(ids),
        "open_requests": lists.open_requests.rows(ids),
        "active_rollouts": lists.active_rollouts.rows(ids),
    })
