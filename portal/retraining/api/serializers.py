from rest_framework import serializers

from portal.accounts.choices import Role
from portal.accounts.services import has_role
from portal.api.fields import ReferenceField
from portal.api.serializers import CreatedByField, read_only_with
from portal.notifications.models import redacted_url
from portal.registry.models import RegisteredModel
from portal.retraining.choices import Condition
from portal.retraining.models import RetrainingRule, RetrainingTrigger


def shown_params(params, project, request) -> dict:
    """A rule's (or trigger's) params as the caller may see them: a webhook's ``url``
    whole to the project's owners only, scheme and host to the others (receivers such as
    Slack carry their token in the path), as the notifications' webhooks show theirs."""
    if not isinstance(params, dict) or "url" not in params:
        return params
    if request is not None and has_role(request.user, project, Role.OWNER):
        return params
    return {**params, "url": redacted_url(params["url"])}


class RuleSerializer(serializers.ModelSerializer):
    """A retraining rule. ``params`` are the run's (no credentials: those are the operator's
    target's)."""

    environment = serializers.CharField(source="environment.name", read_only=True,
                                        default=None, allow_null=True)
    created_by = CreatedByField()

    class Meta:
        model = RetrainingRule
        fields = ["id", "model", "name", "condition", "environment", "for_minutes",
                  "min_accuracy", "min_outcomes", "target", "params", "cooldown_minutes",
                  "active", "last_triggered_at", "created_by", "created_at", "updated_at"]
        read_only_fields = fields

    def to_representation(self, rule):
        data = super().to_representation(rule)
        data["params"] = shown_params(data.get("params"), rule.model.project,
                                      self.context.get("request"))
        return data


class RuleCreatedSerializer(RuleSerializer):
    secret = serializers.CharField(
        read_only=True, help_text="A webhook rule's signing secret (X-Modelgate-Signature); "
                                  "empty for other targets. Shown once: store it now")

    Meta = read_only_with(RuleSerializer, "secret")


class RuleWriteSerializer(serializers.Serializer):
    """What a rule says; the service checks it as a whole (``portal.retraining.rules``)."""

    name = serializers.CharField(max_length=100)
    condition = serializers.ChoiceField(choices=Condition.choices)
    environment = serializers.CharField(max_length=100, required=False, allow_null=True,
                                        allow_blank=True,
                                        help_text="An environment's name; empty: any")
    for_minutes = serializers.IntegerField(required=False, default=30)
    min_accuracy = serializers.FloatField(required=False, allow_null=True, default=None)
    min_outcomes = serializers.IntegerField(required=False, default=100)
    target = serializers.CharField(max_length=64, help_text="A retraining target the operator "
                                                            "configured, or 'webhook'")
    params = serializers.DictField(child=serializers.CharField(max_length=500),
                                   required=False, default=dict)
    cooldown_minutes = serializers.IntegerField(required=False, default=24 * 60)
    active = serializers.BooleanField(required=False, default=True)


class RuleCreateSerializer(RuleWriteSerializer):
    model = ReferenceField(queryset=RegisteredModel.objects.all())


class TriggerSerializer(serializers.ModelSerializer):
    environment = serializers.CharField(source="environment.name", read_only=True,
                                        default=None, allow_null=True)
    serving_version = serializers.IntegerField(source="serving_version.number", read_only=True,
                                               default=None, allow_null=True)
    versions = serializers.SerializerMethodField(
        help_text="The versions its run registered (--triggered-by): ids")

    class Meta:
        model = RetrainingTrigger
        fields = ["id", "rule", "rule_name", "model", "environment", "serving_version",
                  "alert", "condition", "target", "kind", "params", "reason", "evidence",
                  "state", "attempts", "last_error", "next_attempt_at", "run_id", "run_url",
                  "created_at", "sent_at", "versions"]
        read_only_fields = fields

    def to_representation(self, trigger):
        data = super().to_representation(trigger)
        data["params"] = shown_params(data.get("params"), trigger.model.project,
                                      self.context.get("request"))
        return data

    def get_versions(self, trigger) -> list[int]:
        return [link.version_id for link in trigger.versions.all()]
