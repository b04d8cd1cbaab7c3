from django.contrib import admin

from portal.audit.admin import ReadOnlyAdmin
from portal.retraining.models import RetrainingRule, RetrainingTrigger


@admin.register(RetrainingRule)
class RetrainingRuleAdmin(ReadOnlyAdmin):
    """Read-only: rules change through the pages and the API (contributors, audited)."""

    list_display = ["name", "model", "condition", "target", "active", "last_triggered_at"]
    list_filter = ["condition", "active"]
    search_fields = ["name", "model__name"]
    exclude = ["params"]  # a webhook's address may hold a token


@admin.register(RetrainingTrigger)
class RetrainingTriggerAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "model", "rule_name", "state", "attempts", "run_id"]
    list_filter = ["state", "condition", "kind"]
    search_fields = ["model__name", "rule_name", "run_id"]
    exclude = ["params"]
