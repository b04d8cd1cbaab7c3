"""Whether mail reaches people, and the address links in it start with."""

from urllib.parse import urlsplit

from django.conf import settings

# Backends that deliver nothing to the person: with these the owner is shown the link.
UNDELIVERED_MAIL_BACKENDS = {"django.core.mail.backends.console.EmailBackend",
                             "django.core.mail.backends.dummy.EmailBackend"}
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "0.0.0.0"}


def mail_configured() -> bool:
    """Whether mail reaches people (``MODELGATE_EMAIL_BACKEND`` is not the console default)."""
    return settings.EMAIL_BACKEND not in UNDELIVERED_MAIL_BACKENDS


def base_url_for_mail() -> str | None:
    """The address links in e-mails start with (``MODELGATE_BASE_URL``); ``None`` in the
    production profile while it is still a loopback address (the default when neither it
    nor ``DJANGO_CSRF_TRUSTED_ORIGINS`` is set): such a link would lead the person who
    opens it to their own machine. System check modelgate.W103 says so at start."""
    base = settings.MODELGATE_BASE_URL
    if settings.MODELGATE_PRODUCTION and urlsplit(base).hostname in LOOPBACK_HOSTS:
        return None
    return base
