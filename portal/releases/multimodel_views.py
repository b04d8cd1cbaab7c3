"""The pages of multi-model endpoints (decision 68): an environment's endpoint, its members,
and owners' forms to create it and add or remove models. Form or button → service →
message, as every page (``portal.views``).

Apps above releases add sections to an endpoint's page (``add_section``, from their
``AppConfig.ready``; releases may not import them): monitoring adds each member's drift and
the endpoint's alerts."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal.accounts.choices import Role
from portal.accounts.services import has_role, require_role
from portal.registry.models import ModelVersion, RegisteredModel
from portal.releases import multimodel, queries
from portal.releases.api.multimodel import endpoints_for
from portal.views import handle_action, handle_form

# section(user, endpoint, members) -> the page's context it adds
SECTIONS: dict[str, Callable] = {}


def add_section(name: str, section: Callable) -> None:
    SECTIONS[name] = section


class EndpointForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="Lower-case letters, digits and dashes")
    memory_budget_mb = forms.IntegerField(
        min_value=1, label="Memory budget (MiB)",
        help_text="Loaded models share it; the least recently used is evicted to make room")
    top_models = forms.IntegerField(
        min_value=0, max_value=multimodel.MAX_TOP_MODELS, initial=20,
        help_text="Models by traffic that keep their own metric label")


class MemberForm(forms.Form):
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.none())
    alias = forms.CharField(max_length=64, required=False,
                            help_text="Follow this alias (champion…), or give a version")
    version = forms.IntegerField(min_value=1, required=False, help_text="A version number")

    def __init__(self, *args, project, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].queryset = RegisteredModel.objects.filter(
            project=project, archived_at=None).order_by("name")


def _environment(request, slug, name):
    return get_object_or_404(queries.environments_for(request.user), project__slug=slug,
                             name=name)


def _endpoint(request, slug, name, endpoint):
    return get_object_or_404(endpoints_for(request.user), environment__project__slug=slug,
                             environment__name=name, name=endpoint)


def _url(endpoint) -> str:
    environment = endpoint.environment
    return reverse("releases:multimodel", args=[environment.project.slug, environment.name,
                                                endpoint.name])


@login_required
def endpoint_create(request, slug, name):
    environment = _environment(request, slug, name)
    require_role(request.user, environment.project, Role.OWNER, "create multi-model endpoints")
    form = EndpointForm(request.POST or None)
    return handle_form(
        request, form,
        lambda data: multimodel.create_endpoint(request.user, environment, **data),
        success="Multi-model endpoint created.", redirect_to=_url,
    ) or render(request, "registry/form.html", {
        "form": form, "title": f"New multi-model endpoint in {environment.name}",
        "submit": "Create", "project": environment.project,
        "intro": "One model server loads many models on demand within a memory budget."})


@login_required
def endpoint_detail(request, slug, name, endpoint):
    found = _endpoint(request, slug, name, endpoint)
    project = found.environment.project
    form = MemberForm(request.POST or None, project=project)

    def add(data):
        version = None
        if data.get("version"):
            version = ModelVersion.objects.filter(model=data["model"],
                                                  number=data["version"]).first()
            if version is None:
                raise multimodel.ValidationFailed(
                    f"{data['model'].name} has no version {data['version']}", field="version")
        return multimodel.add_member(request.user, found, data["model"],
                                     alias=data.get("alias") or "", version=version)

    if request.method == "POST":
        require_role(request.user, project, Role.OWNER, "change multi-model endpoints")
    answered = handle_form(request, form, add, success="Model added.", redirect_to=_url(found))
    if answered:
        return answered
    members = list(found.members.select_related("model", "version"))
    context = {"endpoint": found, "environment": found.environment, "project": project,
               "members": members, "form": form,
               "is_owner": has_role(request.user, project, Role.OWNER)}
    for section in SECTIONS.values():
        context.update(section(request.user, found, members))
    return render(request, "releases/multimodel_detail.html", context)


@login_required
@require_POST
def member_remove(request, slug, name, endpoint, member_id):
    found = _endpoint(request, slug, name, endpoint)
    return handle_action(request,
                         lambda: multimodel.remove_member(request.user, found, member_id),
                         success="Model removed.", redirect_to=_url(found))
