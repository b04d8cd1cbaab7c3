from django.conf import settings
from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.exceptions import UnsupportedMediaType, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response

from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.api.archive import ArchiveActions
from portal.api.pagination import VersionCursorPagination
from portal.api.permissions import APPROVE, WRITE
from portal.api.views import PortalViewSet, validated
from portal.errors import NotFound, PayloadTooLarge, ValidationFailed
from portal.registry import queries, services
from portal.registry.api import documents
from portal.registry.api.mlflow import MlflowImportActions
from portal.registry.api.serializers import (
    AliasSerializer,
    AliasSetSerializer,
    DatasetCreateSerializer,
    DatasetDetailSerializer,
    DatasetSerializer,
    EvaluationSerializer,
    ExplainRequestSerializer,
    ExplanationSerializer,
    InstanceExplanationSerializer,
    LineageSerializer,
    ModelUpdateSerializer,
    ModelVersionSerializer,
    ProjectSerializer,
    ProjectUpdateSerializer,
    RegisteredModelSerializer,
    VersionCreateSerializer,
)
from portal.registry.filtersets import (
    DatasetFilterSet,
    ModelVersionFilterSet,
    ProjectFilterSet,
    RegisteredModelFilterSet,
)
from portal.registry.models import Alias, Explanation, InstanceExplanation
from portal.registry.storage import get_store

# Room for the multipart envelope and the metadata field around the file itself.
MULTIPART_OVERHEAD = 1024 * 1024


def check_upload_size(request, limit: int) -> None:
    """Refuse an oversized upload from its Content-Length, before reading the body."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > limit + MULTIPART_OVERHEAD:
        raise PayloadTooLarge(f"the upload is {length} bytes; the limit is {limit} bytes")


class ProjectViewSet(ArchiveActions, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     PortalViewSet):
    """Projects you are a member of (staff see all); archived ones with ``?archived=true``."""

    archive_service = staticmethod(services.archive_project)  # owners
    restore_service = staticmethod(services.restore_project)

    serializer_class = ProjectSerializer
    filterset_class = ProjectFilterSet
    search_fields = ["name", "slug", "description"]
    ordering_fields = ["name", "created_at"]
    visible = staticmethod(queries.projects_for)

    def create(self, request):
        data = validated(ProjectSerializer, request.data, context={"request": request})
        project = services.create_project(request.user, name=data["name"], slug=data["slug"],
                                          description=data.get("description", ""),
                                          allow_unsafe_artifacts=data.get(
                                              "allow_unsafe_artifacts", False))
        project = self.get_queryset().get(pk=project.pk)
        return Response(self.get_serializer(project).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer)
    def partial_update(self, request, pk=None):
        project = self.get_object()
        data = validated(ProjectUpdateSerializer, request.data, partial=True)
        services.update_project(request.user, project, **data)
        return Response(self.get_serializer(self.get_queryset().get(pk=project.pk)).data)


def alias_scope(kwargs) -> str:
    """The token scope moving or removing an alias needs (``ROUTE_SCOPES``, "model"): a
    protected alias (``champion``: what production serves) is an approver's act; other
    aliases are a contributor's."""
    return APPROVE if kwargs.get("alias") in services.PROTECTED_ALIASES else WRITE


