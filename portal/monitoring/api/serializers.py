from rest_framework import serializers

from portal.monitoring.models import Alert


class AlertSerializer(serializers.ModelSerializer):
    project = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    model = serializers.SlugRelatedField(slug_field="name", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="name", read_only=True)
    acknowledged_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    silenced_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
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
