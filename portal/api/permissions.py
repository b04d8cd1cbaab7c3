"""Which token scope each API route needs: the vocabulary, the table and the lookup.

The table (``ROUTE_SCOPES``) is declared by the API's router next to the routes
(``portal/api/urls.py``); the check itself, on the requests an API token authenticates, is
``portal.accounts.permissions.TokenScopes``. Nothing here knows an app.
"""

from rest_framework.permissions import SAFE_METHODS, BasePermission

# The scopes of an API token (``portal.accounts.choices.TokenScope``).
READ, WRITE, APPROVE = "read", "write", "approve"


class IsStaff(BasePermission):
    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff)


# The one place that says which token scope each API route needs, declared by the router
# (portal/api/urls.py). Keys: the router's basename (or the URL name of a plain view), then
# the viewset action (or the plain view's handler method). A value is the scope the
# action's changes need (read for actions that only read), or a function of the URL's
# arguments. Safe methods always need read; a change never needs less than write. A route
# or action missing here is refused to every token (``scope_undeclared``), and
# tests/security/test_token_scopes.py, which walks every route, fails until it is given
# one. Approve is for the approver's acts (decision 8 and 33).
ROUTE_SCOPES: dict[str, dict[str, object]] = {}


def required_scope(route: str | None, action: str | None, method: str,
                   kwargs: dict | None = None) -> str | None:
    """The scope a token needs for ``method`` on ``route``'s ``action``; None when no
    decision was taken (the request is refused)."""
    actions = ROUTE_SCOPES.get(route or "")
    if actions is None:
        return None
    if method in SAFE_METHODS and action in ("metadata", "options"):
        return READ  # OPTIONS: DRF's description of the route
    needed = actions.get(action or "")
    if callable(needed):
        needed = needed(kwargs or {})
    if needed not in (READ, WRITE, APPROVE):
        return None
    if method in SAFE_METHODS:
        return READ
    return needed if needed != READ else None  # a change declared as a read: no decision


def route_of(view, request) -> tuple[str | None, str | None]:
    """(route, action) of a request as ``ROUTE_SCOPES`` names them."""
    basename = getattr(view, "basename", None)
    if basename is not None:
        return basename, getattr(view, "action", None)
    match = getattr(request, "resolver_match", None)
    method = request.method.lower()
    return (match.url_name if match else None), "get" if method == "head" else method
