from rest_framework.permissions import BasePermission

from portal.accounts.models import ApiToken
from portal.api.permissions import required_scope, route_of
from portal.audit.activity import note_scope_use
from portal.errors import NotAllowed


class TokenScopes(BasePermission):
    """A request authenticated by an API token may only do what the token's scopes allow,
    as ``portal.api.permissions.ROUTE_SCOPES`` says per route: ``read`` for safe methods,
    ``write`` for changes, ``approve`` for an approver's acts (reviews, promote/resume/keep,
    A/B decisions, the champion alias, monitoring thresholds). Scopes narrow a token below
    its owner's roles; they never widen them. Sessions (the browser) are not limited by
    scopes."""

    def has_permission(self, request, view):
        token = request.auth
        if not isinstance(token, ApiToken):
            return True
        route, action = route_of(view, request)
        handler = "options" if action == "metadata" else action  # DRF's implicit OPTIONS
        if handler is None or not hasattr(view, handler):
            return True  # no handler for this method: DRF answers 405, nothing runs
        kwargs = getattr(view, "kwargs", None) or {}
        needed = required_scope(route, action, request.method, kwargs)
        if needed is None:
            raise NotAllowed(f"API tokens cannot use {request.method} {request.path} yet: no "
                             "token scope was decided for it; use a signed-in session",
                             code="scope_undeclared")
        held = token.scopes or []
        if needed not in held:
            raise NotAllowed(f"this API token lacks the {needed!r} scope (it has "
                             f"{', '.join(held) or 'none'}); create one with it",
                             code="scope_required")
        note_scope_use(request, view, needed)  # uses of approve are audited
        return True
