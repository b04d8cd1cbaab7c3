"""Registry pages. Each view: permission-checked fetch → one service call → render."""

from functools import partial, reduce
from operator import or_

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from explainability import charts
from portal.accounts.choices import Role
from portal.accounts.models import Membership
from portal.accounts.services import has_role, open_invitations_of, require_role, role_in
from portal.accounts.throttling import check_page_rate
from portal.accounts.visibility import viewer_of
from portal.audit.models import AuditEvent
from portal.errors import DomainError
from portal.prepared import Prepared
from portal.registry import forms, queries, services
from portal.registry.explain_views import explanation_context
from portal.registry.models import Alias, ModelVersion, Project
from portal.registry.services import evaluations
from portal.views import handle_action, handle_form


def _project(request, slug) -> Project:
    project = get_object_or_404(Project, slug=slug)
    if role_in(request.user, project) is None:
        raise Http404("project not found")
    return project


def _model(request, slug, name):
    return get_object_or_404(queries.models_for(request.user), project__slug=slug, name=name)


def _version(request, slug, name, number):
    return get_object_or_404(queries.versions_for(request.user), model__project__slug=slug,
                             model__name=name, number=number)


def _archived_only(request) -> bool:
    """A list page's "Archived" filter (``?archived=1``): archived objects only."""
    return request.GET.get("archived") == "1"


def _listed(queryset, archived: bool, *lookups: str):
    """``queryset`` cut to live objects, or to archived ones (decision 58): an object counts
    as archived when any of ``lookups`` (its own ``archived_at``, its project's) is set."""
    if not archived:
        return queryset.filter(**{f"{lookup}__isnull": True for lookup in lookups})
    return queryset.filter(reduce(or_, (Q(**{f"{lookup}__isnull": False})
                                        for lookup in lookups)))


def archive_context(user, obj, url_name: str, *args) -> dict:
    """What a page's Archive or Restore button and its notice need (``registry/inc/
    archive.html``, ``archived.html``); ``url_name`` without its ``-archive`` or
    ``-restore``."""
    project = obj if isinstance(obj, Project) else obj.project
    kind = services.archive.kind_of(obj)
    archived = obj.is_archived
    return {"archive": {
        "kind": kind, "archived": archived, "at": obj.archived_at, "by": obj.archived_by,
        "project_archived": project is not obj and project.is_archived,
        "url": reverse(f"{url_name}-{'restore' if archived else 'archive'}", args=args),
        "allowed": has_role(user, project, Role.OWNER if archived
                            else services.archive.ARCHIVE_ROLE[kind]),
    }}


def archive_action(request, obj, restore: bool):
    """An Archive or Restore button's POST: one service call, then back to the object."""
    kind = services.archive.kind_of(obj)
    service = services.restore_object if restore else services.archive_object
    return handle_action(request, lambda: service(request.user, obj),
                         success=f"{kind.capitalize()} {obj} "
                                 f"{'restored' if restore else 'archived'}.",
                         redirect_to=obj)


def _searched(request, queryset, *fields):
    """The list page's search: ``?q=`` (stripped) and the rows containing it, case-insensitive,
    in any of ``fields``."""
    q = request.GET.get("q", "").strip()
    if q:
        queryset = queryset.filter(reduce(or_, (Q(**{f"{field}__icontains": q})
                                                for field in fields)))
    return q, queryset


@login_required
def project_list(request):
    archived = _archived_only(request)
    q, projects = _searched(request, _listed(queries.projects_for(request.user), archived,
                                             "archived_at"),
                            "name", "slug", "description")
    roles = dict(Membership.objects.filter(user=request.user).values_list("project_id", "role"))
    return render(request, "registry/project_list.html",
                  {"projects": projects, "q": q, "roles": roles, "archived": archived})


@login_required
def project_create(request):
    form = forms.ProjectForm(request.POST or None)
    return handle_form(
        request, form, lambda data: services.create_project(request.user, **data),
        success=lambda project: f"Project {project.name} created; you are its owner.",
    ) or render(request, "registry/form.html", {
        "form": form, "title": "New project", "submit": "Create project",
        "intro": "A project is a team's namespace: its members, models and datasets."})


