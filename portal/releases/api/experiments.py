"""The A/B tests' API with its ``decide`` action: deciding acts on the test's rollout
(``portal.releases.experiment_decisions``), so the action is the releases app's and the
router serves this viewset at ``/api/v1/experiments/``."""

from drf_spectacular.utils import extend_schema
from rest_framework.decorators import action
from rest_framework.response import Response

from portal.api.views import validated
from portal.errors import ValidationFailed
from portal.experiments.api import views as experiments
from portal.experiments.api.serializers import DecideSerializer, ExperimentDecisionSerializer
from portal.releases import experiment_decisions


class ExperimentViewSet(experiments.ExperimentViewSet):
    __doc__ = experiments.ExperimentViewSet.__doc__  # the API documentation's text

    @extend_schema(request=DecideSerializer, responses=ExperimentDecisionSerializer)
    @action(detail=True, methods=["post"], filter_backends=[])
    def decide(self, request, pk=None):
        data = validated(DecideSerializer, request.data)
        if data["decision"] == "extend" and not data.get("extend_hours"):
            raise ValidationFailed("say how many hours to extend by", field="extend_hours")
        record = experiment_decisions.decide(request.user, self.get_object(), data["decision"],
                                             data["comment"], data.get("extend_hours"))
        return Response(ExperimentDecisionSerializer(record).data, status=201)
