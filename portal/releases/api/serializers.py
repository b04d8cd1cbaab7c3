from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from portal.api.fields import ReferenceField
from portal.registry.api.serializers import ModelVersionSerializer, RegisteredModelSerializer
from portal.registry.models import ModelVersion, Project
from portal.releases import serving
from portal.releases.api.strategy_params import StrategyParamsField
from portal.releases.choices import BackendKind, DeploymentStatus, Strategy, Verdict
from portal.releases.models import (
    ApprovalRequest,
    Deployment,
    DeploymentEvent,
    Environment,
    Review,
)

RELEASE_ALIAS_HELP = ("The model's alias a release that succeeds here moves to the version "
                      "released, e.g. champion; blank: none. Left out when creating: champion "
                      "for an environment named production, none for others")


class EnvironmentSerializer(serializers.ModelSerializer):
    project = ReferenceField(queryset=Project.objects.all())
    project_slug = serializers.CharField(source="project.slug", read_only=True)
    backend = serializers.ChoiceField(
        choices=BackendKind.choices, required=False,
        help_text="The target's backend; with no target named, the operator's first target "
                  "of this backend is used (default local)")
    archived_by = serializers.CharField(source="archived_by.username", read_only=True,
                                        default=None, allow_null=True,
                                        help_text="Who archived it (null: not archived)")

    class Meta:
        model = Environment
        fields = ["id", "project", "project_slug", "name", "description", "backend", "target",
                  "settings", "required_approvals", "gates", "approval_ttl_hours",
                  "release_alias", "created_at", "archived_at", "archived_by"]
        extra_kwargs = {"release_alias": {"help_text": RELEASE_ALIAS_HELP}}
        read_only_fields = ["id", "created_at", "archived_at"]
        validators = []


class ServingVariantSerializer(serializers.Serializer):
    name = serializers.CharField(help_text="The variant's name on the endpoint: stable, "
                                           "candidate…")
    version = serializers.IntegerField(source="version.number", default=None,
                                       allow_null=True, help_text="The version's number")
    version_id = serializers.IntegerField()
    weight = serializers.FloatField(help_text="Its share of the traffic, 0 to 1")


class ServingEndpointSerializer(serializers.Serializer):
    environment = serializers.CharField(source="environment.name")
    model = serializers.CharField(source="model.name")
    endpoint = serializers.CharField()
    url = serializers.CharField(allow_null=True, help_text="The endpoint's address")
    ready = serializers.BooleanField()
    generation = serializers.IntegerField(allow_null=True,
                                          help_text="The plan the backend serves")
    variants = ServingVariantSerializer(many=True)
    detail = serializers.CharField(help_text="Why it is not ready; empty when it is")


class EnvironmentDetailSerializer(EnvironmentSerializer):
    serving = serializers.SerializerMethodField(
        help_text="Each model's endpoint as the backend observes it now")

    class Meta(EnvironmentSerializer.Meta):
        fields = EnvironmentSerializer.Meta.fields + ["serving"]

    @extend_schema_field(ServingEndpointSerializer(many=True, read_only=True))
    def get_serving(self, environment) -> list[dict]:
        return ServingEndpointSerializer(serving.serving_now(environment), many=True).data


class ModelDetailSerializer(RegisteredModelSerializer):
    """A model, with what serves it now (one model only: lists stay cheap)."""

    serving = serializers.SerializerMethodField(
        help_text="The model's endpoint in each environment it was released to, as the "
                  "backend observes it now")

    class Meta(RegisteredModelSerializer.Meta):
        fields = RegisteredModelSerializer.Meta.fields + ["serving"]

    @extend_schema_field(ServingEndpointSerializer(many=True, read_only=True))
    def get_serving(self, model) -> list[dict]:
        return ServingEndpointSerializer(serving.serving_model(model), many=True).data


class VersionDetailSerializer(ModelVersionSerializer):
    """A version, with where it serves now (one version only: lists stay cheap)."""

    serving = serializers.SerializerMethodField(
        help_text="The endpoints serving this version now, as their backends observe them "
                  "(all their variants: its share is one of them); an endpoint whose "
                  "backend could not be reached is listed, saying so")

    class Meta(ModelVersionSerializer.Meta):
        fields = ModelVersionSerializer.Meta.fields + ["serving"]
        read_only_fields = fields

    @extend_schema_field(ServingEndpointSerializer(many=True, read_only=True))
    def get_serving(self, version) -> list[dict]:
        return ServingEndpointSerializer(serving.serving_version(version), many=True).data

    def to_representation(self, version) -> dict:
        # The version's document is built directly, without the declared fields (see
        # ModelVersionSerializer.to_representation): add this one to it.
        return {**super().to_representation(version), "serving": self.get_serving(version)}


class EnvironmentUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Environment
        fields = ["description", "backend", "target", "settings", "required_approvals", "gates",
                  "approval_ttl_hours", "release_alias"]


class ReviewSerializer(serializers.ModelSerializer):
    reviewer = serializers.CharField(source="reviewer.username", read_only=True)

    class Meta:
        model = Review
        fields = ["reviewer", "decision", "comment", "created_at"]
        read_only_fields = fields


class ApprovalRequestSerializer(serializers.ModelSerializer):
    version = ReferenceField(queryset=ModelVersion.objects.all())
    environment = ReferenceField(queryset=Environment.objects.all())
    strategy = serializers.ChoiceField(choices=Strategy.choices, default=Strategy.CANARY)
    strategy_params = StrategyParamsField(required=False)
    model_name = serializers.CharField(source="version.model.name", read_only=True)
    version_number = serializers.IntegerField(source="version.number", read_only=True)
    environment_name = serializers.CharField(source="environment.name", read_only=True)
    requested_by = serializers.CharField(source="requested_by.username", read_only=True,
                                         default=None, allow_null=True)
    champion = serializers.IntegerField(source="champion.number", read_only=True,
                                        default=None, allow_null=True)
    reviews = ReviewSerializer(many=True, read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = ["id", "version", "model_name", "version_number", "environment",
                  "environment_name", "strategy", "strategy_params", "breaking_change",
                  "interface_changes", "reason", "status", "gates_passed", "gate_results",
                  "champion", "requested_by", "reviews", "release_diff", "created_at",
                  "decided_at"]
        read_only_fields = ["id", "status", "gates_passed", "gate_results", "champion",
                            "requested_by", "reviews", "release_diff", "created_at",
                            "decided_at", "interface_changes"]
        validators = []


class ReviewInputSerializer(serializers.Serializer):
    comment = serializers.CharField(help_text="Required: why you approve or reject")
    acknowledge_breaking_change = serializers.BooleanField(
        default=False,
        help_text="Required to approve a release marked a breaking interface change: you "
                  "acknowledge that callers of the serving version's inputs will get errors")




class DeploymentEventSerializer(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=DeploymentStatus.choices, read_only=True,
                                     help_text="The rollout's status after this event")
    verdict = serializers.ChoiceField(choices=Verdict.choices, read_only=True, allow_blank=True,
                                      help_text="The analysis's verdict; empty when none")

    class Meta:
        model = DeploymentEvent
        fields = ["created_at", "event", "status", "reason", "actor", "verdict", "measurements",
                  "queries", "weights", "generation"]
        read_only_fields = fields


class DeploymentSerializer(serializers.ModelSerializer):
    environment_name = serializers.CharField(source="environment.name", read_only=True)
    model_name = serializers.CharField(source="model.name", read_only=True)
    candidate_version = serializers.IntegerField(source="candidate.number", read_only=True)
    stable_version = serializers.IntegerField(source="stable.number", read_only=True,
                                              default=None, allow_null=True)
    step = serializers.SerializerMethodField()
    status = serializers.ChoiceField(choices=DeploymentStatus.choices, read_only=True)

    class Meta:
        model = Deployment
        fields = ["id", "environment", "environment_name", "model", "model_name", "request",
                  "candidate", "candidate_version", "stable", "stable_version", "endpoint",
                  "strategy", "status", "step", "created_at", "updated_at", "finished_at",
                  "next_check_at"]
        read_only_fields = fields

    def get_step(self, deployment) -> int:
        return int(deployment.state.get("step", 0))


class DeploymentDetailSerializer(DeploymentSerializer):
    events = DeploymentEventSerializer(many=True, read_only=True)

    class Meta(DeploymentSerializer.Meta):
        fields = DeploymentSerializer.Meta.fields + ["spec", "state", "events"]
        read_only_fields = fields
