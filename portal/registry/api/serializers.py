import json
from functools import cache

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.accounts.choices import Role
from portal.accounts.services import role_in
from portal.api.fields import ReferenceField
from portal.api.parsers import NUL_REFUSED, contains_nul
from portal.api.serializers import CreatedByField, read_only_with
from portal.registry.choices import (
    DatasetPurpose,
    EvaluationStatus,
    ExplanationStatus,
    Task,
)
from portal.registry.models import Alias, Dataset, ModelVersion, Project, RegisteredModel


class ProjectSerializer(serializers.ModelSerializer):
    role = serializers.SerializerMethodField()
    model_count = serializers.IntegerField(read_only=True)
    archived_by = serializers.CharField(source="archived_by.username", read_only=True,
                                        default=None, allow_null=True,
                                        help_text="Who archived it (null: not archived)")

    class Meta:
        model = Project
        fields = ["id", "name", "slug", "description", "allow_unsafe_artifacts", "created_at",
                  "model_count", "role", "archived_at", "archived_by"]
        read_only_fields = ["id", "created_at", "model_count", "role", "archived_at"]
        extra_kwargs = {"slug": {"validators": []}}

    @extend_schema_field(serializers.ChoiceField(choices=Role.choices, allow_null=True))
    def get_role(self, project) -> str | None:
        return role_in(self.context["request"].user, project)


class ProjectUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["name", "description", "allow_unsafe_artifacts"]


class AliasSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    version_id = serializers.IntegerField(read_only=True)

    class Meta:
        model = Alias
        fields = ["name", "version", "version_id", "updated_at"]


class AliasSetSerializer(serializers.Serializer):
    version = serializers.IntegerField(help_text="Version number of this model", min_value=1)


class RegisteredModelSerializer(serializers.ModelSerializer):
    project = ReferenceField(queryset=Project.objects.all())
    project_slug = serializers.CharField(source="project.slug", read_only=True)
    created_by = CreatedByField()
    latest_version = serializers.IntegerField(read_only=True, allow_null=True)
    version_count = serializers.IntegerField(read_only=True, allow_null=True)
    aliases = AliasSerializer(many=True, read_only=True)
    task = serializers.ChoiceField(choices=Task.choices)
    archived_by = serializers.CharField(source="archived_by.username", read_only=True,
                                        default=None, allow_null=True,
                                        help_text="Who archived it (null: not archived)")

    class Meta:
        model = RegisteredModel
        fields = ["id", "project", "project_slug", "name", "task", "description", "created_at",
                  "created_by", "latest_version", "version_count", "aliases", "archived_at",
                  "archived_by"]
        read_only_fields = ["id", "created_at", "archived_at"]
        validators = []


class ModelUpdateSerializer(serializers.Serializer):
    description = serializers.CharField(allow_blank=True)


@cache
def _artifact_url_pattern() -> str:
    # reverse() once per process, not once per row: it was a fifth of a page's serializing.
    return reverse("api:version-artifact", args=[0]).replace("/0/", "/{}/")


def artifact_url(pk: int) -> str:
    return _artifact_url_pattern().format(pk)


class DatasetRefSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    sha256 = serializers.CharField()


