"""A project's audit trail, for its owners (and staff): who did what to which object."""

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import queries
from portal.registry.models import ModelVersion, RegisteredModel
from portal.registry.views import _project

PER_PAGE = 50
# Objects whose page is found by their id alone (the event's row links to it).
PAGES_BY_ID = {"registry.dataset": "registry:dataset", "releases.deployment": "releases:deployment",
               "releases.approvalrequest": "releases:request",
               "monitoring.alert": "monitoring:alert",
               "experiments.experiment": "experiments:experiment"}


def _ids(events, object_type: str) -> set[int]:
    return {int(e.object_id) for e in events
            if e.object_type == object_type and e.object_id.isdigit()}


def _urls_of_models_and_versions(events, project) -> dict:
    """The pages of the project's models and versions the events name (a query each, for
    the whole page); what was deleted since, or moved, is left unlinked."""
    urls = {}
    models = RegisteredModel.objects.filter(project=project,
                                            pk__in=_ids(events, "registry.registeredmodel"))
    for pk, name in models.values_list("pk", "name"):
        urls["registry.registeredmodel", str(pk)] = reverse("registry:model",
                                                            args=[project.slug, name])
    versions = ModelVersion.objects.filter(model__project=project,
                                           pk__in=_ids(events, "registry.modelversion"))
    for pk, name, number in versions.values_list("pk", "model__name", "number"):
        urls["registry.modelversion", str(pk)] = reverse("registry:version",
                                                         args=[project.slug, name, number])
    return urls


def _linked(events, project) -> list:
    """Each event with ``link``: the page of its object, where one is known."""
    urls = _urls_of_models_and_versions(events, project)
    for event in events:
        name = PAGES_BY_ID.get(event.object_type)
        try:
            event.link = urls.get((event.object_type, event.object_id)) or (
                reverse(name, args=[int(event.object_id)]) if name else "")
        except (NoReverseMatch, ValueError):
            event.link = ""
    return events


@login_required
def project_audit(request, slug):
    """``?actor=&action=&object=``: filters; members below owner are refused (403), others
    get 404 as on every page of the project."""
    project = _project(request, slug)
    require_role(request.user, project, Role.OWNER, "read the project's audit log")
    filters = {key: request.GET.get(key, "").strip()[:300]
               for key in ("actor", "action", "object")}
    events = queries.project_events(project.pk, actor=filters["actor"],
                                    action=filters["action"], obj=filters["object"])
    query = request.GET.copy()
    query.pop("page", None)
    page = Paginator(events, PER_PAGE).get_page(request.GET.get("page"))
    page.object_list = _linked(list(page.object_list), project)
    return render(request, "registry/project_audit.html", {
        "project": project, "filters": filters, "filtered": any(filters.values()),
        "page": page,
        "query": query.urlencode(), **queries.filter_choices(project.pk)})
