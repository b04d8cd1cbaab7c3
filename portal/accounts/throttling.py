"""The API's throttle, with the rates staff give one account (decision 69)."""

from portal.api.throttling import ActionThrottle


class AccountThrottle(ActionThrottle):
    def own_rate(self, user, scope: str) -> str | None:
        from portal.accounts.models import RateLimit

        return (RateLimit.objects.filter(user=user, scope=scope)
                .values_list("rate", flat=True).first())
