import re

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from portal.errors import ImmutableError
from portal.registry.choices import (
    ArtifactFormat,
    DatasetFormat,
    DatasetPurpose,
    EvaluationStatus,
    ExplanationStatus,
    ImportStatus,
    ProfileStatus,
    SchemaSource,
    Task,
    VersionStatus,
)
from portal.reversing import reverse

name_validator = RegexValidator(
    r"^[a-z0-9][a-z0-9._-]{0,99}$",
    "Use lowercase letters, digits, dots, dashes and underscores, starting with a letter or digit.",
)
SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
# The rule in words, for every message that refuses a label (semver.org 2.0.0).
SEMVER_RULE = ("a semantic version: MAJOR.MINOR.PATCH, three numbers without leading zeros, "
               "optionally followed by -pre-release and +build parts, e.g. 1.4.0, "
               "2.0.0-rc.1 or 1.4.0+build.7")
semver_validator = RegexValidator(SEMVER, f"Must be {SEMVER_RULE}.")


class Archivable(models.Model):
    """Soft deletion (decision 58): an archived object keeps its rows, files and history,
    stays readable by id, is left out of default lists and takes nothing new. Changed only
    by ``portal.registry.services.archive``."""

    archived_at = models.DateTimeField(null=True, blank=True, editable=False)
    archived_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    editable=False, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        abstract = True

    @property
    def is_archived(self) -> bool:
        return self.archived_at is not None


class Project(Archivable):
    """A team's namespace; members hold roles in it."""

    name = models.CharField(max_length=100)
    slug = models.SlugField(max_length=100, unique=True, validators=[name_validator])
    description = models.TextField(blank=True)
    allow_unsafe_artifacts = models.BooleanField(
        default=False,
        help_text="Accept pickle/joblib artifacts (they can run code when loaded).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name"]

    def __str__(self):
        return self.name

    def get_absolute_url(self):
        return reverse("registry:project", args=[self.slug])


class RegisteredModel(Archivable):
    """A named model in a project; its versions are immutable artifacts."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="models")
    name = models.CharField(max_length=100, validators=[name_validator])
    task = models.CharField(max_length=20, choices=Task.choices)
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["project__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="model_unique_name"),
        ]

    def __str__(self):
        return f"{self.project.slug}/{self.name}"

    def get_absolute_url(self):
        return reverse("registry:model", args=[self.project.slug, self.name])


class Dataset(Archivable):
    """A reference dataset (training or evaluation data) and its baseline profile."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="datasets")
    name = models.CharField(max_length=100, validators=[name_validator])
    description = models.TextField(blank=True)
    uri = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64)
    size = models.BigIntegerField(default=0)
    format = models.CharField(max_length=10, choices=DatasetFormat.choices)
    target = models.CharField(max_length=100, blank=True,
                              help_text="Name of the label column, if the file has one.")
    purpose = models.CharField(
        max_length=12, choices=DatasetPurpose.choices, default=DatasetPurpose.REFERENCE,
        help_text="Evaluation datasets are held out, with the label: every version whose "
                  "inputs they hold is measured on them, and gates judge what is measured.")
    # The model an evaluation dataset measures (its label is that model's target); None for
    # reference datasets, which any model of the project may be trained on.
    model = models.ForeignKey("RegisteredModel", null=True, blank=True,
                              on_delete=models.PROTECT, related_name="evaluation_datasets")
    rows = models.IntegerField(null=True, blank=True)
    columns = models.JSONField(default=list, blank=True)
    profile = models.JSONField(default=dict, blank=True)
    profile_status = models.CharField(max_length=10, choices=ProfileStatus.choices,
                                      default=ProfileStatus.PENDING)
    profile_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "sha256"], name="dataset_unique_content"),
        ]

    def __str__(self):
        return f"{self.name} ({self.sha256[:12]})"

    def get_absolute_url(self):
        return reverse("registry:dataset", args=[self.pk])

    @property
    def feature_columns(self) -> list[dict]:
        return [c for c in self.columns if c["name"] != self.target]

    @property
    def is_evaluation(self) -> bool:
        return self.purpose == DatasetPurpose.EVALUATION

    def clean(self):
        if self.is_evaluation and not self.target:
            raise ValidationError({"target": "An evaluation dataset needs its label column: "
                                             "versions are measured against it."})
        if self.is_evaluation and self.model_id is None:
            raise ValidationError({"model": "An evaluation dataset names the model it "
                                            "measures (its label is that model's target)."})
        if self.model_id is not None and self.model.project_id != self.project_id:
            raise ValidationError({"model": "The model must belong to the dataset's project."})


