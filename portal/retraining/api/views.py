from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.response import Response

from portal.api.views import PortalViewSet, validated
from portal.retraining import queries, services
from portal.retraining.api.serializers import (
    RuleCreatedSerializer,
    RuleCreateSerializer,
    RuleSerializer,
    RuleWriteSerializer,
    TriggerSerializer,
)
from portal.retraining.filtersets import RuleFilterSet, TriggerFilterSet


class RetrainingRuleViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """Retraining rules of your models; contributors and owners create, change and delete them.

    A rule fires a trigger when its condition holds (critical drift on an endpoint for a
    while, or measured accuracy below a threshold), at most once per incident and once per
    cooldown; the trigger starts a run on the rule's target with the evidence.
    """

    serializer_class = RuleSerializer
    filterset_class = RuleFilterSet
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    visible = staticmethod(queries.rules_for)

    def _fresh(self, rule, serializer_class=RuleSerializer, **more):
        data = serializer_class(self.get_queryset().get(pk=rule.pk),
                                context=self.get_serializer_context()).data
        return {**data, **more}

    @extend_schema(request=RuleCreateSerializer, responses={201: RuleCreatedSerializer})
    def create(self, request):
        data = validated(RuleCreateSerializer, request.data)
        model = data.pop("model")
        rule, secret = services.create_rule(request.user, model, **data)
        return Response(self._fresh(rule, RuleCreatedSerializer, secret=secret),
                        status=status.HTTP_201_CREATED)

    @extend_schema(request=RuleWriteSerializer, responses=RuleSerializer)
    def partial_update(self, request, pk=None):
        rule = self.get_object()
        data = validated(RuleWriteSerializer, request.data, partial=True)
        services.update_rule(request.user, rule, **data)
        return Response(self._fresh(rule))

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        services.delete_rule(request.user, self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class RetrainingTriggerViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin,
                               PortalViewSet):
    """Retraining triggers of your models, newest first: the evidence sent, the state
    (pending, retrying, sent, failed with the reason), the run's id and link, and the
    versions the run registered."""

    serializer_class = TriggerSerializer
    filterset_class = TriggerFilterSet
    ordering_fields = ["created_at"]
    visible = staticmethod(queries.triggers_for)