class RegisteredModelViewSet(ArchiveActions, MlflowImportActions, mixins.ListModelMixin,
                             mixins.RetrieveModelMixin, PortalViewSet):
    """Registered models and, nested under each, its versions and aliases."""

    archive_service = staticmethod(services.archive_model)  # contributors; restore: owners
    restore_service = staticmethod(services.restore_model)
    archived_lookups = ("archived_at", "project__archived_at")

    # POST: a new version, uploaded or imported from MLflow (reads are not limited).
    throttle_scopes = {"versions": "uploads", "import_mlflow": "uploads"}

    # Token scopes of these actions: ROUTE_SCOPES in portal/api/urls.py ("model"). Its
    # monitoring thresholds (models/<id>/monitoring/) are portal.monitoring.api's.

    serializer_class = RegisteredModelSerializer
    filterset_class = RegisteredModelFilterSet
    search_fields = ["name", "description", "project__name"]
    ordering_fields = ["name", "created_at", "id"]
    visible = staticmethod(queries.models_for)

    def list(self, request):
        # The document RegisteredModelSerializer describes, built from rows (decision 64).
        page = self.paginate_queryset(documents.model_rows(self.filter_queryset(
            self.get_queryset())))
        return self.get_paginated_response(documents.models(page))

    def create(self, request):
        data = validated(RegisteredModelSerializer, request.data,
                              context={"request": request})
        model = services.create_model(request.user, data["project"], name=data["name"],
                                      task=data["task"],
                                      description=data.get("description", ""))
        return Response(self.get_serializer(self.get_queryset().get(pk=model.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=ModelUpdateSerializer, responses=RegisteredModelSerializer)
    def partial_update(self, request, pk=None):
        model = self.get_object()
        data = validated(ModelUpdateSerializer, request.data)
        services.update_model(request.user, model, description=data["description"])
        return Response(self.get_serializer(self.get_queryset().get(pk=model.pk)).data)

    @extend_schema(methods=["GET"], responses=ModelVersionSerializer(many=True),
                   summary="List the versions of a model")
    @extend_schema(methods=["POST"], request={"multipart/form-data": VersionCreateSerializer},
                   responses={201: ModelVersionSerializer}, summary="Register a new version")
    @action(detail=True, methods=["get", "post"], filter_backends=[],
            parser_classes=[MultiPartParser], pagination_class=VersionCursorPagination,
            serializer_class=ModelVersionSerializer)
    def versions(self, request, pk=None):
        model = get_object_or_404(queries.visible_models(request.user).select_related("project"),
                                  pk=pk)
        if request.method == "GET":
            filterset = ModelVersionFilterSet(
                request.query_params, request=request,
                queryset=queries.visible_versions(request.user).filter(model=model))
            if not filterset.is_valid():
                raise ValidationError(filterset.errors)
            page = self.paginate_queryset(documents.version_rows(filterset.qs))
            return self.get_paginated_response(documents.versions(page))
        require_role(request.user, model.project, Role.CONTRIBUTOR, "register versions")
        check_upload_size(request, settings.MODELGATE_MAX_ARTIFACT_BYTES)
        data = validated(VersionCreateSerializer, request.data)
        version = services.register_version(request.user, model, data["artifact"],
                                             data["metadata"])
        version = queries.versions_for(request.user).get(pk=version.pk)
        return Response(ModelVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(responses=AliasSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])
    def aliases(self, request, pk=None):
        model = self.get_object()
        aliases = Alias.objects.filter(model=model).select_related("version")
        return Response(AliasSerializer(aliases, many=True).data)

    @extend_schema(methods=["PUT"], request=AliasSetSerializer, responses=AliasSerializer)
    @extend_schema(methods=["DELETE"], request=None, responses={204: None})
    @action(detail=True, methods=["put", "delete"], url_path=r"aliases/(?P<alias>[a-z0-9._-]+)",
            filter_backends=[])
    def alias(self, request, pk=None, alias=None):
        model = self.get_object()
        if request.method == "DELETE":
            services.delete_alias(request.user, get_object_or_404(Alias, model=model, name=alias))
            return Response(status=status.HTTP_204_NO_CONTENT)
        data = validated(AliasSetSerializer, request.data)
        version = model.versions.filter(number=data["version"]).first()
        if version is None:
            raise ValidationFailed(f"{model.name} has no version {data['version']}",
                                   field="version")
        result = services.set_alias(request.user, model, alias, version)
        return Response(AliasSerializer(result).data)


class ModelVersionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Every version you may see, with filters; artifacts and lineage per version."""

    throttle_scopes = {"explain": "explain"}

    serializer_class = ModelVersionSerializer
    filterset_class = ModelVersionFilterSet
    pagination_class = VersionCursorPagination
    search_fields = ["model__name", "label", "description"]
    ordering_fields = ["created_at", "number", "id"]
    visible = staticmethod(queries.versions_for)

    def list(self, request):
        # The document ModelVersionSerializer describes, built from rows (decision 64).
        # Of the versions visible, not get_queryset's: its joins and prefetches are dropped.
        page = self.paginate_queryset(documents.version_rows(self.filter_queryset(
            queries.visible_versions(request.user))))
        return self.get_paginated_response(documents.versions(page))

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiResponse(
        description="The artifact file, exactly as uploaded")})
    @action(detail=True, methods=["get"], filter_backends=[])
    def artifact(self, request, pk=None):
        version = self.get_object()
        handle = get_store().open(version.artifact_uri)
        # The stored key ends with what the framework saves the file as (.ubj or .json...).
        suffix = version.artifact_uri.rpartition(".")[2] or version.artifact_format
        response = FileResponse(
            handle, as_attachment=True, content_type="application/octet-stream",
            filename=f"{version.model.name}-v{version.number}.{suffix}")
        response["X-Checksum-SHA256"] = version.artifact_sha256
        return response

    @extend_schema(responses=LineageSerializer)
    @action(detail=True, methods=["get"], filter_backends=[])
    def lineage(self, request, pk=None):
        return Response(services.lineage(self.get_object()))

    @extend_schema(responses=EvaluationSerializer(many=True))
    @action(detail=True, methods=["get"], filter_backends=[], pagination_class=None)
    def evaluations(self, request, pk=None):
        """The version measured on each evaluation dataset of its project (newest first):
        the metrics a worker computed against the held-out labels, beside those declared."""
        version = self.get_object()
        found = version.evaluations.select_related("dataset")
        return Response(EvaluationSerializer(found, many=True).data)

    @extend_schema(responses=ExplanationSerializer,
                   parameters=[OpenApiParameter("values", bool,
                                                description="include the sample's SHAP values")])
    @action(detail=True, methods=["get"], filter_backends=[])
    def explanation(self, request, pk=None):
        """The version's SHAP explanation (404 until a worker has started one)."""
        from explainability.shap_values import plain_summary

        version = self.get_object()
        explanation = Explanation.objects.filter(version=version).first()
        if explanation is None:
            raise NotFound("no explanation yet: a worker computes one for every ready version",
                           code="no_explanation")
        data = {field: getattr(explanation, field) for field in (
            "status", "reason", "method", "output", "target_class", "base_value", "importance",
            "sample_size", "background_size", "seconds", "max_additivity_error",
            "feature_names")}
        data["summary"] = plain_summary(explanation.as_dict(), version.model.task,
                                        version.class_labels)
        if request.query_params.get("values") in ("1", "true"):
            data.update(values=explanation.values, rows=explanation.rows)
        return Response(ExplanationSerializer(data).data)

    @extend_schema(request=ExplainRequestSerializer,
                   responses={200: InstanceExplanationSerializer,
                              202: InstanceExplanationSerializer})
    @action(detail=True, methods=["post"], filter_backends=[])
    def explain(self, request, pk=None):
        """Predictions and SHAP values for up to 100 rows. 200 with the answer when it is
        known (the same rows were asked before, or it was quick); 202 while a worker
        computes it: GET the ``Location`` until ``status`` is ready or failed."""
        data = validated(ExplainRequestSerializer, request.data)
        version = self.get_object()
        item = services.request_instance_explanation(request.user, version, data["instances"])
        item.refresh_from_db()
        body = InstanceExplanationSerializer(item).data
        if item.status == "pending":
            response = Response(body, status=status.HTTP_202_ACCEPTED)
            response["Location"] = f"/api/v1/versions/{version.pk}/explain/{item.pk}/"
            return response
        return Response(body)

    @extend_schema(responses=InstanceExplanationSerializer)
    @action(detail=True, methods=["get"], filter_backends=[],
            url_path=r"explain/(?P<explanation_id>[0-9]+)")
    def explain_result(self, request, pk=None, explanation_id=None):
        version = self.get_object()
        item = InstanceExplanation.objects.filter(version=version, pk=explanation_id).first()
        if item is None:
            raise NotFound("no such explanation request for this version")
        return Response(InstanceExplanationSerializer(item).data)

    @extend_schema(request=None, responses=ModelVersionSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def archive(self, request, pk=None):
        version = services.archive_version(request.user, self.get_object())
        return Response(self.get_serializer(self.get_queryset().get(pk=version.pk)).data)

    @extend_schema(request=None, responses=ModelVersionSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def restore(self, request, pk=None):
        """Bring an archived version back with the status it had (owners); 409 when its
        artifact or label was registered again meanwhile."""
        version = services.restore_version(request.user, self.get_object())
        return Response(self.get_serializer(self.get_queryset().get(pk=version.pk)).data)


class DatasetViewSet(ArchiveActions, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                     PortalViewSet):
    """Reference datasets and their baseline profiles."""

    archive_service = staticmethod(services.archive_dataset)  # contributors; restore: owners
    restore_service = staticmethod(services.restore_dataset)
    archived_lookups = ("archived_at", "project__archived_at")

    throttle_scopes = {"create": "uploads"}

    serializer_class = DatasetSerializer
    filterset_class = DatasetFilterSet
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "id"]
    visible = staticmethod(queries.datasets_for)

    def get_serializer_class(self):
        return DatasetDetailSerializer if self.action == "retrieve" else DatasetSerializer

    def get_parsers(self):
        # Creating a dataset is an upload (multipart); every other action takes JSON. The
        # parsers are chosen before DRF sets ``action``, so the route's map names it.
        method = getattr(getattr(self, "request", None), "method", "") or ""
        action_name = getattr(self, "action", None) or \
            getattr(self, "action_map", {}).get(method.lower())
        return [MultiPartParser()] if action_name == "create" else super().get_parsers()

    @extend_schema(request={"multipart/form-data": DatasetCreateSerializer},
                   responses={201: DatasetDetailSerializer})
    def create(self, request):
        check_upload_size(request, settings.MODELGATE_MAX_DATASET_BYTES)
        if not request.content_type.startswith("multipart/form-data"):
            raise UnsupportedMediaType(request.content_type)
        data = validated(DatasetCreateSerializer, request.data)
        dataset = services.upload_dataset(
            request.user, data["project"], name=data["name"], file=data["file"],
            filename=data["file"].name, target=data["target"], purpose=data["purpose"],
            model=data["model"], description=data["description"])
        dataset = self.get_queryset().get(pk=dataset.pk)
        return Response(DatasetDetailSerializer(dataset).data, status=status.HTTP_201_CREATED)

