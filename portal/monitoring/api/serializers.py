from rest_framework import serializers

from portal.monitoring.models import Alert


class AlertSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    model = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True, allow_null=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username",
                                                   read_only=True, allow_null=True)
    silenced_by = serializers.SlugRelatedField(slug_field="username",
                                               read_only=True, allow_null=True)
    summary = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    silenced = serializers.BooleanField(read_only=True)

    class Meta:
        model = Alert
        fields = ["id", "name", "severity", "state", "source", "summary", "description",
                  "project", "model", "environment", "endpoint", "variant", "feature", "value",
                  "labels", "annotations", "fingerprint", "starts_at", "ends_at",
                  "resolved_reason", "last_seen_at", "acknowledged_by", "acknowledged_at", "acknowledge_comment",
                  "silenced", "silenced_by", "silenced_until", "silence_reason"]
        read_only_fields = fields


class IncidentAlertSerializer(AlertSerializer):
    endpoint_alert = serializers.BooleanField(
        read_only=True, help_text="Fires (same name and feature) on every variant serving the "
                                  "endpoint: the endpoint's, not the candidate's")

    class Meta(AlertSerializer.Meta):
        fields = [*AlertSerializer.Meta.fields, "endpoint_alert"]
        read_only_fields = fields


class IncidentSerializer(serializers.Serializer):
    """An incident (``portal.monitoring.incidents.Incident``): firing alerts of one cause on
    one endpoint."""

    id = serializers.IntegerField(read_only=True,
                                  help_text="Its oldest alert's id; any of its alerts' ids "
                                            "finds it")
    name = serializers.CharField(source="lead.name", read_only=True, help_text="The cause")
    severity = serializers.CharField(read_only=True, help_text="The highest of its alerts'")
    state = serializers.CharField(
        read_only=True, help_text="firing, partly acknowledged, acknowledged, or silenced "
                                  "(every alert of it)")
    project = serializers.CharField(source="lead.project.slug", read_only=True,
                                    allow_null=True)
    model = serializers.CharField(source="lead.model.name", read_only=True, allow_null=True)
    environment = serializers.CharField(source="lead.environment.name", read_only=True,
                                        allow_null=True)
    endpoint = serializers.CharField(source="lead.endpoint", read_only=True)
    features = serializers.ListField(child=serializers.CharField(), read_only=True)
    variants = serializers.ListField(child=serializers.CharField(), read_only=True)
    since = serializers.DateTimeField(read_only=True)
    acknowledged = serializers.BooleanField(read_only=True, help_text="Every alert of it")
    silenced = serializers.BooleanField(read_only=True, help_text="Every alert of it")
    endpoint_alert = serializers.BooleanField(read_only=True,
                                              help_text="Every alert of it is an endpoint alert")
    explanation = serializers.CharField(read_only=True)
    alerts = IncidentAlertSerializer(many=True, read_only=True)


class AcknowledgeSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, help_text="What is being done about it")


class SilenceSerializer(serializers.Serializer):
    until = serializers.DateTimeField(help_text="When the silence ends (at most 30 days)")
    reason = serializers.CharField(max_length=2000)


class ShownAlertsSerializer(serializers.Serializer):
    """The alerts of an incident a person saw, for an act on the incident."""

    alerts = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, allow_empty=False,
        max_length=1000,
        help_text="The ids of the incident's alerts the caller was shown (its `alerts`): only "
                  "those still firing in the incident are acted on; alerts that joined it "
                  "since are left alone (`not_shown`). Without it, the act covers the "
                  "incident's firing alerts at the time of the request, listed in the "
                  "response's `acted_on`.")


class IncidentAcknowledgeSerializer(ShownAlertsSerializer, AcknowledgeSerializer):
    pass


class IncidentSilenceSerializer(ShownAlertsSerializer, SilenceSerializer):
    pass


class IncidentActedSerializer(IncidentSerializer):
    """The incident after an act on it, and what the act did (``incidents.Outcome``)."""

    acted_on = serializers.SerializerMethodField(help_text="The alerts the act changed")
    unchanged = serializers.SerializerMethodField(
        help_text="Alerts shown and firing but left as they were: already acknowledged (an "
                  "acknowledgement is never replaced)")
    not_shown = serializers.SerializerMethodField(
        help_text="Alerts firing in the incident that `alerts` did not list: left alone")
    no_longer_firing = serializers.SerializerMethodField(
        help_text="Alerts listed that no longer fire in the incident: left alone")
    message = serializers.SerializerMethodField(help_text="What was done, in words")

    def _outcome(self):
        return self.context["outcome"]

    def get_acted_on(self, obj) -> list[int]:
        return [a.pk for a in self._outcome().acted]

    def get_unchanged(self, obj) -> list[int]:
        return [a.pk for a in self._outcome().unchanged]

    def get_not_shown(self, obj) -> list[int]:
        return [a.pk for a in self._outcome().not_shown]

    def get_no_longer_firing(self, obj) -> list[int]:
        return list(self._outcome().no_longer_firing)

    def get_message(self, obj) -> str:
        return self._outcome().message


class AlertmanagerResultSerializer(serializers.Serializer):
    received = serializers.IntegerField()
    changed = serializers.IntegerField()


class MonitorSettingsSerializer(serializers.Serializer):
    drift = serializers.DictField(
        required=False, help_text="Drift thresholds: psi_warning (0.1), psi_critical (0.25), "
                                  "significance (0.01), drift_share (0.5), min_count (200)")
    drift_window_seconds = serializers.IntegerField(required=False,
                                                    help_text="Sliding window of live inputs")
    max_error_rate = serializers.FloatField(required=False)
    max_p99_latency_seconds = serializers.FloatField(required=False)
    no_traffic_minutes = serializers.IntegerField(required=False)
    effective_drift = serializers.SerializerMethodField()

    def get_effective_drift(self, obj) -> dict:
        from ops.drift import Thresholds

        try:
            return Thresholds.from_dict(obj.drift).to_dict()
        except ValueError:
            return Thresholds().to_dict()
