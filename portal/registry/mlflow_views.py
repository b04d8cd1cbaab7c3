"""The model's MLflow page (decision 66): the "Import from MLflow" form (the API's
request, from the browser) with the model's recent imports and what became of them, and
its follows of MLflow registered models: followed, listed with their state, stopped."""

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.accounts.throttling import check_page_rate
from portal.errors import ValidationFailed
from portal.registry.api.mlflow import MlflowImportRequestSerializer
from portal.registry.models import MlflowFollow, MlflowImport
from portal.registry.services import mlflow as mlflow_services
from portal.registry.views import _model
from portal.views import handle_action, handle_form, submit_form


class MlflowImportForm(forms.Form):
    """The fields of ``MlflowImportRequestSerializer``, which checks them for the API too."""

    tracking_uri = forms.CharField(required=False, max_length=300, label="Tracking URI",
                                   help_text="Left empty: this instance's MLflow server.")
    name = forms.CharField(required=False, max_length=256, label="Registered model")
    version = forms.CharField(required=False, max_length=20, label="Version",
                              help_text="A registered model's version number; or give a "
                                        "run id instead.")
    run_id = forms.CharField(required=False, max_length=64, label="Run id")
    artifact_path = forms.CharField(required=False, max_length=200, initial="model",
                                    label="Model name in the run",
                                    help_text="The name the run logged its model under.")

    def source(self):
        serializer = MlflowImportRequestSerializer(data={
            k: v for k, v in self.cleaned_data.items() if v not in ("", None)})
        if not serializer.is_valid():
            errors = serializer.errors
            text = "; ".join(" ".join(map(str, v)) for v in errors.values())
            raise ValidationFailed(text, code="invalid_source")
        return serializer.mlflow_source()


class MlflowFollowForm(forms.Form):
    """What ``mlflow_services.follow`` takes (it checks alias or tag, as for the API)."""

    tracking_uri = forms.CharField(required=False, max_length=300, label="Tracking URI",
                                   help_text="Left empty: this instance's MLflow server.")
    registered_name = forms.CharField(max_length=256, label="Registered model",
                                      help_text="Its name in MLflow's model registry.")
    alias = forms.CharField(required=False, max_length=64, label="Alias",
                            help_text="Import the version MLflow gives this alias "
                                      "(champion, prod…); or follow a tag below instead.")
    tag_key = forms.CharField(required=False, max_length=250, label="Tag key",
                              help_text="Import every version tagged key = value.")
    tag_value = forms.CharField(required=False, max_length=500, label="Tag value")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, prefix="follow", **kwargs)


def _page(request, model, *, form=None, follow_form=None):
    return render(request, "registry/mlflow_import.html", {
        "form": form or MlflowImportForm(), "follow_form": follow_form or MlflowFollowForm(),
        "model": model, "project": model.project,
        "imports": MlflowImport.objects.filter(model=model).select_related("version")[:20],
        "follows": mlflow_services.follows_of(model),
        "poll_minutes": _poll_minutes(),
    })


def _poll_minutes() -> int:
    return max(round(settings.MODELGATE_MLFLOW_POLL_SECONDS / 60), 1)


def _back(model) -> str:
    return reverse("registry:mlflow-import", args=[model.project.slug, model.name])


@login_required
def mlflow_import(request, slug, name):
    model = _model(request, slug, name)
    require_role(request.user, model.project, Role.CONTRIBUTOR, "import versions")
    form = MlflowImportForm(request.POST or None)

    def start(data):
        check_page_rate(request, "uploads")  # counted as the API's import is
        item, created = mlflow_services.request_import(
            request.user, model, form.source(), tracking_uri=data.get("tracking_uri"))
        return item, created

    return handle_form(
        request, form, start,
        success=lambda result: (
            f"A worker is importing {result[0].source}; it appears below, then among the "
            "versions once validated." if result[1] else
            f"{result[0].source} was imported already (or is being imported): nothing new."),
        redirect_to=lambda result: request.path,
    ) or _page(request, model, form=form)


@login_required
@require_POST
def mlflow_follow(request, slug, name):
    """Follow a registered model; the page that answers shows the webhook's secret, once
    (and is not to be kept: no-store)."""
    model = _model(request, slug, name)
    require_role(request.user, model.project, Role.CONTRIBUTOR, "follow MLflow models")
    form = MlflowFollowForm(request.POST)

    def start(data):
        check_page_rate(request, "uploads")  # counted as the API's new follow is
        return mlflow_services.follow(
            request.user, model, registered_name=data["registered_name"],
            alias=data["alias"], tag_key=data["tag_key"], tag_value=data["tag_value"],
            tracking_uri=data["tracking_uri"])

    item = submit_form(request, form, start)
    if item is None:
        return _page(request, model, follow_form=form)
    response = render(request, "registry/mlflow_follow_created.html", {
        "follow": item, "webhook_url": mlflow_services.webhook_url(item),
        "event": "model_version_alias.created" if item.alias else "model_version_tag.set",
        "model": model, "project": model.project, "back": _back(model),
        "poll_minutes": _poll_minutes()})
    response["Cache-Control"] = "no-store"  # the secret: keep no copy
    return response


@login_required
@require_POST
def mlflow_unfollow(request, slug, name, pk):
    model = _model(request, slug, name)
    item = get_object_or_404(MlflowFollow, model=model, pk=pk)
    return handle_action(
        request, lambda: mlflow_services.unfollow(request.user, item),
        success=f"{model.name} no longer follows {item.registered_name}{item.selector}; "
                "the versions it imported stay.",
        redirect_to=_back(model) + "#follows")