# Fields a version may still change after creation: its lifecycle, and what the
# validator learns about the artifact. Everything else is frozen at registration.
VERSION_MUTABLE_FIELDS = frozenset({
    "status", "status_reason", "validated_at", "framework", "estimator", "classes",
    "converted_uri", "converted_sha256",
})


# Versions that hold their artifact and label: registering the same file again is refused
# while one of them is pending or ready, and allowed once it is invalid or archived.
LIVE_VERSION_STATUSES = (VersionStatus.PENDING, VersionStatus.READY)


SCHEMA_FILLED_ONCE = frozenset({"input_schema", "schema_source"})


class ImmutableVersionError(ImmutableError):
    pass


class ModelVersion(models.Model):
    """One immutable trained artifact of a model, with its lineage."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    label = models.CharField(max_length=64, blank=True, validators=[semver_validator],
                             help_text="Optional semantic version (MAJOR.MINOR.PATCH, "
                                       "e.g. 1.4.0 or 2.0.0-rc.1)")
    description = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=VersionStatus.choices,
                              default=VersionStatus.PENDING)
    status_reason = models.TextField(blank=True)
    artifact_uri = models.CharField(max_length=500)
    artifact_sha256 = models.CharField(max_length=64)
    artifact_size = models.BigIntegerField()
    artifact_format = models.CharField(max_length=10, choices=ArtifactFormat.choices)
    # A pickle is loaded once, in the sandbox, and kept as skops: what everything loads.
    converted_uri = models.CharField(max_length=500, blank=True)
    converted_sha256 = models.CharField(max_length=64, blank=True)
    framework = models.CharField(max_length=100, blank=True)
    estimator = models.CharField(max_length=200, blank=True)
    classes = models.JSONField(default=list, blank=True)
    input_schema = models.JSONField(default=list)
    # Where the input schema came from (``SchemaSource``): typed by the uploader, or filled
    # in by the portal; "auto" until the worker has read the artifact (set once, then).
    schema_source = models.CharField(max_length=10, blank=True, default="declared",
                                     choices=SchemaSource.choices)
    output_schema = models.JSONField(default=dict, blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    params = models.JSONField(default=dict, blank=True)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.PROTECT,
                                related_name="versions")
    code_repository = models.CharField(max_length=300, blank=True)
    code_commit = models.CharField(max_length=64, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="children")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    validated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "number"], name="version_unique_number"),
            # An artifact and a label name one live version: an invalid or archived one
            # (declared with the wrong schema, say) does not burn them, and the same file
            # may be registered again (LIVE_VERSION_STATUSES).
            models.UniqueConstraint(fields=["model", "artifact_sha256"],
                                    condition=models.Q(status__in=LIVE_VERSION_STATUSES),
                                    name="version_unique_live_artifact"),
            models.UniqueConstraint(fields=["model", "label"],
                                    condition=~models.Q(label="")
                                    & models.Q(status__in=LIVE_VERSION_STATUSES),
                                    name="version_unique_live_label"),
            models.CheckConstraint(condition=models.Q(status__in=VersionStatus.values),
                                   name="version_status_valid"),
        ]
        indexes = [
            models.Index(fields=["model", "-number"], name="version_model_number"),
            models.Index(fields=["status", "-created_at"], name="version_status_created"),
        ]

    def __str__(self):
        return f"{self.model.name} v{self.number}"

    def get_absolute_url(self):
        return reverse("registry:version", args=[self.model.project.slug, self.model.name,
                                                 self.number])

    @property
    def is_unsafe(self) -> bool:
        """A pickle/joblib upload: the only format that runs code when loaded (skops,
        XGBoost, LightGBM and ONNX files are read as data)."""
        return self.artifact_format == ArtifactFormat.PICKLE

    @property
    def class_labels(self) -> dict[str, str]:
        """Each class value (as text) and its name for people: ``metadata.classes``
        (``{"0": "malignant", "1": "benign"}``, kept in ``output_schema``), else the value
        itself, which is the training target's own (``"benign"`` when the target said so)."""
        declared = (self.output_schema or {}).get("classes")
        labels = {str(c): str(c) for c in self.classes or []}
        if isinstance(declared, dict):
            labels.update({str(k): str(v) for k, v in declared.items()})
        return labels

    @property
    def loadable_uri(self) -> str:
        """The artifact every process loads: the skops conversion of a pickle, or the upload."""
        return self.converted_uri or self.artifact_uri

    @property
    def loadable_sha256(self) -> str:
        return self.converted_sha256 or self.artifact_sha256

    @property
    def display_name(self) -> str:
        return f"v{self.number}" + (f" ({self.label})" if self.label else "")

    def clean(self):
        if self.parent_id and self.parent.model_id != self.model_id:
            raise ValidationError({"parent": "The parent must be a version of the same model."})
        if self.dataset_id and self.dataset.project_id != self.model.project_id:
            raise ValidationError({"dataset": "The dataset must belong to the model's project."})

    def save(self, *args, **kwargs):
        update_fields = kwargs.get("update_fields")
        if self.pk is not None and not kwargs.get("force_insert"):
            # Versions are immutable: only lifecycle fields may be written after creation,
            # and the input schema once, by the worker, when the portal was to fill it in.
            fields = set(update_fields) if update_fields is not None else None
            if fields is None or not fields <= VERSION_MUTABLE_FIELDS | SCHEMA_FILLED_ONCE:
                raise ImmutableVersionError(
                    "model versions are immutable; only "
                    + ", ".join(sorted(VERSION_MUTABLE_FIELDS)) + " may change"
                )
            if fields & SCHEMA_FILLED_ONCE and ModelVersion.objects.filter(pk=self.pk).exclude(
                    schema_source="auto").exists():
                raise ImmutableVersionError("the input schema is set once: it is already")
        super().save(*args, **kwargs)


