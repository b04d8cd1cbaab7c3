from django.contrib import admin

from portal.audit.admin import ReadOnlyAdmin
from portal.notifications.models import Delivery, Webhook


@admin.register(Webhook)
class WebhookAdmin(ReadOnlyAdmin):
    """Read-only: webhooks change through the pages and the API (owners, audited)."""

    list_display = ["name", "project", "active", "created_by", "created_at"]
    list_filter = ["active", "project"]
    search_fields = ["name", "project__name"]
    exclude = ["secret", "url"]  # the URL's path may hold a token too
    readonly_fields = ["host"]

    @admin.display(description="receiver")
    def host(self, webhook):
        return webhook.redacted_url


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "webhook", "event", "status", "attempts", "last_status_code",
                    "delivered_at"]
    list_filter = ["status", "event"]
    search_fields = ["webhook__name", "event"]
