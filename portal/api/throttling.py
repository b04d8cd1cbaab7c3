"""Rate limits on the API's expensive or sensitive writes, per user.

A viewset (or view) names the scope of each limited action in ``throttle_scopes``
(``{"create": "tokens"}``); the rates are ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``
(``MODELGATE_RATE_<SCOPE>`` in the environment). One account may be given its own rate for
a scope (``portal.accounts.throttling``, set by staff in the admin): a high-volume
integration gets more without the limit being lifted for everyone (decision 69). Reads are
never limited here. The counts live in the cache, shared by every web process when the
cache is Redis.
"""

import re

from django.conf import settings
from rest_framework.throttling import ScopedRateThrottle

_RATE = re.compile(r"^\s*(\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)\s*$")


def scopes() -> set[str]:
    return set(settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"])


def parse_rate(rate: str) -> tuple[int, str]:
    """``"6000/min"`` -> (6000, "min"); a clear ValueError for anything DRF would misread."""
    match = _RATE.match(rate or "")
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{rate!r} is not a rate: write requests per period, such as "
                         '"600/min", "20/hour" or "5/second"')
    return int(match.group(1)), match.group(2)


class ActionThrottle(ScopedRateThrottle):
    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        scopes = getattr(view, "throttle_scopes", {})
        scope = scopes.get(getattr(view, "action", None)) or scopes.get(request.method.lower())
        if not scope:
            return True
        view.throttle_scope = scope
        self._request_user = getattr(request, "user", None)
        return super().allow_request(request, view)

    def get_rate(self):
        user = getattr(self, "_request_user", None)
        if user is not None and user.is_authenticated:
            own = self.own_rate(user, self.scope)
            if own:
                return own
        return super().get_rate()

    def own_rate(self, user, scope: str) -> str | None:
        """An account's own rate for this scope, if it has one (the accounts app's
        ``AccountThrottle`` reads them; this layer knows no accounts)."""
        return None