@login_required
def project_detail(request, slug):
    project = _project(request, slug)
    memberships = project.memberships.select_related("user").order_by("user__username")
    is_owner = has_role(request.user, project, Role.OWNER)
    models = queries.models_for(request.user).filter(project=project)
    datasets = queries.datasets_for(request.user).filter(project=project)
    return render(request, "registry/project_detail.html", {
        "project": project,
        "models": models.filter(archived_at__isnull=True),
        "datasets": datasets.filter(archived_at__isnull=True)[:20],
        # The "Archived" section: still readable, restored by an owner.
        "archived_models": models.filter(archived_at__isnull=False).order_by("name")[:50],
        "archived_datasets": datasets.filter(archived_at__isnull=False)[:50],
        **archive_context(request.user, project, "registry:project", project.slug),
        "memberships": memberships,
        "role": role_in(request.user, project),
        "can_contribute": has_role(request.user, project, Role.CONTRIBUTOR),
        "is_owner": is_owner,
        "invitations": open_invitations_of(project) if is_owner else [],
        "roles": Role.choices,
    })


@login_required
def project_settings(request, slug):
    project = _project(request, slug)
    require_role(request.user, project, Role.OWNER, "change project settings")
    initial = {"name": project.name, "description": project.description,
               "allow_unsafe_artifacts": project.allow_unsafe_artifacts}
    form = forms.ProjectSettingsForm(request.POST or None, initial=initial)
    return handle_form(
        request, form, lambda data: services.update_project(request.user, project, **data),
        success="Project settings saved.", redirect_to=project,
    ) or render(request, "registry/form.html", {
        "form": form, "title": f"Settings of {project.name}", "submit": "Save", "project": project})


@login_required
def model_list(request):
    archived = _archived_only(request)
    q, models = _searched(request, _listed(queries.models_for(request.user), archived,
                                           "archived_at", "project__archived_at"),
                          "name", "description", "project__name")
    page = Paginator(models.order_by("project__name", "name"), 25).get_page(request.GET.get("page"))
    return render(request, "registry/model_list.html",
                  {"page": page, "q": q, "archived": archived})


@login_required
def model_create(request, slug):
    project = _project(request, slug)
    require_role(request.user, project, Role.CONTRIBUTOR, "register models")
    form = forms.ModelForm(request.POST or None)
    return handle_form(
        request, form, lambda data: services.create_model(request.user, project, **data),
        success=lambda model: f"Model {model.name} registered. Upload its first version.",
        redirect_to=lambda model: reverse("registry:version-create", args=[slug, model.name]),
    ) or render(request, "registry/form.html", {
        "form": form, "title": f"New model in {project.name}", "submit": "Create model",
        "project": project})


CHARTED_VERSIONS = 200
# What the model page's version table shows of each version.
VERSION_TABLE_ROW = ("model", "number", "label", "status", "status_reason", "artifact_format",
                     "estimator", "metrics", "created_at", "parent__number", "dataset__name",
                     "created_by__username")
# What the model page's aliases show and link to: not the aliased versions' schemas (their
# model is the page's, attached).
ALIAS_ROW = ("name", "model", "updated_at", "version__model", "version__number",
             "version__label", "updated_by__username")


@Prepared
def _charted_versions(model_id: int):
    return (ModelVersion.objects.filter(model_id=model_id).order_by("-number")
            .values("number", "label", "metrics")[:CHARTED_VERSIONS])


@partial(Prepared, literal=1)
def _version_table(offset: int, model_id: int):
    """A page of the model page's version table (its offset is written into the SQL)."""
    return (ModelVersion.objects.filter(model_id=model_id)
            .select_related("parent", "dataset", "created_by")
            .only(*VERSION_TABLE_ROW).order_by("-number")[offset:offset + 25])


@Prepared
def _aliases_of(model_id: int):
    return (Alias.objects.filter(model_id=model_id).select_related("version", "updated_by")
            .only(*ALIAS_ROW))


