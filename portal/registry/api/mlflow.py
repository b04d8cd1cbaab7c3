"""The API of MLflow imports and follows (decision 66): ``POST
/models/{id}/versions/import-mlflow/`` (``MlflowImportActions``, mixed into the models'
viewset), ``/mlflow-imports/``, ``/mlflow-follows/`` and MLflow's webhook receiver."""

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from ops.mlflow import Source, path_refusal
from portal.accounts.services import filter_visible
from portal.api.views import PortalViewSet, validated
from portal.registry import queries
from portal.registry.models import MlflowFollow, MlflowImport, RegisteredModel
from portal.registry.services import mlflow as mlflow_services


class MlflowImportRequestSerializer(serializers.Serializer):
    """A registered model's version (``name`` and ``version``) or a run's model (``run_id``
    and ``artifact_path``) on the tracking server (the operator's when left out)."""

    tracking_uri = serializers.CharField(required=False, allow_blank=True, max_length=300)
    name = serializers.CharField(required=False, allow_blank=True, max_length=256)
    version = serializers.CharField(required=False, allow_blank=True, max_length=20)
    run_id = serializers.RegexField(r"^[0-9a-zA-Z_-]{1,64}$", required=False, allow_blank=True)
    artifact_path = serializers.CharField(required=False, default="model", max_length=200)

    def validate_artifact_path(self, value: str) -> str:
        """The name the run logged its model under: a path inside the run's artifacts."""
        refusal = path_refusal(value)
        if refusal:
            raise serializers.ValidationError(f"the model's name in the run is refused: "
                                              f"{refusal}")
        return value

    def validate(self, data):
        by_version = bool(data.get("name") or data.get("version"))
        by_run = bool(data.get("run_id"))
        if by_version == by_run:
            raise serializers.ValidationError(
                "give either name and version (a registered model's version) or run_id")
        if by_version and not (data.get("name") and str(data.get("version", "")).isdigit()):
            raise serializers.ValidationError(
                {"version": "give the registered model's name and its version number"})
        return data

    def mlflow_source(self) -> Source:
        data = self.validated_data
        if data.get("run_id"):
            return Source("run", run_id=data["run_id"],
                          artifact_path=data.get("artifact_path") or "model")
        return Source("model", name=data["name"], version=str(int(data["version"])))


class MlflowImportSerializer(serializers.ModelSerializer):
    version_number = serializers.IntegerField(source="version.number", read_only=True,
                                              default=None)
    run_url = serializers.CharField(read_only=True)

    class Meta:
        model = MlflowImport
        fields = ["id", "model", "follow", "tracking_uri", "source", "status", "reason",
                  "version", "version_number", "run_id", "experiment_id", "run_url",
                  "flavour", "artifact_uri", "source_sha256", "datasets", "created_at",
                  "finished_at"]
        read_only_fields = fields


class MlflowFollowSerializer(serializers.ModelSerializer):
    webhook_url = serializers.SerializerMethodField()

    class Meta:
        model = MlflowFollow
        fields = ["id", "model", "tracking_uri", "registered_name", "alias", "tag_key",
                  "tag_value", "webhook_url", "last_checked_at", "last_error", "created_at"]
        read_only_fields = ["id", "webhook_url", "last_checked_at", "last_error",
                            "created_at"]
        extra_kwargs = {"tracking_uri": {"required": False, "allow_blank": True},
                        "model": {"queryset": RegisteredModel.objects.all()}}

    def get_webhook_url(self, item) -> str:
        return mlflow_services.webhook_url(item)


class MlflowFollowCreatedSerializer(MlflowFollowSerializer):
    """The follow as created: with the secret to give MLflow's webhook (shown this once)."""

    class Meta(MlflowFollowSerializer.Meta):
        fields = [*MlflowFollowSerializer.Meta.fields, "secret"]
        read_only_fields = fields
        extra_kwargs = {}


class MlflowImportActions:
    """``POST /models/{id}/versions/import-mlflow/`` on the models' viewset."""

    @extend_schema(request=MlflowImportRequestSerializer,
                   responses={202: MlflowImportSerializer, 200: MlflowImportSerializer},
                   summary="Import a version from MLflow")
    @action(detail=True, methods=["post"], url_path="versions/import-mlflow",
            url_name="import-mlflow", filter_backends=[], pagination_class=None)
    def import_mlflow(self, request, pk=None):
        """Queue the import of an MLflow model version (202); a worker downloads, converts
        and registers it, then validates it as any upload. The same MLflow version asked
        again answers the import already made or under way (200): never a second version.
        Poll ``/mlflow-imports/{id}/`` until ``status`` is done (``version``) or failed
        (``reason``)."""
        model = get_object_or_404(queries.visible_models(request.user)
                                  .select_related("project"), pk=pk)
        serializer = MlflowImportRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        item, created = mlflow_services.request_import(
            request.user, model, serializer.mlflow_source(),
            tracking_uri=serializer.validated_data.get("tracking_uri"))
        item = MlflowImport.objects.select_related("version").get(pk=item.pk)
        return Response(MlflowImportSerializer(item).data,
                        status=status.HTTP_202_ACCEPTED if created else status.HTTP_200_OK)


class MlflowImportViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Imports from MLflow into the models you may see, newest first."""

    queryset = MlflowImport.objects.all()
    serializer_class = MlflowImportSerializer
    filterset_fields = ["model", "version", "status"]
    ordering_fields = ["created_at", "id"]

    def scope(self, queryset):
        return filter_visible(queryset.select_related("version"), self.request.user,
                              "model__project")


class MlflowFollowViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                          mixins.DestroyModelMixin, PortalViewSet):
    """MLflow registered models your models follow by alias or tag."""

    throttle_scopes = {"create": "uploads"}  # each follow is polled: not created in bulk

    queryset = MlflowFollow.objects.all()
    serializer_class = MlflowFollowSerializer
    filterset_fields = ["model"]
    ordering_fields = ["created_at", "id"]

    def scope(self, queryset):
        return filter_visible(queryset, self.request.user, "model__project")

    @extend_schema(request=MlflowFollowSerializer, responses={201: MlflowFollowCreatedSerializer})
    def create(self, request):
        """Follow an MLflow registered model (contributors): each version given the alias
        (or the tag) is imported. The answer holds the webhook's secret, shown once: create
        MLflow's webhook (``model_version_alias.created`` or ``model_version_tag.set``) with
        ``webhook_url`` and it; without one, beat polls."""
        data = validated(MlflowFollowSerializer, request.data)
        model = get_object_or_404(queries.visible_models(request.user)
                                  .select_related("project"), pk=data["model"].pk)
        item = mlflow_services.follow(
            request.user, model, registered_name=data["registered_name"],
            alias=data.get("alias", ""), tag_key=data.get("tag_key", ""),
            tag_value=data.get("tag_value", ""), tracking_uri=data.get("tracking_uri"))
        return Response(MlflowFollowCreatedSerializer(item).data,
                        status=status.HTTP_201_CREATED)

    def destroy(self, request, pk=None):
        mlflow_services.unfollow(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class MlflowWebhookResultSerializer(serializers.Serializer):
    queued = serializers.BooleanField()


class MlflowWebhookReceiver(APIView):
    """MLflow's model-registry webhook (MLflow 3.3+), signed with the follow's secret
    (``X-MLflow-Signature``: ``v1,`` base64 HMAC-SHA256 of ``<delivery id>.<timestamp>.<body>``)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: MlflowWebhookResultSerializer})
    def post(self, request, pk: int):
        queued = mlflow_services.receive_webhook(pk, request.headers, request.body)
        return Response({"queued": queued})
