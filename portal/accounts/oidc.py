"""Single sign-on through OpenID Connect (authorization code flow), with mozilla-django-oidc.

Off unless ``MODELGATE_OIDC_CLIENT_ID`` is set (see settings). People who sign in through
the provider are matched to portal accounts by verified email; a first sign-in creates an
account with no project roles (an owner adds them to projects) unless
``MODELGATE_OIDC_CREATE_USERS`` is off, and never with a usable password. Beyond the
library's checks (signature against the provider's keys, nonce, expiry) the id token must
name this client in ``aud`` and, when ``MODELGATE_OIDC_ISSUER`` is set, that issuer in
``iss``. Every sign-in is audited; the client secret and tokens are never logged.
"""

from __future__ import annotations

import logging
import re

import requests
from django.conf import settings
from django.core.exceptions import SuspiciousOperation
from django.http import Http404
from mozilla_django_oidc.auth import OIDCAuthenticationBackend
from mozilla_django_oidc.views import OIDCAuthenticationCallbackView, OIDCAuthenticationRequestView

log = logging.getLogger(__name__)


def enabled() -> bool:
    return bool(getattr(settings, "OIDC_RP_CLIENT_ID", ""))


class PortalOIDCBackend(OIDCAuthenticationBackend):
    def verify_token(self, token, **kwargs):
        payload = super().verify_token(token, **kwargs)
        audience = payload.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if self.OIDC_RP_CLIENT_ID not in audiences:
            raise SuspiciousOperation("the id token was issued to another client")
        issuer = getattr(settings, "MODELGATE_OIDC_ISSUER", "")
        if issuer and payload.get("iss") != issuer:
            raise SuspiciousOperation("the id token comes from another issuer")
        return payload

    def verify_claims(self, claims):
        # An address the provider has not verified could claim someone else's account.
        return bool(claims.get("email")) and claims.get("email_verified", True) is not False

    def filter_users_by_claims(self, claims):
        # Deactivated accounts match too, so the callback refuses them (rather than a new
        # account being made for a person an owner switched off).
        return self.UserModel.objects.filter(email__iexact=claims["email"])

    def create_user(self, claims):
        from portal.audit import services as audit

        user = self.UserModel.objects.create_user(
            _free_username(self.UserModel, claims), email=claims["email"],
            first_name=(claims.get("given_name") or "")[:150],
            last_name=(claims.get("family_name") or "")[:150])  # no usable password
        audit.record(None, "account.sso_created", user, object_type="auth.user",
                     object_repr=user.get_username(),
                     changes={"email": claims["email"], "via": "openid-connect"})
        return user

    def authenticate(self, request, **kwargs):
        user = super().authenticate(request, **kwargs)
        if user is not None and user.is_active:
            from portal.audit import services as audit

            audit.record(user, "account.sso_login", user, object_type="auth.user",
                         object_repr=user.get_username(), changes={"via": "openid-connect"})
        return user


def _free_username(model, claims) -> str:
    """The provider's preferred username (or the email's local part), made of the
    characters Django allows, with a number added if it is taken."""
    wanted = claims.get("preferred_username") or claims["email"].split("@")[0]
    base = re.sub(r"[^\w.@+-]", "-", wanted)[:140] or "user"
    name, n = base, 1
    while model.objects.filter(username__iexact=name).exists():
        n += 1
        name = f"{base}-{n}"
    return name


class SignIn(OIDCAuthenticationRequestView):
    """Off (404) unless single sign-on is configured."""

    def __init__(self, *args, **kwargs):
        if not enabled():
            raise Http404("single sign-on is not configured")
        super().__init__(*args, **kwargs)


class Callback(OIDCAuthenticationCallbackView):
    def __init__(self, *args, **kwargs):
        if not enabled():
            raise Http404("single sign-on is not configured")
        super().__init__(*args, **kwargs)

    def get(self, request):
        try:
            return super().get(request)
        except SuspiciousOperation as e:  # a token or claims refused: say so on the login page
            log.warning("single sign-on refused: %s", e)
            return self.login_failure()
        except requests.RequestException as e:  # the provider away or answering an error
            log.warning("single sign-on failed: the provider answered %s",
                        type(e).__name__)
            return self.login_failure()

    def login_failure(self):
        from portal.accounts.signals import record_failure  # account.login_failed

        user = getattr(self, "user", None)  # set when the account was found but deactivated
        record_failure(self.request, user.get_username() if user is not None else "")
        return super().login_failure()
