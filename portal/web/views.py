from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.shortcuts import render

from portal.monitoring import queries as monitoring_queries
from portal.registry import queries
from portal.registry.choices import VersionStatus
from portal.releases import queries as release_queries
from portal.releases.choices import RequestStatus
from portal.releases.deployments import ACTIVE


@login_required
def dashboard(request):
    versions = queries.version_rows_for(request.user)
    models = queries.models_for(request.user)
    status_counts = dict(versions.order_by().values_list("status").annotate(n=Count("id")))
    firing = monitoring_queries.alerts_for(request.user).filter(state="firing")
    return render(request, "web/dashboard.html", {
        "firing_alerts": firing[:8],
        "firing_count": firing.count(),
        "project_count": queries.projects_for(request.user).count(),
        "model_count": models.count(),
        "version_count": sum(status_counts.values()),
        "dataset_count": queries.datasets_for(request.user).count(),
        "status_counts": status_counts,
        "recent_versions": versions[:10],
        "attention": versions.filter(status__in=[VersionStatus.PENDING, VersionStatus.INVALID])[:5],
        "models": models.order_by("-created_at")[:8],
        "open_requests": release_queries.requests_for(request.user)
        .filter(status=RequestStatus.OPEN)[:5],
        "active_rollouts": release_queries.deployments_for(request.user)
        .filter(status__in=ACTIVE)[:5],
    })