@login_required
def model_detail(request, slug, name, more_context=None):
    """The model page. ``more_context(model)``: what a higher app adds to it (the releases
    app's ``model_views``, routed here by ``urls.py``, adds what serves it now)."""
    # The page shows none of the list annotations (latest version, aliases prefetched).
    model = queries.model_page.first(viewer_of(request.user), slug, name)
    if model is None:
        raise Http404
    # The chart reads three columns of the last 200 versions; the table shows a page of 25.
    recent = _charted_versions.rows(model.pk)
    history = charts.metric_history([
        {"number": v["number"], "metrics": v["metrics"],
         "label": f"v{v['number']}" + (f" ({v['label']})" if v["label"] else "")}
        for v in recent])
    # The table's rows are the model's own versions (read above, so visible: no membership
    # filter again), with their parent's number and dataset's name joined, and the model row
    # at hand for their links: one query of the columns shown, not three.
    paginator = Paginator(ModelVersion.objects.filter(model=model)
                          .select_related("parent", "dataset", "created_by")
                          .only(*VERSION_TABLE_ROW).order_by("-number"), 25)
    if len(recent) < CHARTED_VERSIONS:  # the chart read every version: no query to count them
        paginator.count = len(recent)
    page = paginator.get_page(request.GET.get("page"))
    page.object_list = _version_table.rows((page.number - 1) * paginator.per_page, model.pk)
    queries.attach_model(model, *page.object_list)
    can_contribute = has_role(request.user, model.project, Role.CONTRIBUTOR)
    aliases = _aliases_of.rows(model.pk)
    for alias in aliases:  # the model at hand, as its related manager would give it
        alias.model = model
    queries.attach_model(model, *(alias.version for alias in aliases))
    aliases_of = {}  # the table's badges: each version's aliases, by name as listed
    for alias in aliases:
        aliases_of.setdefault(alias.version_id, []).append(alias)
    return render(request, "registry/model_detail.html", {
        "model": model, "project": model.project, "versions": page.object_list, "page": page,
        "metric_chart": history, "aliases": aliases, "aliases_of": aliases_of,
        "alias_form": forms.AliasForm(model=model) if can_contribute else None,
        "can_contribute": can_contribute,
        "metric_names": sorted({k for v in recent for k in v["metrics"] or {}})[:6],
        **archive_context(request.user, model, "registry:model", model.project.slug,
                          model.name),
        **(more_context(model) if more_context else {}),
    })


@login_required
def version_create(request, slug, name):
    model = _model(request, slug, name)
    require_role(request.user, model.project, Role.CONTRIBUTOR, "upload versions")
    form = forms.VersionForm(request.POST or None, request.FILES or None, model=model)

    def upload(data):
        check_page_rate(request, "uploads")  # counted as the API's upload is
        return services.register_version(request.user, model, data["artifact"],
                                         form.metadata(),
                                         schema_from=data["schema_from"] or "auto")

    return handle_form(
        request, form, upload,
        success=lambda version: f"{version.display_name} uploaded; a worker is validating "
                                f"the artifact now. {services.schema_words(version)}",
    ) or render(request, "registry/form.html", {
        "form": form, "title": f"New version of {model.name}", "submit": "Upload version",
        "project": model.project, "model": model, "multipart": True,
        "intro": "The artifact is hashed on the server, stored, then loaded and checked by a "
                 "worker against the input schema."})


@login_required
@require_POST
def alias_set(request, slug, name):
    """The model page's alias form: a confirmation page saying what moves, asking why;
    then the move."""
    model = _model(request, slug, name)
    form = forms.AliasForm(request.POST, model=model)
    if not form.ready_to_move:
        if not form.to_confirm:
            messages.error(request, "; ".join(f"{k}: {' '.join(v)}"
                                              for k, v in form.errors.items()))
            return redirect(model)
        data = form.cleaned_data
        try:  # who may not move it learns so before confirming
            services.require_alias_role(request.user, model, data["name"])
        except DomainError as e:
            messages.error(request, e.detail)
            return redirect(model)
        return render(request, "registry/alias_confirm.html", {
            "form": form, "model": model, "project": model.project, "name": data["name"],
            "version": data["version"],
            "current": model.aliases.filter(name=data["name"]).select_related(
                "version", "updated_by").first(),
            "protected": data["name"] in services.PROTECTED_ALIASES})
    data = form.cleaned_data
    return handle_action(
        request, lambda: services.set_alias(request.user, model, data["name"], data["version"],
                                            comment=data["comment"], seen=form.seen),
        success=lambda alias: f"{alias.name} now points at {alias.version.display_name}.",
        redirect_to=model)


