from django.contrib import admin

from portal.accounts.models import ApiToken, Membership
from portal.audit.admin import AuditedAdmin


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "expires_at",
                    "revoked_at"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]
    search_fields = ["name", "user__username", "prefix"]

    def has_add_permission(self, request):
        return False  # tokens are created by their owner, who must see the key once
