from rest_framework import serializers

from portal.audit.models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = ["id", "created_at", "actor_name", "action", "object_type", "object_id",
                  "object_repr", "project_id", "changes", "remote_addr", "via", "hash",
                  "prev_hash"]
        read_only_fields = fields