@Prepared
def _history(object_type: str, object_id: str):
    """An object's last 50 audit events, newest first."""
    return AuditEvent.objects.filter(object_type=object_type,
                                     object_id=object_id).order_by("-id")[:50]


@login_required
def version_detail(request, slug, name, number, more_context=None):
    """The version page; ``more_context(version)`` as for ``model_detail``."""
    # Its MLflow source (none, mostly) joined: one row, where the template's read was a query.
    version = queries.version_page.first(viewer_of(request.user), slug, name, number)
    if version is None:
        raise Http404
    parent = version.parent_id and queries.parent_of.first(version.parent_id)
    if parent:
        version.parent = parent
    queries.attach_model(version.model, version.parent)  # its link reads no model, no project
    graph = services.lineage(version)
    history = _history.rows("registry.modelversion", str(version.pk))
    alias_names = queries.alias_names.rows(version.pk)
    return render(request, "registry/version_detail.html", {
        "version": version, "model": version.model, "project": version.model.project,
        "lineage_chart": charts.lineage_graph(graph), "lineage": graph,
        "history": history, "alias_names": alias_names,
        "tags": queries.tag_names.rows(version.pk),
        "metric_table": evaluations.metric_table(version),
        "can_contribute": has_role(request.user, version.model.project, Role.CONTRIBUTOR),
        "is_owner": has_role(request.user, version.model.project, Role.OWNER),
        **explanation_context(version, request.GET),
        **(more_context(version) if more_context else {}),
    })


@login_required
@require_POST
def version_archive(request, slug, name, number, restore=False):
    version = _version(request, slug, name, number)
    if restore:
        return handle_action(request, lambda: services.restore_version(request.user, version),
                             success=lambda v: f"{v.display_name} restored: "
                                               f"{v.get_status_display().lower()} again.",
                             redirect_to=version)
    return handle_action(request, lambda: services.archive_version(request.user, version),
                         success=f"{version.display_name} archived: its file may be "
                                 "registered again, and an owner can restore it.",
                         redirect_to=version)


@login_required
def dataset_create(request, slug):
    project = _project(request, slug)
    require_role(request.user, project, Role.CONTRIBUTOR, "upload datasets")
    form = forms.DatasetForm(request.POST or None, request.FILES or None, project=project)

    def upload(data):
        check_page_rate(request, "uploads")  # counted as the API's upload is
        return services.upload_dataset(request.user, project, name=data["name"],
                                       file=data["file"], filename=data["file"].name,
                                       target=data["target"], purpose=data["purpose"],
                                       model=data["model"], description=data["description"])

    return handle_form(
        request, form, upload,
        success=lambda dataset: f"Dataset {dataset.name} uploaded; its profile is being "
                                "computed.",
    ) or render(request, "registry/form.html", {
        "form": form, "title": f"Upload a dataset to {project.name}", "submit": "Upload",
        "project": project, "multipart": True})


@login_required
def dataset_detail(request, pk):
    dataset = get_object_or_404(queries.datasets_for(request.user), pk=pk)
    features = (dataset.profile or {}).get("features", {})
    feature_charts = [(name, charts.feature_profile(name, profile), profile)
                      for name, profile in features.items() if name != dataset.target]
    target_profile = features.get(dataset.target) if dataset.target else None
    versions = dataset.versions.select_related("model__project").order_by("-created_at")[:50]
    measured = dataset.evaluations.select_related("version__model__project").order_by(
        "version__model__name", "-version__number")[:100]
    return render(request, "registry/dataset_detail.html", {
        "dataset": dataset, "project": dataset.project, "feature_charts": feature_charts,
        "target_profile": target_profile, "target_chart": (
            charts.target_histogram(dataset.target, target_profile)
            or charts.feature_profile(dataset.target, target_profile))
        if target_profile else None,
        "versions": versions, "measured": measured,
        **archive_context(request.user, dataset, "registry:dataset", dataset.pk)})


@login_required
@require_POST
def project_archive(request, slug, restore=False):
    return archive_action(request, _project(request, slug), restore)


@login_required
@require_POST
def model_archive(request, slug, name, restore=False):
    return archive_action(request, _model(request, slug, name), restore)


@login_required
@require_POST
def dataset_archive(request, pk, restore=False):
    return archive_action(request, get_object_or_404(queries.datasets_for(request.user),
                                                     pk=pk), restore)



