from rest_framework import authentication, exceptions

from portal.accounts.services import authenticate_token


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """``Authorization: Token <key>`` against hashed, revocable, expiring tokens."""

    keyword = "Token"

    def authenticate_credentials(self, key):
        result = authenticate_token(key)
        if result is None:
            raise exceptions.AuthenticationFailed("invalid, expired or revoked token")
        return result
