"""Rate limits on the API's expensive or sensitive writes, per user.

A viewset (or view) names the scope of each limited action in ``throttle_scopes``
(``{"create": "tokens"}``); the rates are ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]``
(``MODELGATE_RATE_<SCOPE>`` in the environment). Reads are never limited here. The counts
live in the cache, shared by every web process when the cache is Redis.
"""

from rest_framework.throttling import ScopedRateThrottle


class ActionThrottle(ScopedRateThrottle):
    def allow_request(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return True
        scopes = getattr(view, "throttle_scopes", {})
        scope = scopes.get(getattr(view, "action", None)) or scopes.get(request.method.lower())
        if not scope:
            return True
        view.throttle_scope = scope
        return super().allow_request(request, view)
