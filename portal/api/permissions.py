from rest_framework.permissions import SAFE_METHODS, BasePermission

from portal.accounts.choices import TokenScope
from portal.errors import NotAllowed

READ, WRITE, APPROVE = TokenScope.READ.value, TokenScope.WRITE.value, TokenScope.APPROVE.value


class IsStaff(BasePermission):
    def has_permission(self, request, view):
        return bool(request.user and request.user.is_staff)


def alias_scope(kwargs) -> str:
    """Moving or removing a protected alias (``champion``: what production serves) is an
    approver's act; other aliases are a contributor's."""
    from portal.registry.services import PROTECTED_ALIASES

    return APPROVE if kwargs.get("alias") in PROTECTED_ALIASES else WRITE


# The one place that says which token scope each API route needs. Keys: the router's
# basename (or the URL name of a plain view), then the viewset action (or the plain view's
# handler method). A value is the scope the action's changes need (read for actions that
# only read), or a function of the URL's arguments. Safe methods always need read; a change
# never needs less than write. A route or action missing here is refused to every token
# (``scope_undeclared``), and tests/security/test_token_scopes.py, which walks every route,
# fails until it is given one. Approve is for the approver's acts (decision 8 and 33).
ROUTE_SCOPES: dict[str, dict[str, object]] = {
    "project": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE},
    "membership": {"list": READ, "retrieve": READ, "partial_update": WRITE, "destroy": WRITE},
    # Members join by invitation: owners invite and revoke, the invited person answers.
    "invitation": {"list": READ, "retrieve": READ, "create": WRITE, "revoke": WRITE,
                   "accept": WRITE, "decline": WRITE},
    "model": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE,
              "versions": WRITE, "aliases": READ, "alias": alias_scope,
              "monitoring": APPROVE},
    "version": {"list": READ, "retrieve": READ, "artifact": READ, "lineage": READ,
                "explanation": READ, "explain": WRITE, "explain_result": READ,
                "archive": WRITE},
    "dataset": {"list": READ, "retrieve": READ, "create": WRITE},
    "environment": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE},
    "approval-request": {"list": READ, "retrieve": READ, "create": WRITE, "cancel": WRITE,
                         "approve": APPROVE, "reject": APPROVE},
    "deployment": {"list": READ, "retrieve": READ, "pause": WRITE, "rollback": WRITE,
                   "resume": APPROVE, "promote": APPROVE, "keep": APPROVE},
    "webhook": {"list": READ, "retrieve": READ, "create": WRITE, "partial_update": WRITE,
                "destroy": WRITE, "deliveries": READ, "test": WRITE},
    "alert": {"list": READ, "retrieve": READ, "acknowledge": WRITE, "silence": WRITE,
              "unsilence": WRITE},
    "experiment": {"list": READ, "retrieve": READ, "readout": READ, "decide": APPROVE},
    # Tokens also have a ceiling: a token only creates tokens with scopes it holds
    # (accounts.services.create_token).
    "token": {"list": READ, "retrieve": READ, "create": WRITE, "destroy": WRITE},
    "audit-event": {"list": READ, "retrieve": READ},
    "feedback": {"post": WRITE},
    "api-root": {"get": READ},
}


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


class TokenScopes(BasePermission):
    """A request authenticated by an API token may only do what the token's scopes allow,
    as ``ROUTE_SCOPES`` says per route: ``read`` for safe methods, ``write`` for changes,
    ``approve`` for an approver's acts (reviews, promote/resume/keep, A/B decisions, the
    champion alias, monitoring thresholds). Scopes narrow a token below its owner's roles;
    they never widen them. Sessions (the browser) are not limited by scopes."""

    def has_permission(self, request, view):
        from portal.accounts.models import ApiToken

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
        from portal.audit.activity import note_scope_use  # uses of approve are audited
        note_scope_use(request, view, needed)
        return True
