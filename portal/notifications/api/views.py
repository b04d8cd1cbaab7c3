from django_filters.utils import translate_validation
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.api.views import PortalViewSet, validated
from portal.notifications import queries, services
from portal.notifications.api.serializers import (
    DeliverySerializer,
    WebhookCreatedSerializer,
    WebhookCreateSerializer,
    WebhookSerializer,
    WebhookUpdateSerializer,
)
from portal.notifications.choices import DeliveryStatus
from portal.notifications.filtersets import DeliveryFilterSet, WebhookFilterSet


class WebhookViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Outgoing webhooks of your projects; owners create, change, test and delete them.

    Creating one returns its signing secret once.
    """

    serializer_class = WebhookSerializer
    filterset_class = WebhookFilterSet
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    visible = staticmethod(queries.webhooks_for)

    def _fresh(self, webhook, serializer_class=WebhookSerializer):
        return serializer_class(self.get_queryset().get(pk=webhook.pk),
                                context=self.get_serializer_context()).data

    @extend_schema(request=WebhookCreateSerializer, responses={201: WebhookCreatedSerializer})
    def create(self, request):
        data = validated(WebhookCreateSerializer, request.data)
        project = data.pop("project")
        webhook, _secret = services.create_webhook(request.user, project, **data)
        return Response(self._fresh(webhook, WebhookCreatedSerializer),
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookUpdateSerializer, responses=WebhookSerializer)
    def partial_update(self, request, pk=None):
        webhook = self.get_object()
        data = validated(WebhookUpdateSerializer, request.data, partial=True)
        services.update_webhook(request.user, webhook, **data)
        return Response(self._fresh(webhook))

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.delete_webhook(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=DeliverySerializer(many=True), filters=False,
                   parameters=[OpenApiParameter("status", enum=DeliveryStatus.values),
                               OpenApiParameter("event", str)])
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request, pk=None):
        """The webhook's delivery log, newest first; filter with ?status= and ?event=."""
        webhook = self.get_object()
        deliveries = DeliveryFilterSet(request.query_params,
                                       queryset=queries.deliveries_of(webhook))
        if not deliveries.is_valid():
            raise translate_validation(deliveries.errors)
        page = self.paginate_queryset(deliveries.qs)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"], filter_backends=[])
    def test(self, request, pk=None):
        """Queue a ``ping`` event to this webhook."""
        delivery = services.ping_webhook(request.user, self.get_object())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)
