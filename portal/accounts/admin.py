from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.hashers import is_password_usable
from django.contrib.auth.models import Group

from portal.accounts.models import ApiToken, Invitation, Membership, RateLimit
from portal.audit import services as audit
from portal.audit.admin import AuditedAdmin, related_names


@admin.register(Membership)
class MembershipAdmin(AuditedAdmin):
    list_display = ["project", "user", "role", "created_at"]
    list_filter = ["role", "project"]
    search_fields = ["user__username", "project__name"]
    autocomplete_fields = ["user", "project"]


@admin.register(Invitation)
class InvitationAdmin(AuditedAdmin):
    """Read only: owners invite and revoke, the invited person answers (all audited); staff
    who must give someone a role at once use the memberships above."""

    list_display = ["project", "username", "user", "role", "status", "invited_by", "created_at",
                    "expires_at"]
    list_filter = ["status", "role"]
    search_fields = ["username", "project__name"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedAdmin):
    list_display = ["name", "user", "prefix", "created_at", "last_used_at", "expires_at",
                    "revoked_at"]
    readonly_fields = ["prefix", "key_hash", "created_at", "last_used_at"]
    search_fields = ["name", "user__username", "prefix"]

    def has_add_permission(self, request):
        return False  # tokens are created by their owner, who must see the key once


# Who may do what in the portal itself: accounts, their flags, groups and permissions. Django
# registers these admins; they are registered again through AuditedAdmin so every create,
# change (is_superuser, is_staff, is_active, groups, permissions...) and delete is recorded.
# The password hash never is: "password_changed" says that it changed.
User = get_user_model()
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    def audit_extra(self, request, obj, form, change):
        return {} if change else {"password_changed": obj.has_usable_password()}

    def audit_deleted(self, obj):
        roles = [f"{m.project.slug}: {m.role}"
                 for m in Membership.objects.filter(user=obj).select_related("project")]
        before = {"is_active": obj.is_active, "is_staff": obj.is_staff,
                  "is_superuser": obj.is_superuser, "groups": related_names(obj, "groups"),
                  "user_permissions": related_names(obj, "user_permissions"),
                  "memberships": sorted(roles)}
        return {k: audit.change(v, None) for k, v in before.items()}

    def user_change_password(self, request, id, form_url=""):  # Django's signature
        # Django's view saves the new password itself (no save_model): compare the hashes.
        user = self.get_object(request, unquote(id)) if request.method == "POST" else None
        response = super().user_change_password(request, id, form_url)
        if user is not None:
            before = user.password
            after = User.objects.filter(pk=user.pk).values_list("password", flat=True).first()
            if after is not None and after != before:
                changes = {"password_changed": True}
                if is_password_usable(before) != is_password_usable(after):
                    changes["usable_password"] = audit.change(is_password_usable(before),
                                                              is_password_usable(after))
                audit.record(request.user, "user.update", user, changes=changes)
        return response


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    def audit_deleted(self, obj):
        return {"permissions": audit.change(related_names(obj, "permissions"), None),
                "users": audit.change(sorted(obj.user_set.values_list("username", flat=True)),
                                      None)}


@admin.register(RateLimit)
class RateLimitAdmin(AuditedAdmin):
    """An account's own rate for one scope of limited writes (decision 69)."""

    list_display = ["user", "scope", "rate", "reason", "created_at"]
    list_filter = ["scope"]
    search_fields = ["user__username", "reason"]
    autocomplete_fields = ["user"]
