"""Sign-ins in the audit trail: successes, failures and lockouts, on the login pages (the
portal's and the admin's), the token login API and single sign-on alike.

Events are about ``auth.user``; ``changes`` holds the username tried, the path and the method
(``password`` or ``openid-connect``), and ``remote_addr`` the client address django-axes
counts failures by (the forwarded one behind a trusted proxy):

- ``account.login``: a session sign-in (Django's ``user_logged_in``) or a token login.
  Single sign-on records its own ``account.sso_login`` (``portal/accounts/oidc.py``);
- ``account.login_failed``: a wrong password, an unknown username (the string tried, never
  a link to an account: it may not exist), a single sign-on refused. No actor;
- ``account.locked_out``: django-axes locked the username out from that address, recorded
  once per pair and cool-off. Attempts refused during a lockout add nothing to the trail.

Anyone can fail to sign in, the trail is never purged and every append queues on the chain's
lock, so what one address can write is bounded: after ``MODELGATE_AUDIT_SIGNIN_FAILURES``
(30) failure and lockout events within the cool-off, one ``account.login_failures_suppressed``
event says so and that address's failures are only counted (``modelgate_signins_total``)
until the window has passed.
"""

from __future__ import annotations

import ipaddress
from datetime import timedelta

from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_login_failed
from django.dispatch import receiver
from django.utils import timezone

from portal.audit import services as audit
from portal.audit.activity import SIGNINS
from portal.audit.models import AuditEvent

LOGIN = "account.login"
FAILED = "account.login_failed"
LOCKED_OUT = "account.locked_out"
SUPPRESSED = "account.login_failures_suppressed"
OIDC_BACKEND = "portal.accounts.oidc.PortalOIDCBackend"
DEFAULT_FAILURE_EVENTS = 30


def record_sign_in(request, user) -> None:
    """A user signed in: called for session sign-ins by the signal, by the token login."""
    SIGNINS.labels("succeeded").inc()
    name = user.get_username()
    audit.record(user, LOGIN, user, object_type="auth.user", object_repr=name,
                 changes=_details(request, name), remote_addr=_client_address(request))


def record_failure(request, username) -> None:
    """A sign-in failed (once per request: Django's signal and the single sign-on view may
    both report the same one)."""
    if request is None or getattr(request, "_modelgate_signin_failed", False):
        return
    request._modelgate_signin_failed = True
    SIGNINS.labels("failed").inc()
    name, addr, since = _text(username, 150), _client_address(request), _window_start()
    if _locked_out_since(name, addr, since):
        return  # refused during a lockout, which is recorded
    _record_bounded(FAILED, request, name, addr, since)


@receiver(user_logged_in, dispatch_uid="modelgate-audit-signed-in")
def _signed_in(sender, request, user, **kwargs):
    if request is None or getattr(user, "backend", "") == OIDC_BACKEND:
        return  # single sign-on records account.sso_login itself
    record_sign_in(request, user)


@receiver(user_login_failed, dispatch_uid="modelgate-audit-sign-in-failed")
def _sign_in_failed(sender, credentials=None, request=None, **kwargs):
    record_failure(request, (credentials or {}).get(get_user_model().USERNAME_FIELD))


@receiver(user_locked_out, dispatch_uid="modelgate-audit-locked-out")
def _locked_out(sender, request=None, username=None, **kwargs):
    # django-axes sends this for the attempt that locks a pair out and again for every
    # attempt refused while it is.
    if request is None or getattr(request, "_modelgate_locked_out", False):
        return
    request._modelgate_locked_out = True
    SIGNINS.labels("locked_out").inc()
    record_failure(request, username)  # the attempt itself first (skipped if refused)
    name, addr, since = _text(username, 150), _client_address(request), _window_start()
    if not _locked_out_since(name, addr, since):
        _record_bounded(LOCKED_OUT, request, name, addr, since,
                        minutes=int(_cool_off().total_seconds() // 60))


def _record_bounded(action, request, name, addr, since, **extra) -> None:
    limit = getattr(settings, "MODELGATE_AUDIT_SIGNIN_FAILURES", DEFAULT_FAILURE_EVENTS)
    recent = len(AuditEvent.objects.filter(
        action__in=(FAILED, LOCKED_OUT, SUPPRESSED), remote_addr=addr, created_at__gte=since)
        .values_list("pk", flat=True)[:limit + 1])
    if recent > limit:
        return
    if recent == limit:
        audit.record(None, SUPPRESSED, None, object_type="auth.user",
                     object_repr=f"sign-ins from {addr or 'an unknown address'}",
                     changes={"events": limit, "minutes": int(_cool_off().total_seconds() // 60),
                              "path": _text(request.path, 200)},
                     remote_addr=addr)
        return
    audit.record(None, action, None, object_type="auth.user", object_repr=_repr(name),
                 changes={**_details(request, name), **extra}, remote_addr=addr)


def _locked_out_since(name, addr, since) -> bool:
    return AuditEvent.objects.filter(action=LOCKED_OUT, object_repr=_repr(name),
                                     remote_addr=addr, created_at__gte=since).exists()


def _details(request, name) -> dict:
    path = _text(getattr(request, "path", ""), 200)
    method = "openid-connect" if path.startswith("/oidc/") else "password"
    return {"username": name, "path": path, "method": method}


def _repr(name: str) -> str:
    return name or "(no username)"


def _text(value, limit: int) -> str:
    # PostgreSQL refuses NUL in text and JSON; anything else an attacker types is kept.
    return str(value or "")[:limit].replace("\x00", "\\x00")


def _client_address(request) -> str | None:
    addr = getattr(request, "axes_ip_address", None)
    if addr is None:
        from axes.helpers import get_client_ip_address

        addr = get_client_ip_address(request)
    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return None


def _cool_off() -> timedelta:
    value = getattr(settings, "AXES_COOLOFF_TIME", None)
    return value if isinstance(value, timedelta) else timedelta(minutes=15)


def _window_start():
    return timezone.now() - _cool_off()
