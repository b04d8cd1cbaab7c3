from urllib.parse import urlsplit

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models

from portal.notifications.choices import DeliveryStatus
from portal.registry.models import Project
from portal.reversing import reverse


class Webhook(models.Model):
    """An HTTP endpoint told about a project's events, with the secret that signs each body.

    The secret is stored as is because every delivery must be signed with it; it is shown once
    on creation and never again (not in the API, the pages, the admin or the audit trail).
    """

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="webhooks")
    name = models.CharField(max_length=100)
    url = models.CharField(max_length=500,
                           validators=[URLValidator(schemes=["http", "https"])],
                           help_text="Where events are POSTed (http or https)")
    secret = models.CharField(max_length=100, editable=False)
    events = models.JSONField(default=list, blank=True,
                              help_text="Event names to send; empty means every event")
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                   on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project__name", "name"]
        constraints = [
            models.UniqueConstraint(fields=["project", "name"], name="webhook_unique_name"),
        ]

    def __str__(self):
        return f"{self.project.slug}/{self.name}"

    def get_absolute_url(self):
        return reverse("notifications:webhook", args=[self.project.slug, self.pk])

    def subscribes_to(self, event: str) -> bool:
        return not self.events or event in self.events

    @property
    def redacted_url(self) -> str:
        """Scheme and host only: paths and queries often carry a token (Slack, Teams...)."""
        return redacted_url(self.url)


def redacted_url(url: str) -> str:
    """A webhook address as non-owners see it: scheme and host only (its path or query
    often carries a token: Slack, Teams...)."""
    parts = urlsplit(str(url))
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return f"{parts.scheme}://{host}/…"


class Delivery(models.Model):
    """One event sent (or to be sent) to one webhook, with its attempts so far.

    ``attempts`` and ``next_attempt_at`` are the claim: an attempt is only made by the update
    that still finds the attempt count it read and a due time that has come (see
    ``services.deliver``).
    """

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=40)
    payload = models.JSONField(default=dict, help_text="The event's data (the body's data key)")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices,
                              default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # The delivery log of one webhook, newest first.
            models.Index(fields=["webhook", "-created_at"], name="delivery_webhook_recent"),
            # The sweep that re-queues deliveries whose task was lost.
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
        ]
        verbose_name_plural = "deliveries"

    def __str__(self):
        return f"{self.event} to {self.webhook}"