class ModelVersionSerializer(serializers.ModelSerializer):
    model_name = serializers.CharField(source="model.name", read_only=True)
    project = serializers.IntegerField(source="model.project_id", read_only=True)
    project_slug = serializers.CharField(source="model.project.slug", read_only=True)
    artifact = serializers.SerializerMethodField()
    dataset = serializers.SerializerMethodField()
    code = serializers.SerializerMethodField()
    parent = serializers.SerializerMethodField()
    tags = serializers.SerializerMethodField()
    aliases = serializers.SerializerMethodField()
    created_by = CreatedByField()

    class Meta:
        model = ModelVersion
        fields = ["id", "model", "model_name", "project", "project_slug", "number", "label",
                  "description", "status", "status_reason", "artifact", "framework", "estimator",
                  "classes", "input_schema", "schema_source", "output_schema", "metrics",
                  "params", "dataset", "code", "parent", "tags", "aliases", "created_at",
                  "created_by", "validated_at"]
        read_only_fields = fields
        extra_kwargs = {"schema_source": {"help_text": "Where the input schema came from: "
                                          "declared by the uploader, or filled in by the "
                                          "portal from the artifact, the parent or the "
                                          "dataset"}}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_artifact(self, v) -> dict:
        return {"sha256": v.artifact_sha256, "size": v.artifact_size, "format": v.artifact_format,
                "unsafe": v.is_unsafe, "download": artifact_url(v.pk)}

    @extend_schema_field(DatasetRefSerializer(allow_null=True))
    def get_dataset(self, v):
        d = v.dataset
        return {"id": d.pk, "name": d.name, "sha256": d.sha256} if d else None

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_code(self, v) -> dict:
        return {"repository": v.code_repository, "commit": v.code_commit}

    @extend_schema_field({"type": "object", "nullable": True,
                          "properties": {"id": {"type": "integer"},
                                         "number": {"type": "integer"}}})
    def get_parent(self, v):
        return {"id": v.parent_id, "number": v.parent.number} if v.parent_id else None

    def get_tags(self, v) -> list[str]:
        return sorted(t.name for t in v.tags.all())

    def get_aliases(self, v) -> list[str]:
        return sorted(a.name for a in v.aliases.all())

    def to_representation(self, v) -> dict:
        """The same document the declared fields describe, built directly.

        Version lists are the API's hottest path: DRF's per-field machinery cost about 0.4 ms
        a row (20 ms of a 50-row page, measured by benchmarks/registry_api.py); this costs a
        tenth of it. The declared fields stay the schema; a test checks both agree.
        """
        model = v.model
        return {
            "id": v.pk, "model": v.model_id, "model_name": model.name,
            "project": model.project_id, "project_slug": model.project.slug,
            "number": v.number, "label": v.label, "description": v.description,
            "status": v.status, "status_reason": v.status_reason,
            "artifact": self.get_artifact(v), "framework": v.framework,
            "estimator": v.estimator, "classes": v.classes, "input_schema": v.input_schema,
            "schema_source": v.schema_source, "output_schema": v.output_schema, "metrics": v.metrics, "params": v.params,
            "dataset": self.get_dataset(v), "code": self.get_code(v),
            "parent": self.get_parent(v), "tags": self.get_tags(v),
            "aliases": self.get_aliases(v), "created_at": iso_datetime(v.created_at),
            "created_by": v.created_by.username if v.created_by_id else None,
            "validated_at": iso_datetime(v.validated_at),
        }


def iso_datetime(value):
    """ISO 8601 as DRF writes it (UTC as ``Z``)."""
    if value is None:
        return None
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


class VersionCreateSerializer(serializers.Serializer):
    """Multipart form: the artifact file and a JSON metadata document."""

    artifact = serializers.FileField(
        help_text="skops file, XGBoost JSON/UBJSON, LightGBM text model or ONNX model (told "
                  "from the bytes); pickle/joblib only if the project allows it")
    # Its keys are declared by portal.registry.metadata.VersionMetadataSerializer, which
    # services.register_version runs on it (and on the upload form's document alike).
    metadata = serializers.CharField(
        help_text='JSON: {"input_schema": [{"name": "x", "type": "double"}], "metrics": {...}, '
                  '"params": {...}, "dataset": id-or-name, "code": {"repository": ..., "commit": '
                  '...}, "parent": 2, "tags": [...], "label": "1.2.0", "description": ...}')

    def validate_metadata(self, value):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as e:
            raise serializers.ValidationError(f"metadata is not valid JSON: {e}") from e
        if contains_nul(parsed):
            raise serializers.ValidationError(f"metadata: {NUL_REFUSED}")
        return parsed


class DatasetSerializer(serializers.ModelSerializer):
    project_slug = serializers.CharField(source="project.slug", read_only=True)
    created_by = CreatedByField()
    archived_by = serializers.CharField(source="archived_by.username", read_only=True,
                                        default=None, allow_null=True,
                                        help_text="Who archived it (null: not archived)")

    class Meta:
        model = Dataset
        # No "uri": where the store keeps the file is the server's business; datasets are
        # addressed by id (issue 18).
        fields = ["id", "project", "project_slug", "name", "description", "sha256", "size",
                  "format", "target", "purpose", "model", "rows", "columns", "profile_status",
                  "profile_reason", "created_at", "created_by", "archived_at", "archived_by"]
        read_only_fields = fields


