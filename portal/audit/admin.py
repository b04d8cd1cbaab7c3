from django.contrib import admin
from django.contrib.auth.models import Permission
from django.core.exceptions import FieldDoesNotExist

from portal.audit import services
from portal.audit.models import AuditEvent


class AuditedAdmin(admin.ModelAdmin):
    """Admin whose saves and deletes land in the audit trail like any other change.

    One event per save with the fields the form changed, as ``{"from", "to"}``. Many-to-many
    fields (a user's groups and permissions, a group's permissions) are sorted lists of
    names, compared around the saving of the related rows, so the event is recorded then.
    Fields in ``audit_secret_fields`` never enter the trail: a change to one is recorded as
    ``"<field>_changed": true``.
    """

    audit_secret_fields = ("password", "key_hash", "secret")

    def audit_extra(self, request, obj, form, change) -> dict:
        """More to record about a save (subclasses)."""
        return {}

    def audit_deleted(self, obj) -> dict:
        """What to record about a row being deleted (subclasses)."""
        return {}

    def save_model(self, request, obj, form, change):
        fields, related, secrets = [], [], []
        for name in form.changed_data:
            try:
                field = obj._meta.get_field(name)
            except FieldDoesNotExist:
                continue  # a form-only field (password1, ...)
            if name in self.audit_secret_fields:
                secrets.append(name)
            elif field.many_to_many:
                related.append(name)
            else:
                fields.append(name)
        before = {}
        if change and obj.pk:
            old = type(obj).objects.get(pk=obj.pk)
            before = {f: getattr(old, f) for f in fields}
        super().save_model(request, obj, form, change)
        changes = services.diff(before, {f: getattr(obj, f) for f in fields})
        changes.update({f"{name}_changed": True for name in secrets})
        changes.update(self.audit_extra(request, obj, form, change))
        if related:  # recorded by save_related, once the related rows are saved too
            request.__dict__.setdefault("_audit_pending", {})[id(form)] = (changes, related)
            return
        self._audit_save(request, obj, change, changes)

    def save_related(self, request, form, formsets, change):
        pending = getattr(request, "_audit_pending", {}).pop(id(form), None)
        if pending is None:
            return super().save_related(request, form, formsets, change)
        changes, related = pending
        obj = form.instance
        before = {f: related_names(obj, f) for f in related} if change else {}
        super().save_related(request, form, formsets, change)
        changes.update(services.diff(before, {f: related_names(obj, f) for f in related}))
        self._audit_save(request, obj, change, changes)

    def _audit_save(self, request, obj, change, changes):
        action = f"{obj._meta.model_name}.{'update' if change else 'create'}"
        services.record(request.user, action, obj, changes=changes)

    def delete_model(self, request, obj):
        services.record(request.user, f"{obj._meta.model_name}.delete", obj,
                        changes=self.audit_deleted(obj))
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


def related_names(obj, field: str) -> list[str]:
    """A many-to-many field's rows by name; permissions as ``app_label.codename``."""
    rows = getattr(obj, field).all()
    if rows.model is Permission:
        return sorted(f"{p.content_type.app_label}.{p.codename}"
                      for p in rows.select_related("content_type"))
    return sorted(str(row) for row in rows)


class ReadOnlyAdmin(admin.ModelAdmin):
    """For rows that only change through services (or never): the admin shows, never edits."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor_name", "action", "object_repr", "via", "remote_addr"]
    list_filter = ["action", "via", "object_type"]
    search_fields = ["object_repr", "actor_name", "action"]