class Evaluation(models.Model):
    """A version measured by a worker on an evaluation dataset (held out, with the label).

    One per (version, dataset): both are immutable, so a measurement never goes stale."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE,
                                related_name="evaluations")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="evaluations")
    status = models.CharField(max_length=10, choices=EvaluationStatus.choices,
                              default=EvaluationStatus.PENDING)
    reason = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    rows = models.IntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    # When a worker claimed it (one at a time; a claim older than the task's limit is stale).
    claimed_at = models.DateTimeField(null=True, blank=True)
    computed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-dataset__created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["version", "dataset"],
                                    name="evaluation_unique_version_dataset"),
        ]

    def __str__(self):
        return f"{self.version} on {self.dataset.name}"

    @property
    def is_ready(self) -> bool:
        return self.status == EvaluationStatus.READY


class VersionTag(models.Model):
    """A free-form tag on a version (a table rather than JSON so it filters on any database)."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=64)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["version", "name"], name="tag_unique_per_version"),
        ]
        indexes = [models.Index(fields=["name"], name="tag_name")]

    def __str__(self):
        return self.name


class Alias(models.Model):
    """A movable name (champion, challenger, ...) on a model, pointing at one version."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="aliases")
    name = models.CharField(max_length=64, validators=[name_validator])
    version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="aliases")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "aliases"
        constraints = [
            models.UniqueConstraint(fields=["model", "name"], name="alias_unique_name"),
        ]

    def __str__(self):
        return f"{self.model.name}@{self.name}"

    def clean(self):
        if self.version.model_id != self.model_id:
            raise ValidationError({"version": "The alias must point at a version of this model."})


class Explanation(models.Model):
    """SHAP explanation of a version on a sample of its reference dataset
    (``explainability.shap_values``). Only stored when the values add up to the model's
    output; otherwise ``status`` is failed with the reason."""

    version = models.OneToOneField(ModelVersion, on_delete=models.CASCADE,
                                   related_name="explanation")
    status = models.CharField(max_length=16, choices=ExplanationStatus.choices,
                              default=ExplanationStatus.PENDING)
    reason = models.TextField(blank=True)
    method = models.CharField(max_length=16, blank=True)
    output = models.CharField(max_length=120, blank=True,
                              help_text="What base value + SHAP values add up to")
    target_class = models.CharField(max_length=120, blank=True)
    base_value = models.FloatField(null=True, blank=True)
    feature_names = models.JSONField(default=list, blank=True)
    importance = models.JSONField(default=list, blank=True)
    values = models.JSONField(default=list, blank=True, help_text="SHAP values of the sample")
    rows = models.JSONField(default=list, blank=True, help_text="The sample's inputs")
    outputs = models.JSONField(default=list, blank=True)
    sample_size = models.PositiveIntegerField(default=0)
    background_size = models.PositiveIntegerField(default=0)
    seconds = models.FloatField(default=0.0)
    max_additivity_error = models.FloatField(default=0.0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self):
        return f"explanation of {self.version} ({self.status})"

    def as_dict(self) -> dict:
        return {"importance": self.importance, "target_class": self.target_class,
                "output": self.output}


class InstanceExplanation(models.Model):
    """Predictions and SHAP values for rows someone asked about (``POST
    /api/v1/versions/{id}/explain/``), computed by a worker and kept by input hash so the
    same question is answered once."""

    version = models.ForeignKey(ModelVersion, on_delete=models.CASCADE,
                                related_name="instance_explanations")
    input_hash = models.CharField(max_length=64)
    rows = models.JSONField(default=list)
    status = models.CharField(max_length=16, choices=ExplanationStatus.choices,
                              default=ExplanationStatus.PENDING)
    result = models.JSONField(default=dict, blank=True)
    reason = models.TextField(blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # When a worker was last asked for it: a pending answer queued longer ago than
    # ``services.explanations.LOST_AFTER`` lost its task and is queued again.
    queued_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["version", "input_hash"],
                                               name="instance_explanation_unique_input")]

    def __str__(self):
        return f"explanation of {len(self.rows)} rows by {self.version} ({self.status})"


class MlflowFollow(models.Model):
    """A model following an MLflow registered model by alias or tag (decision 66): each
    version MLflow gives that alias or tag is imported, on MLflow's webhook or by polling.

    The tracking URI passed the private-address rule when it was set; no credentials are
    kept here (the operator's go only to the operator's own server). ``secret`` is the key
    MLflow signs its webhook deliveries with: shown to contributors of the project, who
    give it to MLflow."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE,
                              related_name="mlflow_follows")
    tracking_uri = models.CharField(max_length=300)
    registered_name = models.CharField(max_length=256)
    alias = models.CharField(max_length=64, blank=True)
    tag_key = models.CharField(max_length=250, blank=True)
    tag_value = models.CharField(max_length=500, blank=True)
    secret = models.CharField(max_length=64, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "tracking_uri", "registered_name", "alias", "tag_key",
                        "tag_value"], name="mlflow_follow_unique"),
            # Exactly one of alias and tag says what is followed.
            models.CheckConstraint(
                condition=(~models.Q(alias="") & models.Q(tag_key=""))
                | (models.Q(alias="") & ~models.Q(tag_key="")),
                name="mlflow_follow_alias_or_tag"),
        ]

    def __str__(self):
        return f"{self.model} follows {self.registered_name}{self.selector}"

    @property
    def selector(self) -> str:
        return f"@{self.alias}" if self.alias else f"[{self.tag_key}={self.tag_value}]"


