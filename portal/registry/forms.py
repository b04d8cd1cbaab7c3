import json

from django import forms

from portal.api.parsers import NUL_REFUSED, contains_nul
from portal.registry.choices import DatasetPurpose, Task
from portal.registry.models import Dataset, ModelVersion, RegisteredModel
from portal.registry.services.schemas import CHOICES as SCHEMA_CHOICES


class ProjectForm(forms.Form):
    name = forms.CharField(max_length=100)
    slug = forms.SlugField(max_length=100, help_text="Lowercase identifier used in URLs and the API")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class ProjectSettingsForm(forms.Form):
    name = forms.CharField(max_length=100)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    allow_unsafe_artifacts = forms.BooleanField(
        required=False, label="Allow pickle/joblib artifacts",
        help_text="They can run arbitrary code when loaded. Versions in these formats are "
                  "marked unsafe everywhere.")


class ModelForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="Lowercase, e.g. churn-classifier")
    task = forms.ChoiceField(choices=Task.choices)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)


class JSONField(forms.CharField):
    def __init__(self, *args, expect=dict, **kwargs):
        self.expect = expect
        kwargs.setdefault("widget", forms.Textarea(attrs={"rows": 4, "class": "mono"}))
        super().__init__(*args, **kwargs)

    def clean(self, value):
        value = super().clean(value)
        if not value:
            return self.expect()
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise forms.ValidationError(f"not valid JSON: {e}") from e
        if not isinstance(parsed, self.expect):
            raise forms.ValidationError(f"expected a JSON {self.expect.__name__}")
        if contains_nul(parsed):
            raise forms.ValidationError(NUL_REFUSED)
        return parsed


class VersionForm(forms.Form):
    artifact = forms.FileField(help_text="A skops file (skops.io.dump), or the model in its own "
                                         "format: XGBoost JSON/UBJSON, LightGBM text, ONNX. "
                                         "Pickle/joblib only if the project allows unsafe "
                                         "artifacts.")
    input_schema = JSONField(
        expect=list, required=False,
        help_text='[{"name": "age", "type": "double"}, …], in the order the model was fitted '
                  "on. Leave it empty and the portal fills it in, as chosen below")
    schema_from = forms.ChoiceField(
        choices=SCHEMA_CHOICES, initial="auto", required=False,
        label="An empty schema is taken from",
        help_text="The artifact's feature names are read by the worker that validates it "
                  "(a model fitted on a DataFrame has them); the version's page says what "
                  "was used")
    metrics = JSONField(required=False, help_text='{"roc_auc": 0.97}')
    params = JSONField(required=False, help_text='{"n_estimators": 200}')
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none(), required=False,
                                     empty_label="None: no training data recorded",
                                     help_text="The reference dataset it was trained on")
    parent = forms.ModelChoiceField(queryset=ModelVersion.objects.none(), required=False,
                                    empty_label="None: a fresh start",
                                    help_text="The version this one was derived from")
    code_repository = forms.CharField(required=False, label="Code repository")
    code_commit = forms.CharField(required=False, label="Commit")
    label = forms.CharField(required=False, help_text="Optional semantic version, e.g. 1.3.0")
    tags = forms.CharField(required=False, help_text="Comma-separated")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    classes = forms.CharField(
        required=False, label="Class names",
        help_text="Classifiers: what each predicted value means, e.g. 0=malignant, 1=benign. "
                  "Explanations and A/B results speak in these names. Empty: the parent "
                  "version's names, else the values themselves.")

    def __init__(self, *args, model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["dataset"].queryset = Dataset.objects.filter(project=model.project)
        self.fields["parent"].queryset = ModelVersion.objects.filter(model=model).order_by("-number")
        self.fields["parent"].label_from_instance = lambda v: v.display_name

    def clean_classes(self) -> dict:
        """``0=malignant, 1=benign`` -> ``{"0": "malignant", "1": "benign"}``."""
        names = {}
        for part in filter(None, (p.strip() for p in self.cleaned_data["classes"].split(","))):
            value, sep, name = (x.strip() for x in part.partition("="))
            if not (sep and value and name):
                raise forms.ValidationError(
                    f"“{part}” is not value=name: write each class as 0=malignant, "
                    "separated by commas.")
            names[value] = name
        return names

    def metadata(self) -> dict:
        """The upload's metadata document, as the API takes it: ``register_version`` checks
        it against ``portal.registry.metadata.VersionMetadataSerializer``."""
        data = self.cleaned_data
        meta = {
            "input_schema": data["input_schema"], "metrics": data["metrics"],
            "params": data["params"],
            "tags": [t.strip() for t in data["tags"].split(",") if t.strip()],
            "label": data["label"].strip(), "description": data["description"],
        }
        if data["dataset"]:
            meta["dataset"] = data["dataset"].pk
        if data["parent"]:
            meta["parent"] = data["parent"].number
        classes = data["classes"] or (data["parent"] and
                                      (data["parent"].output_schema or {}).get("classes"))
        if classes:
            meta["classes"] = classes
        if data["code_repository"] or data["code_commit"]:
            meta["code"] = {"repository": data["code_repository"], "commit": data["code_commit"]}
        return meta


class DatasetForm(forms.Form):
    name = forms.CharField(max_length=100)
    file = forms.FileField(help_text="CSV with a header row, or Parquet")
    target = forms.CharField(required=False, help_text="Label column, if the file has one")
    purpose = forms.ChoiceField(
        choices=DatasetPurpose.choices, initial=DatasetPurpose.REFERENCE,
        help_text="Evaluation: rows held out from training, with the label column of the "
                  "model below. Every version of it whose inputs it holds is measured on it, "
                  "and release gates judge the measured figures (approvers upload these).")
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.none(), required=False,
                                   empty_label="None (needed for an evaluation dataset)",
                                   help_text="The model an evaluation dataset measures")
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)

    def __init__(self, *args, project=None, **kwargs):
        super().__init__(*args, **kwargs)
        if project is not None:
            self.fields["model"].queryset = RegisteredModel.objects.filter(
                project=project, archived_at__isnull=True).order_by("name")


