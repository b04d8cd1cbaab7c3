from django.contrib import admin

from portal.audit.admin import ReadOnlyAdmin
from portal.monitoring.models import Alert, DriftWindow, MonitorSettings, SyncStatus


@admin.register(Alert)
class AlertAdmin(ReadOnlyAdmin):
    """Alerts change through Prometheus and the alert pages (acknowledge, silence)."""

    list_display = ["name", "severity", "state", "project", "environment", "endpoint",
                    "variant", "feature", "starts_at", "ends_at"]
    list_filter = ["state", "severity", "source"]
    search_fields = ["name", "endpoint", "feature", "fingerprint"]


@admin.register(MonitorSettings)
class MonitorSettingsAdmin(ReadOnlyAdmin):
    """Changed through the API (validated and audited): PATCH /api/v1/models/{id}/monitoring/."""

    list_display = ["model", "drift_window_seconds", "max_error_rate",
                    "max_p99_latency_seconds", "no_traffic_minutes", "updated_at"]


@admin.register(DriftWindow)
class DriftWindowAdmin(ReadOnlyAdmin):
    list_display = ["environment", "endpoint", "variant", "version", "window_seconds",
                    "computed_at"]


@admin.register(SyncStatus)
class SyncStatusAdmin(ReadOnlyAdmin):
    list_display = ["job", "ok", "detail", "updated_at"]
