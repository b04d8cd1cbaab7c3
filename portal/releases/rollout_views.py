"""Every rollout of every environment the user may see, on one page (``rollouts``)."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render

from portal.releases import queries
from portal.releases.choices import DeploymentStatus

PER_PAGE = 50


def _filtered(rollouts, filters: dict):
    if filters["environment"].isdigit() and len(filters["environment"]) <= 18:
        rollouts = rollouts.filter(environment_id=int(filters["environment"]))
    if filters["project"]:
        rollouts = rollouts.filter(environment__project__slug=filters["project"])
    if filters["model"]:
        rollouts = rollouts.filter(model__name__icontains=filters["model"])
    if filters["status"] in DeploymentStatus.values:
        rollouts = rollouts.filter(status=filters["status"])
    return rollouts


@login_required
def rollout_list(request):
    """``?environment=<id>&project=<slug>&model=<name>&status=``, newest first."""
    filters = {key: request.GET.get(key, "").strip()[:100]
               for key in ("environment", "project", "model", "status")}
    rollouts = _filtered(queries.rollout_rows_for(request.user), filters)
    environments = list(queries.environments_for(request.user).select_related(None)
                        .select_related("project")
                        .only("name", "archived_at", "project__slug", "project__name")
                        .order_by("project__name", "name"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(request, "releases/rollout_list.html", {
        "page": Paginator(rollouts, PER_PAGE).get_page(request.GET.get("page")),
        "filters": filters, "filtered": any(filters.values()), "query": query.urlencode(),
        "environments": environments, "statuses": DeploymentStatus.choices,
        "projects": sorted({(e.project.slug, e.project.name) for e in environments},
                           key=lambda p: p[1])})
