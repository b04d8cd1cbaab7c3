"""The API of multi-model endpoints (decision 68): ``/api/v1/multimodel-endpoints/``; owners
create them and add or remove members (``members``, ``members/<id>``), anyone in the project
reads them."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.accounts.services import filter_visible
from portal.api.fields import ReferenceField
from portal.api.views import PortalViewSet, validated
from portal.registry.models import ModelVersion, RegisteredModel
from portal.releases import multimodel
from portal.releases.models import Environment, MultiModelEndpoint, MultiModelMember


class MultiModelMemberSerializer(serializers.ModelSerializer):
    model = ReferenceField(queryset=RegisteredModel.objects.all())
    model_name = serializers.CharField(source="model.name", read_only=True,
                                       help_text="The name requests use for it")
    version = ReferenceField(queryset=ModelVersion.objects.all(), required=False,
                             allow_null=True, help_text="A pinned version (or give an alias)")
    alias = serializers.CharField(required=False, allow_blank=True, default="",
                                  help_text="The alias to follow (or give a version)")

    class Meta:
        model = MultiModelMember
        fields = ["id", "model", "model_name", "alias", "version", "memory_bytes", "added_at"]
        read_only_fields = ["id", "memory_bytes", "added_at"]


class MultiModelEndpointSerializer(serializers.ModelSerializer):
    environment = ReferenceField(queryset=Environment.objects.all())
    members = MultiModelMemberSerializer(many=True, read_only=True)
    backend_endpoint = serializers.CharField(read_only=True,
                                             help_text="Its name on the platform")

    class Meta:
        model = MultiModelEndpoint
        fields = ["id", "environment", "name", "memory_budget_mb", "top_models",
                  "generation", "applied", "status_detail", "backend_endpoint", "port",
                  "members", "created_at"]
        read_only_fields = ["id", "generation", "applied", "status_detail", "port",
                            "created_at"]
        validators = []


def endpoints_for(user):
    return (filter_visible(MultiModelEndpoint.objects.all(), user, "environment__project")
            .select_related("environment__project")
            .prefetch_related("members__model"))


class MultiModelEndpointViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                                PortalViewSet):
    """Multi-model endpoints: many models served by one model server, loaded on demand."""

    serializer_class = MultiModelEndpointSerializer
    ordering_fields = ["name", "created_at"]
    visible = staticmethod(endpoints_for)

    def create(self, request):
        data = validated(MultiModelEndpointSerializer, request.data)
        endpoint = multimodel.create_endpoint(
            request.user, data["environment"], name=data["name"],
            memory_budget_mb=data["memory_budget_mb"], top_models=data.get("top_models", 20))
        return Response(self.get_serializer(self.get_queryset().get(pk=endpoint.pk)).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=MultiModelMemberSerializer,
                   responses={201: MultiModelMemberSerializer})
    @action(detail=True, methods=["post"])
    def members(self, request, pk=None):
        endpoint = self.get_object()
        data = validated(MultiModelMemberSerializer, request.data)
        member = multimodel.add_member(request.user, endpoint, data["model"],
                                       alias=data.get("alias", ""),
                                       version=data.get("version"))
        return Response(MultiModelMemberSerializer(member).data,
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"members/(?P<member_id>\d+)")
    def member(self, request, pk=None, member_id=None):
        multimodel.remove_member(request.user, self.get_object(), int(member_id))
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=MultiModelEndpointSerializer)
    @action(detail=True, methods=["post"])
    def apply(self, request, pk=None):
        endpoint = multimodel.reapply(request.user, self.get_object())
        return Response(self.get_serializer(self.get_queryset().get(pk=endpoint.pk)).data)