class MlflowImport(models.Model):
    """A model version brought in from MLflow (decision 66): the source asked for, what the
    worker found (run, experiment, flavour, file, dataset inputs) and the version it made.

    One live import per source and model: a second request for the same MLflow version
    while one is pending or done is answered with the first (``mlflow_import_unique_live``);
    a failed one frees the source for another try."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT,
                              related_name="mlflow_imports")
    follow = models.ForeignKey(MlflowFollow, null=True, blank=True, on_delete=models.SET_NULL,
                               related_name="imports")
    tracking_uri = models.CharField(max_length=300)
    # "models:/<name>/<version>" or "runs:/<run id>/<artifact path>" (ops.mlflow.Source.key)
    source = models.CharField(max_length=600)
    status = models.CharField(max_length=10, choices=ImportStatus.choices,
                              default=ImportStatus.PENDING)
    reason = models.TextField(blank=True)
    version = models.OneToOneField(ModelVersion, null=True, blank=True,
                                   on_delete=models.PROTECT, related_name="mlflow_import")
    run_id = models.CharField(max_length=64, blank=True)
    experiment_id = models.CharField(max_length=64, blank=True)
    flavour = models.CharField(max_length=20, blank=True)
    artifact_uri = models.CharField(max_length=600, blank=True)
    # The file as MLflow holds it (a pickle converted to skops keeps its digest here).
    source_sha256 = models.CharField(max_length=64, blank=True)
    datasets = models.JSONField(default=list, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                     on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    # When a worker claimed it (one at a time; a claim older than the task's limit is stale).
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["model", "tracking_uri", "source"],
                                    condition=~models.Q(status=ImportStatus.FAILED),
                                    name="mlflow_import_unique_live"),
        ]

    def __str__(self):
        return f"{self.source} into {self.model}"

    @property
    def run_url(self) -> str:
        """The run's page in MLflow's UI."""
        if not (self.run_id and self.experiment_id):
            return ""
        return (f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id}"
                f"/runs/{self.run_id}")
