from django.contrib import admin

from portal.audit import services
from portal.audit.models import AuditEvent


class AuditedAdmin(admin.ModelAdmin):
    """Admin whose saves and deletes land in the audit trail like any other change."""

    def save_model(self, request, obj, form, change):
        before = {}
        if change and obj.pk:
            old = type(obj).objects.get(pk=obj.pk)
            before = {f: getattr(old, f) for f in form.changed_data if hasattr(old, f)}
        super().save_model(request, obj, form, change)
        after = {f: getattr(obj, f) for f in form.changed_data if hasattr(obj, f)}
        action = f"{obj._meta.model_name}.{'update' if change else 'create'}"
        services.record(request.user, action, obj, changes=services.diff(before, after))

    def delete_model(self, request, obj):
        services.record(request.user, f"{obj._meta.model_name}.delete", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.delete_model(request, obj)


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
