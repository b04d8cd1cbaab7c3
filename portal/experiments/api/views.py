from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from portal.api.schema import ErrorSerializer
from portal.api.views import PortalViewSet
from portal.experiments import queries, services
from portal.experiments.api.serializers import (
    ExperimentDecisionSerializer,
    ExperimentSerializer,
    FeedbackBatchSerializer,
    FeedbackResultSerializer,
    ReadoutSerializer,
)
from portal.experiments.filtersets import ExperimentFilterSet

# A single item's refusal, as an HTTP status (the batch form always answers 200).
SINGLE_STATUS = {"not_found": 404, "unknown_prediction": 404, "permission_denied": 403,
                 "test_finished": 409, "conflicting_outcome": 409}


class FeedbackView(APIView):
    throttle_scopes = {"post": "feedback"}

    """Outcomes of predictions, for A/B tests.

    Send ``{"prediction_id": "...", "outcome": 1}`` or a batch ``{"items": [...]}`` (at most
    ``MODELGATE_FEEDBACK_MAX_BATCH``, 10,000 by default). The prediction id is one row's id
    from the model server's answer (``prediction_ids``; the ``X-Prediction-Id`` header of a
    one-row request); the variant is read from it, so nothing else is needed. Feedback is
    idempotent per prediction id: sending it again counts as a duplicate and changes
    nothing. The batch form answers 200 with counts and one error per refused item; the
    single form answers 201 (accepted), 200 (duplicate) or the refusal's status.
    """

    # The single form's refusals (SINGLE_STATUS), and a batch over the limit (413).
    @extend_schema(request=FeedbackBatchSerializer, responses={
        200: FeedbackResultSerializer, 201: FeedbackResultSerializer, 404: ErrorSerializer,
        413: ErrorSerializer})
    def post(self, request):
        data = request.data
        single = isinstance(data, dict) and "items" not in data
        items = [data] if single else (data.get("items") if isinstance(data, dict) else data)
        result = services.record_feedback(request.user, items)
        body = result.to_dict()
        if not single:
            return Response(body)
        if result.errors:
            error = result.errors[0]
            return Response({"detail": error["detail"], "code": error["code"],
                             **body}, status=SINGLE_STATUS.get(error["code"], 400))
        return Response(body, status=status.HTTP_201_CREATED if result.accepted else 200)


class ExperimentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, PortalViewSet):
    """A/B tests: one per A/B rollout. ``readout`` gives the results so far; approvers
    ``decide`` (promote B, keep A, or extend) with a comment."""

    # Token scopes of these actions: ROUTE_SCOPES in portal/api/urls.py ("experiment").
    # ``decide`` acts on the rollout: the router serves this viewset with that action added
    # by the releases app (portal.releases.api.experiments).

    serializer_class = ExperimentSerializer
    filterset_class = ExperimentFilterSet
    visible = staticmethod(queries.experiments_for)

    @extend_schema(responses=ReadoutSerializer)
    @action(detail=True, methods=["get"], filter_backends=[])
    def readout(self, request, pk=None):
        """Per variant: units, rate or mean with a 95% interval; the lift with its
        interval; the fixed-horizon p-value and the always-valid sequential one; the sample
        ratio check; the minimum detectable effect; the verdict in words; the outcome over
        time; each version's explanation summary; the decisions so far."""
        experiment = self.get_object()
        found = services.results(experiment)
        return Response({
            "experiment": ExperimentSerializer(experiment).data,
            "readout": found["readout"].to_dict(),
            "over_time": found["over_time"],
            "explanations": found["explanations"],
            "decisions": ExperimentDecisionSerializer(experiment.decisions.all(),
                                                      many=True).data,
        })