class AliasForm(forms.Form):
    """Point an alias at a version: first the choice (the model page), then a confirmation
    saying what moves, with the reason (``confirmed`` and ``comment``)."""

    name = forms.CharField(max_length=64, help_text="champion, challenger, or any name")
    version = forms.ModelChoiceField(queryset=ModelVersion.objects.none(),
                                     empty_label="Choose a ready version")
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False,
                              max_length=1000, label="Why?",
                              help_text="Recorded in the audit trail with the move")
    confirmed = forms.BooleanField(required=False, widget=forms.HiddenInput)
    # The version the confirmation page showed the alias at ("" when there was none).
    current = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, model=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = ModelVersion.objects.filter(
            model=model, status="ready").order_by("-number")
        self.fields["version"].label_from_instance = lambda v: v.display_name

    def clean(self):
        data = super().clean()
        if data.get("confirmed") and not (data.get("comment") or "").strip():
            self.add_error("comment", "Say why it moves: the reason is kept with the move.")
        return data

    @property
    def seen(self):
        """The version id the person was shown (``None``: no alias); ``UNCHECKED`` when
        the post did not come from the confirmation page."""
        from portal.registry.services.aliases import UNCHECKED

        if "current" not in self.data:
            return UNCHECKED
        shown = (self.cleaned_data.get("current") or "").strip()
        return int(shown) if shown.isdigit() else None

    @property
    def ready_to_move(self) -> bool:
        """Valid and confirmed with a reason: the move may be made."""
        return self.is_valid() and self.cleaned_data["confirmed"]

    @property
    def to_confirm(self) -> bool:
        """The choice is valid: what is left is the confirmation page."""
        return not (set(self.errors) - {"comment"})
