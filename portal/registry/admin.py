from django.contrib import admin

from portal.accounts.models import Membership
from portal.audit.admin import AuditedAdmin, ReadOnlyAdmin
from portal.registry.models import (
    Alias,
    Dataset,
    Explanation,
    ModelVersion,
    Project,
    RegisteredModel,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 1
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(AuditedAdmin):
    list_display = ["name", "slug", "allow_unsafe_artifacts", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [MembershipInline]

    def save_formset(self, request, form, formset, change):
        from portal.audit import services

        instances = formset.save(commit=False)
        for obj in formset.deleted_objects:
            services.record(request.user, "membership.delete", obj, project_id=obj.project_id)
            obj.delete()
        for obj in instances:
            created = obj.pk is None
            obj.save()
            services.record(request.user, f"membership.{'create' if created else 'update'}",
                            obj, changes={"role": obj.role}, project_id=obj.project_id)
        formset.save_m2m()


@admin.register(RegisteredModel)
class RegisteredModelAdmin(AuditedAdmin):
    list_display = ["name", "project", "task", "created_at"]
    list_filter = ["task", "project"]
    search_fields = ["name"]


@admin.register(ModelVersion)
class ModelVersionAdmin(ReadOnlyAdmin):
    """Read-only: versions are immutable and created through the API or the pages."""

    list_display = ["model", "number", "label", "status", "artifact_format", "created_at"]
    list_filter = ["status", "artifact_format"]
    search_fields = ["model__name", "label"]


@admin.register(Dataset)
class DatasetAdmin(AuditedAdmin):
    list_display = ["name", "project", "rows", "profile_status", "created_at"]
    readonly_fields = ["uri", "sha256", "size", "rows", "columns", "profile", "profile_status"]

    def has_add_permission(self, request):
        return False


@admin.register(Alias)
class AliasAdmin(ReadOnlyAdmin):
    """Read-only: aliases move through ``services.set_alias`` (role checks, audit)."""

    list_display = ["model", "name", "version", "updated_at"]


@admin.register(Explanation)
class ExplanationAdmin(ReadOnlyAdmin):
    """Computed by workers; shown on the version page."""

    list_display = ["version", "status", "method", "output", "sample_size", "seconds",
                    "updated_at"]
    list_filter = ["status", "method"]
    exclude = ["values", "rows", "outputs"]
