from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.api.archive import ArchiveActions
from portal.api.views import PortalViewSet, validated
from portal.releases import archive, deployments, queries, services
from portal.releases.api.serializers import (
    ApprovalRequestSerializer,
    DeploymentDetailSerializer,
    DeploymentSerializer,
    EnvironmentDetailSerializer,
    EnvironmentSerializer,
    EnvironmentUpdateSerializer,
    ReviewInputSerializer,
)
from portal.releases.choices import Decision
from portal.releases.filtersets import (
    ApprovalRequestFilterSet,
    DeploymentFilterSet,
    EnvironmentFilterSet,
)


class EnvironmentViewSet(ArchiveActions, mixins.ListModelMixin, mixins.RetrieveModelMixin,
                         PortalViewSet):
    """Deployment targets and their protection rules (owners create, change and archive
    them)."""

    archive_service = staticmethod(archive.archive_environment)
    restore_service = staticmethod(archive.restore_environment)
    archived_lookups = ("archived_at", "project__archived_at")

    serializer_class = EnvironmentSerializer
    filterset_class = EnvironmentFilterSet
    ordering_fields = ["name", "created_at"]
    visible = staticmethod(queries.environments_for)

    def get_serializer_class(self):
        # Only one environment asks its backend what serves: lists stay cheap.
        return EnvironmentDetailSerializer if self.action == "retrieve" else EnvironmentSerializer

    def create(self, request):
        data = validated(EnvironmentSerializer, request.data)
        project = data.pop("project")
        environment = services.create_environment(request.user, project, **data)
        return Response(EnvironmentSerializer(environment).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=EnvironmentUpdateSerializer, responses=EnvironmentSerializer)
    def partial_update(self, request, pk=None):
        environment = self.get_object()
        data = validated(EnvironmentUpdateSerializer, request.data, partial=True)
        services.update_environment(request.user, environment, **data)
        return Response(EnvironmentSerializer(environment).data)


class ApprovalRequestViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Release requests; approvers approve or reject them with a comment."""

    # Token scopes of these actions: ROUTE_SCOPES in portal/api/urls.py ("approval-request").

    serializer_class = ApprovalRequestSerializer
    filterset_class = ApprovalRequestFilterSet
    ordering_fields = ["created_at", "id"]
    visible = staticmethod(queries.requests_for)

    def create(self, request):
        data = validated(ApprovalRequestSerializer, request.data)
        approval = services.request_approval(
            request.user, data["version"], data["environment"], strategy=data["strategy"],
            strategy_params=data.get("strategy_params"), reason=data.get("reason", ""),
            breaking_change=data.get("breaking_change", False))
        return Response(self.get_serializer(self.get_queryset().get(pk=approval.pk)).data,
                        status=status.HTTP_201_CREATED)

    def _review(self, request, decision):
        approval = self.get_object()
        data = validated(ReviewInputSerializer, request.data)
        services.review(request.user, approval, decision, data["comment"],
                        acknowledge_breaking_change=data["acknowledge_breaking_change"])
        return Response(self.get_serializer(self.get_queryset().get(pk=approval.pk)).data)

    @extend_schema(request=ReviewInputSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def approve(self, request, pk=None):
        return self._review(request, Decision.APPROVE)

    @extend_schema(request=ReviewInputSerializer, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def reject(self, request, pk=None):
        return self._review(request, Decision.REJECT)

    @extend_schema(request=None, responses=ApprovalRequestSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request, pk=None):
        services.cancel_request(request.user, self.get_object())
        return Response(self.get_serializer(self.get_queryset().get(pk=pk)).data)


def _command_action(name: str):
    """The viewset's POST action ``name``: that command to the rollout (a person's pause,
    resume, promote, rollback or keep), answered with the deployment as it is then."""
    def command(self, request, pk=None):
        return self._command(request, name)

    command.__name__ = name  # the action's name: its URL, its route and its token scope
    return extend_schema(request=None, responses=DeploymentDetailSerializer)(
        action(detail=True, methods=["post"], filter_backends=[])(command))


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Rollouts: progress, every analysis, and the commands people may give."""

    # Token scopes of these actions: ROUTE_SCOPES in portal/api/urls.py ("deployment").

    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilterSet
    ordering_fields = ["created_at", "id"]
    visible = staticmethod(queries.deployments_for)

    def get_serializer_class(self):
        return DeploymentDetailSerializer if self.action != "list" else DeploymentSerializer

    def _command(self, request, name):
        comment = request.data.get("comment", "") if hasattr(request.data, "get") else ""
        deployment = deployments.command(request.user, self.get_object(), name,
                                         comment=comment if isinstance(comment, str) else "")
        return Response(DeploymentDetailSerializer(
            self.get_queryset().prefetch_related("events").get(pk=deployment.pk)).data)

    pause = _command_action("pause")
    resume = _command_action("resume")
    promote = _command_action("promote")
    rollback = _command_action("rollback")
    keep = _command_action("keep")
