import hmac

from django.conf import settings
from drf_spectacular.utils import OpenApiTypes, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api.schema import ErrorSerializer
from portal.api.views import PortalViewSet, validated
from portal.errors import NotAllowed, ServiceUnavailable
from portal.monitoring import alerts, queries
from portal.monitoring import services as monitoring
from portal.monitoring.api.serializers import (
    AcknowledgeSerializer,
    AlertmanagerResultSerializer,
    AlertSerializer,
    MonitorSettingsSerializer,
    SilenceSerializer,
)
from portal.monitoring.choices import AlertSource
from portal.monitoring.filtersets import AlertFilterSet
from portal.releases.api import registry  # the registry's, with serving now


class AlertViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Alerts from Prometheus on your projects' endpoints: firing first, then by severity.

    Filter with ``?project=<slug>&model=&environment=&severity=&state=``. Contributors
    acknowledge and silence them (audited).
    """

    serializer_class = AlertSerializer
    filterset_class = AlertFilterSet
    search_fields = ["name", "endpoint", "feature"]
    ordering_fields = ["starts_at", "severity", "state"]
    visible = staticmethod(queries.alerts_for)

    def _fresh(self, alert):
        return AlertSerializer(self.get_queryset().get(pk=alert.pk)).data

    @extend_schema(request=AcknowledgeSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def acknowledge(self, request, pk=None):
        data = validated(AcknowledgeSerializer, request.data)
        return Response(self._fresh(alerts.acknowledge(request.user, self.get_object(),
                                                       data["comment"])))

    @extend_schema(request=SilenceSerializer, responses=AlertSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def silence(self, request, pk=None):
        data = validated(SilenceSerializer, request.data)
        return Response(self._fresh(alerts.silence(request.user, self.get_object(),
                                                   until=data["until"], reason=data["reason"])))

    @extend_schema(request=None, responses=AlertSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def unsilence(self, request, pk=None):
        return Response(self._fresh(alerts.unsilence(request.user, self.get_object())))


class RegisteredModelViewSet(registry.RegisteredModelViewSet):
    """Registered models and, nested under each, its versions and aliases."""

    # The registry's model routes (/api/v1/models/, basename "model"), and each model's
    # monitoring thresholds, which are monitoring's: the router serves this class. Same
    # name and description as the registry's, so the API's pages and OPTIONS say the same.

    @extend_schema(methods=["GET"], responses=MonitorSettingsSerializer,
                   summary="Monitoring thresholds of a model")
    @extend_schema(methods=["PATCH"], request=MonitorSettingsSerializer,
                   responses=MonitorSettingsSerializer,
                   summary="Change monitoring thresholds (approvers)")
    @action(detail=True, methods=["get", "patch"], url_path="monitoring", filter_backends=[])
    def monitoring(self, request, pk=None):
        """Alert and drift thresholds used for this model in every environment."""
        model = self.get_object()
        if request.method == "PATCH":
            data = validated(MonitorSettingsSerializer, request.data, partial=True)
            data.pop("effective_drift", None)
            monitoring.update_settings(request.user, model, **data)
        return Response(MonitorSettingsSerializer(monitoring.settings_of(model)).data)


class AlertmanagerReceiver(APIView):
    """Alertmanager's webhook receiver (``webhook_configs`` with
    ``http_config.authorization.credentials`` = ``MODELGATE_ALERTMANAGER_TOKEN``)."""

    authentication_classes = []
    permission_classes = [AllowAny]

    @extend_schema(request=OpenApiTypes.OBJECT, responses={200: AlertmanagerResultSerializer,
                                                           503: ErrorSerializer})
    def post(self, request):
        expected = settings.MODELGATE_ALERTMANAGER_TOKEN
        if not expected:
            raise ServiceUnavailable("the Alertmanager receiver is off: set "
                                     "MODELGATE_ALERTMANAGER_TOKEN", code="receiver_disabled")
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {expected}".encode()):
            raise NotAuthenticatedReceiver("missing or wrong Alertmanager token")
        incoming = alerts.from_alertmanager(request.data)
        changed = alerts.ingest(incoming, AlertSource.ALERTMANAGER)
        return Response({"received": len(incoming), "changed": len(changed)},
                        status=status.HTTP_200_OK)


class NotAuthenticatedReceiver(NotAllowed):
    status = 401
    code = "not_authenticated"
