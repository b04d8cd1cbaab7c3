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
                  "last_seen_at", "acknowledged_by", "acknowledged_at", "acknowledge_comment",
                  "silenced", "silenced_by", "silenced_until", "silence_reason"]
        read_only_fields = fields


class AcknowledgeSerializer(serializers.Serializer):
    comment = serializers.CharField(max_length=2000, help_text="What is being done about it")


class SilenceSerializer(serializers.Serializer):
    until = serializers.DateTimeField(help_text="When the silence ends (at most 30 days)")
    reason = serializers.CharField(max_length=2000)


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
