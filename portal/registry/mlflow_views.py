"""The model page's "Import from MLflow" form (decision 66): the API's request, from the
browser, and the model's recent imports with what became of them."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.errors import ValidationFailed
from portal.registry.api.mlflow import MlflowImportRequestSerializer
from portal.registry.models import MlflowImport
from portal.registry.services import mlflow as mlflow_services
from portal.registry.views import _model
from portal.views import handle_form


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


@login_required
def mlflow_import(request, slug, name):
    model = _model(request, slug, name)
    require_role(request.user, model.project, Role.CONTRIBUTOR, "import versions")
    form = MlflowImportForm(request.POST or None)

    def start(data):
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
    ) or render(request, "registry/mlflow_import.html", {
        "form": form, "model": model, "project": model.project,
        "imports": MlflowImport.objects.filter(model=model).select_related("version")[:20],
    })
