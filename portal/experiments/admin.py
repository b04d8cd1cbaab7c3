from django.contrib import admin

from portal.audit.admin import ReadOnlyAdmin
from portal.experiments.models import Experiment, ExperimentDecision, VariantTotal


class VariantTotalInline(admin.TabularInline):
    model = VariantTotal
    fields = readonly_fields = ["variant", "n", "total", "total_sq"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Experiment)
class ExperimentAdmin(ReadOnlyAdmin):
    """A/B tests change through feedback and decisions (API and pages), never here."""

    list_display = ["deployment", "metric", "kind", "split", "generation", "decision",
                    "sequential_p", "created_at"]
    list_filter = ["kind", "decision"]
    inlines = [VariantTotalInline]


@admin.register(ExperimentDecision)
class ExperimentDecisionAdmin(ReadOnlyAdmin):
    list_display = ["experiment", "decision", "extend_hours", "decided_by", "created_at"]
    list_filter = ["decision"]
