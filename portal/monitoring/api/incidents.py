"""The incidents API: firing alerts of one cause on one endpoint (``portal.monitoring.
incidents``), read and acknowledged or silenced together."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.api.views import PortalViewSet, validated
from portal.monitoring import incidents, queries
from portal.monitoring.api.serializers import (
    AcknowledgeSerializer,
    IncidentSerializer,
    SilenceSerializer,
)
from portal.monitoring.filtersets import AlertFilterSet

ANY_ALERT = OpenApiParameter("id", int, OpenApiParameter.PATH,
                             description="The incident's id, or the id of any alert of it")


class IncidentViewSet(PortalViewSet):
    """Incidents: the alerts firing now on one endpoint for one cause (alert name), with
    their features and variants, most severe first, then newest.

    Filter with ``?project=<slug>&model=&environment=&endpoint=&severity=`` (on the alerts
    they are made of). Contributors acknowledge and silence an incident: every alert of it,
    audited once. An incident whose alerts all resolved is gone (404 ``incident_resolved``).
    """

    serializer_class = IncidentSerializer
    filterset_class = AlertFilterSet
    visible = staticmethod(queries.alerts_for)

    def _incident(self, pk):
        return incidents.incident_of(self.get_queryset(), pk)

    def _fresh(self, incident):
        return Response(IncidentSerializer(self._incident(incident.id)).data)

    def list(self, request):
        found = incidents.open_incidents(self.filter_queryset(self.get_queryset()))
        page = self.paginate_queryset(found)
        return self.get_paginated_response(IncidentSerializer(page, many=True).data)

    @extend_schema(parameters=[ANY_ALERT])
    def retrieve(self, request, pk=None):
        return Response(IncidentSerializer(self._incident(pk)).data)

    @extend_schema(parameters=[ANY_ALERT], request=AcknowledgeSerializer,
                   responses=IncidentSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def acknowledge(self, request, pk=None):
        data = validated(AcknowledgeSerializer, request.data)
        return self._fresh(incidents.acknowledge(request.user, self._incident(pk),
                                                 data["comment"]))

    @extend_schema(parameters=[ANY_ALERT], request=SilenceSerializer,
                   responses=IncidentSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def silence(self, request, pk=None):
        data = validated(SilenceSerializer, request.data)
        return self._fresh(incidents.silence(request.user, self._incident(pk),
                                             until=data["until"], reason=data["reason"]))

    @extend_schema(parameters=[ANY_ALERT], request=None, responses=IncidentSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def unsilence(self, request, pk=None):
        return self._fresh(incidents.unsilence(request.user, self._incident(pk)))