class DatasetDetailSerializer(DatasetSerializer):
    Meta = read_only_with(DatasetSerializer, "profile")


class DatasetCreateSerializer(serializers.Serializer):
    project = ReferenceField(queryset=Project.objects.all())
    name = serializers.CharField(max_length=100)
    file = serializers.FileField(help_text="CSV with a header row, or Parquet")
    target = serializers.CharField(required=False, allow_blank=True, default="")
    purpose = serializers.ChoiceField(
        choices=DatasetPurpose.choices, default=DatasetPurpose.REFERENCE,
        help_text="evaluation: held out, with the label (target) column of `model`; every "
                  "version of it whose inputs it holds is measured on it and gates judge the "
                  "measured figures (approvers upload these)")
    model = ReferenceField(queryset=RegisteredModel.objects.all(), required=False,
                           allow_null=True, default=None,
                           help_text="the model an evaluation dataset measures")
    description = serializers.CharField(required=False, allow_blank=True, default="")


class EvaluationSerializer(serializers.Serializer):
    """A version measured on an evaluation dataset (``status`` pending, ready or failed)."""

    dataset = DatasetRefSerializer(read_only=True)
    # Named in ENUM_NAME_OVERRIDES: a second "status" enum renames no other.
    status = serializers.ChoiceField(choices=EvaluationStatus.choices, read_only=True,
                                     help_text="pending (being measured), ready (measured) or "
                                               "failed (see reason)")
    reason = serializers.CharField(read_only=True)
    metrics = serializers.DictField(child=serializers.FloatField(), read_only=True,
                                    help_text="measured on the dataset's rows against its label")
    rows = serializers.IntegerField(read_only=True, allow_null=True)
    computed_at = serializers.DateTimeField(read_only=True, allow_null=True)

    def to_representation(self, evaluation) -> dict:
        d = evaluation.dataset
        return {"dataset": {"id": d.pk, "name": d.name, "sha256": d.sha256},
                "status": evaluation.status, "reason": evaluation.reason,
                "metrics": evaluation.metrics, "rows": evaluation.rows,
                "computed_at": iso_datetime(evaluation.computed_at)}


class LineageSerializer(serializers.Serializer):
    version = serializers.IntegerField()
    nodes = serializers.ListField(child=serializers.DictField())
    edges = serializers.ListField(child=serializers.DictField())


class ExplanationSerializer(serializers.Serializer):
    status = serializers.ChoiceField(choices=ExplanationStatus.choices)
    reason = serializers.CharField()
    method = serializers.CharField(help_text="tree, linear or permutation")
    output = serializers.CharField(help_text="What base_value + SHAP values add up to")
    target_class = serializers.CharField()
    base_value = serializers.FloatField(allow_null=True)
    importance = serializers.ListField(child=serializers.DictField(),
                                       help_text="mean |SHAP|, its spread and direction per "
                                                 "feature, most important first")
    summary = serializers.CharField(help_text="In plain words")
    sample_size = serializers.IntegerField()
    background_size = serializers.IntegerField()
    seconds = serializers.FloatField()
    max_additivity_error = serializers.FloatField()
    feature_names = serializers.ListField(child=serializers.CharField())
    values = serializers.ListField(required=False, help_text="Only with ?values=1")
    rows = serializers.ListField(required=False, help_text="Only with ?values=1")


class ExplainRequestSerializer(serializers.Serializer):
    instances = serializers.ListField(
        min_length=1,
        help_text="Rows to explain (at most 100): lists of numbers in the order of the "
                  "input schema, or objects keyed by feature name")


class InstanceExplanationSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    status = serializers.ChoiceField(choices=ExplanationStatus.choices,
                                     help_text="pending, ready or failed")
    reason = serializers.CharField()
    result = serializers.DictField(help_text="predictions, outputs (what the values add up "
                                             "to), base_value, feature_names, values (one "
                                             "row per instance), method, background")
    created_at = serializers.DateTimeField()
    finished_at = serializers.DateTimeField(allow_null=True)
