from django.conf import settings
from django.db import models


class AuditEvent(models.Model):
    """An append-only record of who did what to which object, and when.

    Each event stores the hash of the one before it, so editing or deleting a past event
    breaks the chain (``manage.py verify_audit_chain`` finds where). The hash is an HMAC
    under the key ``key_id`` names, held outside the database (``portal/audit/keys.py``);
    an empty ``key_id`` marks an event recorded before keys, hashed with plain sha256. On
    PostgreSQL a trigger refuses updates and deletes (migration 0003).
    """

    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.SET_NULL, related_name="+")
    actor_name = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    project_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    changes = models.JSONField(default=dict, blank=True)
    remote_addr = models.GenericIPAddressField(null=True, blank=True)
    via = models.CharField(max_length=10, blank=True, help_text="ui, api, admin or system")
    prev_hash = models.CharField(max_length=64, unique=True)
    hash = models.CharField(max_length=64, unique=True)
    key_id = models.CharField(max_length=40, blank=True, default="",
                              help_text="the key whose HMAC is the hash; empty: sha256 (legacy)")

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self):
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.actor_name or 'system'} {self.action} {self.object_repr}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise RuntimeError("audit events are append-only")
