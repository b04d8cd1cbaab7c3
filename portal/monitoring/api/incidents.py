"""The incidents API: firing alerts of one cause on one endpoint (``portal.monitoring.
incidents``), read and acknowledged or silenced together."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.api.views import PortalViewSet, validated
from portal.monitoring import incidents, queries
from portal.monitoring.api.serializers import (
    IncidentAcknowledgeSerializer,
    IncidentActedSerializer,
    IncidentSerializer,
    IncidentSilenceSerializer,
    ShownAlertsSerializer,
)
from portal.monitoring.filtersets import AlertFilterSet

ANY_ALERT = OpenApiParameter("id", int, OpenApiParameter.PATH,
                             description="The incident's id, or the id of any alert of it")


class IncidentViewSet(PortalViewSet):
    """Incidents: the alerts firing now on one endpoint for one cause (alert name), with
    their features and variants, most severe first, then newest.

    Filter with ``?project=<slug>&model=&environment=&endpoint=&severity=`` (on the alerts
    they are made of). Contributors acknowledge and silence an incident: the alerts of it
    listed in the body's ``alerts`` (those the caller was shown) that still fire, audited
    once; alerts that joined since are left alone and returned in ``not_shown``. Without
    ``alerts``, the act covers the incident as it is at the request, and ``acted_on`` in the
    response says which alerts that was. An alert already acknowledged keeps its
    acknowledgement (``unchanged``). An incident whose alerts all resolved is gone (404
    ``incident_resolved``); one none of whose listed alerts still fires is 409
    ``incident_changed``.
    """

    serializer_class = IncidentSerializer
    filterset_class = AlertFilterSet
    visible = staticmethod(queries.alerts_for)

    def _incident(self, pk):
        return incidents.incident_of(self.get_queryset(), pk)

    def _fresh(self, outcome):
        return Response(IncidentActedSerializer(self._incident(outcome.incident.id),
                                                context={"outcome": outcome}).data)

    def list(self, request):
        found = incidents.open_incidents(self.filter_queryset(self.get_queryset()))
        page = self.paginate_queryset(found)
        return self.get_paginated_response(IncidentSerializer(page, many=True).data)

    @extend_schema(parameters=[ANY_ALERT])
    def retrieve(self, request, pk=None):
        return Response(IncidentSerializer(self._incident(pk)).data)

    @extend_schema(parameters=[ANY_ALERT], request=IncidentAcknowledgeSerializer,
                   responses=IncidentActedSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def acknowledge(self, request, pk=None):
        data = validated(IncidentAcknowledgeSerializer, request.data)
        return self._fresh(incidents.acknowledge(request.user, self._incident(pk),
                                                 data["comment"], shown=data.get("alerts")))

    @extend_schema(parameters=[ANY_ALERT], request=IncidentSilenceSerializer,
                   responses=IncidentActedSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def silence(self, request, pk=None):
        data = validated(IncidentSilenceSerializer, request.data)
        return self._fresh(incidents.silence(request.user, self._incident(pk),
                                             until=data["until"], reason=data["reason"],
                                             shown=data.get("alerts")))

    @extend_schema(parameters=[ANY_ALERT], request=ShownAlertsSerializer,
                   responses=IncidentActedSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def unsilence(self, request, pk=None):
        data = validated(ShownAlertsSerializer, request.data)
        return self._fresh(incidents.unsilence(request.user, self._incident(pk),
                                               shown=data.get("alerts")))
