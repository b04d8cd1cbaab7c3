"""Notification e-mails link to the portal's pages with absolute addresses
(``MODELGATE_BASE_URL``): a path alone cannot be opened from a mail client."""

import pytest
from django.core import mail

from portal.notifications import services
from portal.notifications.choices import Event

pytestmark = pytest.mark.django_db


def test_emails_link_to_pages_under_the_base_url(users, project, settings,
                                                 django_capture_on_commit_callbacks):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.MODELGATE_BASE_URL = "https://modelgate.example.com/portal"
    users["approver"].email = "alice@example.org"
    users["approver"].save()
    with django_capture_on_commit_callbacks(execute=True):
        services.notify(project, Event.RELEASE_REQUESTED,
                        {"model": "tumor-classifier", "version": 3, "url": "/releases/12/"})
    [message] = mail.outbox
    assert "Details: https://modelgate.example.com/portal/releases/12/" in message.body
    assert services.absolute_url("https://elsewhere.example.org/x/") == \
        "https://elsewhere.example.org/x/"
