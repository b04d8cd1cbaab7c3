from rest_framework import serializers

from portal.accounts.choices import Role
from portal.accounts.services import has_role
from portal.api.fields import ReferenceField
from portal.api.serializers import CreatedByField, read_only_with
from portal.notifications.models import Delivery, Webhook
from portal.registry.models import Project


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook as anyone in the project sees it: never the secret; the URL in full for owners
    only (its path often holds a token), scheme and host for the others."""

    project_slug = serializers.CharField(source="project.slug", read_only=True)
    created_by = CreatedByField()
    last_delivery_status = serializers.CharField(read_only=True, default=None, allow_null=True)
    last_delivery_at = serializers.DateTimeField(read_only=True, default=None, allow_null=True)

    class Meta:
        model = Webhook
        fields = ["id", "project", "project_slug", "name", "url", "events", "active",
                  "created_by", "created_at", "last_delivery_status", "last_delivery_at"]
        read_only_fields = fields

    def to_representation(self, webhook):
        data = super().to_representation(webhook)
        request = self.context.get("request")
        if request is None or not has_role(request.user, webhook.project, Role.OWNER):
            data["url"] = webhook.redacted_url
        return data


class WebhookCreatedSerializer(WebhookSerializer):
    secret = serializers.CharField(read_only=True,
                                   help_text="Signs every delivery; shown once, store it now")

    Meta = read_only_with(WebhookSerializer, "secret")


class WebhookCreateSerializer(serializers.Serializer):
    project = ReferenceField(queryset=Project.objects.all())
    name = serializers.CharField(max_length=100)
    url = serializers.CharField(max_length=500, help_text="http:// or https:// address")
    events = serializers.ListField(child=serializers.CharField(max_length=40), required=False,
                                   default=list, help_text="Event names; empty means all")
    active = serializers.BooleanField(required=False, default=True)


class WebhookUpdateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, required=False)
    url = serializers.CharField(max_length=500, required=False)
    events = serializers.ListField(child=serializers.CharField(max_length=40), required=False)
    active = serializers.BooleanField(required=False)


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = ["id", "webhook", "event", "status", "attempts", "last_status_code",
                  "last_error", "payload", "created_at", "delivered_at", "next_attempt_at"]
        read_only_fields = fields
