from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.experiments import services
from portal.experiments.choices import DecisionChoice, ExperimentStatus, OutcomeKind
from portal.experiments.models import Experiment, ExperimentDecision


class FeedbackItemSerializer(serializers.Serializer):
    """For the schema only: items are checked by ``services.record_feedback``, in bulk."""

    prediction_id = serializers.CharField(
        max_length=200, help_text="One row's id from the model server's prediction_ids")
    outcome = serializers.JSONField(help_text="0/1 or true/false for a binary outcome, a "
                                              "number for a numeric one")


class FeedbackBatchSerializer(serializers.Serializer):
    items = FeedbackItemSerializer(many=True)


class FeedbackErrorSerializer(serializers.Serializer):
    index = serializers.IntegerField()
    prediction_id = serializers.CharField(allow_null=True)
    code = serializers.CharField()
    detail = serializers.CharField()


class FeedbackResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicates = serializers.IntegerField()
    rejected = serializers.IntegerField()
    errors = FeedbackErrorSerializer(many=True)


class ExperimentDecisionSerializer(serializers.ModelSerializer):
    decided_by = serializers.CharField(source="decided_by.username", read_only=True)

    class Meta:
        model = ExperimentDecision
        fields = ["id", "decision", "comment", "extend_hours", "decided_by", "created_at"]
        read_only_fields = fields


class ExperimentSerializer(serializers.ModelSerializer):
    project = serializers.CharField(source="deployment.environment.project.slug",
                                    read_only=True)
    environment = serializers.CharField(source="deployment.environment.name", read_only=True)
    model = serializers.CharField(source="deployment.model.name", read_only=True)
    control_version = serializers.IntegerField(source="deployment.stable.number",
                                               read_only=True, default=None, allow_null=True)
    treatment_version = serializers.IntegerField(source="deployment.candidate.number",
                                                 read_only=True)
    status = serializers.SerializerMethodField()
    decision = serializers.ChoiceField(choices=DecisionChoice.choices, read_only=True,
                                       allow_blank=True, help_text="empty while undecided")

    class Meta:
        model = Experiment
        fields = ["id", "deployment", "project", "environment", "model", "control_version",
                  "treatment_version", "metric", "kind", "higher_is_better", "split",
                  "generation", "status", "decision", "created_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=ExperimentStatus.choices))
    def get_status(self, experiment) -> str:
        return services.status_of(experiment)


class DecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DecisionChoice.choices)
    comment = serializers.CharField(max_length=4000)
    extend_hours = serializers.FloatField(required=False, allow_null=True, min_value=0.01,
                                          max_value=2160)


# The A/B readout (``ExperimentViewSet.readout``): the shapes of ``services.results``.

def _interval(**kwargs):
    return serializers.ListField(child=serializers.FloatField(), min_length=2, max_length=2,
                                 **kwargs)


class ReadoutSideSerializer(serializers.Serializer):
    """One variant's outcome so far: a rate (binary outcomes) or a mean (numeric ones)."""

    units = serializers.IntegerField(help_text="Units (predictions) with an outcome")
    rate = serializers.FloatField(required=False, allow_null=True,
                                  help_text="Binary outcomes: the share converted")
    mean = serializers.FloatField(required=False, allow_null=True,
                                  help_text="Numeric outcomes: the mean outcome")
    interval = _interval(allow_null=True, help_text="Its 95% interval [low, high]")


class ReadoutStatisticsSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=OutcomeKind.choices)
    control = ReadoutSideSerializer(help_text="A: the stable version")
    treatment = ReadoutSideSerializer(help_text="B: the candidate version")
    difference = serializers.FloatField(allow_null=True, help_text="B − A")
    difference_interval = _interval(allow_null=True)
    relative_lift = serializers.FloatField(allow_null=True, help_text="(B − A) / A")
    relative_interval = _interval(allow_null=True)
    p_value = serializers.FloatField(allow_null=True, help_text="Fixed-horizon p-value")
    test = serializers.CharField(help_text="The fixed-horizon test used")
    sequential_p = serializers.FloatField(allow_null=True,
                                          help_text="Always-valid (mSPRT) p-value")
    srm_p = serializers.FloatField(help_text="Sample ratio check's p-value")
    srm_broken = serializers.BooleanField(help_text="Assignment does not match the split")
    mde = serializers.FloatField(allow_null=True, help_text="Minimum detectable effect")
    units_needed = serializers.IntegerField(allow_null=True,
                                            help_text="More units per group to settle it")
    significant = serializers.BooleanField()
    verdict = serializers.CharField(help_text="The verdict in words")


class OutcomePointSerializer(serializers.Serializer):
    time = serializers.DateTimeField(help_text="End of the ten-minute period")
    units = serializers.IntegerField()
    value = serializers.FloatField(allow_null=True, help_text="Cumulative rate or mean")
    low = serializers.FloatField(allow_null=True)
    high = serializers.FloatField(allow_null=True)


class OutcomeSeriesSerializer(serializers.Serializer):
    stable = OutcomePointSerializer(many=True)
    candidate = OutcomePointSerializer(many=True)


class ExplanationSummarySerializer(serializers.Serializer):
    summary = serializers.CharField()
    top_features = serializers.ListField(child=serializers.CharField())


class VariantExplanationsSerializer(serializers.Serializer):
    stable = ExplanationSummarySerializer(allow_null=True, help_text="null: none ready")
    candidate = ExplanationSummarySerializer(allow_null=True, help_text="null: none ready")


class ReadoutSerializer(serializers.Serializer):
    """An A/B test's results so far, with the decisions taken on it."""

    experiment = ExperimentSerializer()
    readout = ReadoutStatisticsSerializer()
    over_time = OutcomeSeriesSerializer(help_text="Per variant, the outcome over time")
    explanations = VariantExplanationsSerializer(
        help_text="Each variant's explanation summary, when ready")
    decisions = ExperimentDecisionSerializer(many=True)
