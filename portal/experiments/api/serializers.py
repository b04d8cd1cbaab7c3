from rest_framework import serializers

from portal.experiments import services
from portal.experiments.choices import DecisionChoice
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

    def get_status(self, experiment) -> str:
        return services.status_of(experiment)


class DecideSerializer(serializers.Serializer):
    decision = serializers.ChoiceField(choices=DecisionChoice.choices)
    comment = serializers.CharField(max_length=4000)
    extend_hours = serializers.FloatField(required=False, allow_null=True, min_value=0.01,
                                          max_value=2160)
