from rest_framework.permissions import BasePermission


class IsStaff(BasePermission):
    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff)


class TokenScopes(BasePermission):
    """A request authenticated by an API token may only do what the token's scopes allow:
    ``read`` for safe methods, ``write`` for changes, ``approve`` for the actions a viewset
    lists in ``approve_actions`` (reviews, promotions, A/B decisions, the champion alias).
    Scopes narrow a token below its owner's roles; they never widen them. Sessions (the
    browser) are not limited by scopes."""

    message = "this API token lacks the scope this needs"

    def has_permission(self, request, view):
        from portal.accounts.models import ApiToken

        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        if request.method in ("GET", "HEAD", "OPTIONS"):
            needed = "read"
        elif getattr(view, "action", None) in getattr(view, "approve_actions", ()):
            needed = "approve"
        else:
            needed = "write"
        if needed not in (token.scopes or []):
            self.message = (f"this API token lacks the {needed!r} scope (it has "
                            f"{', '.join(token.scopes) or 'none'}); create one with it")
            return False
        return True
