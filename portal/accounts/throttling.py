"""The API's throttle, with the rates staff give one account (decision 69), and the same
limits on the pages that do what a throttled API action does (``check_page_rate``)."""

import math
from types import SimpleNamespace

from portal.api.throttling import ActionThrottle
from portal.errors import DomainError


class AccountThrottle(ActionThrottle):
    def own_rate(self, user, scope: str) -> str | None:
        from portal.accounts.models import RateLimit

        return (RateLimit.objects.filter(user=user, scope=scope)
                .values_list("rate", flat=True).first())


class RateLimited(DomainError):
    status = 429
    code = "throttled"


def check_page_rate(request, scope: str) -> None:
    """Count a page's write against the API's rate for ``scope`` (``uploads``...): the
    same throttle, rate (the account's own, if staff gave one) and count as the API's, so a
    browser is no way around the limit. ``RateLimited`` past it (a view calls this in its
    form's action: the refusal is shown on the form)."""
    throttle = AccountThrottle()
    view = SimpleNamespace(throttle_scopes={request.method.lower(): scope}, action=None)
    if throttle.allow_request(request, view):
        return
    wait = throttle.wait()
    again = f"; try again in {math.ceil(wait)} s" if wait else ""
    raise RateLimited(f"Too many requests: at most {throttle.rate} for {scope} (with the "
                      f"API's){again}.")
