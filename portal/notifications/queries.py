from django.db.models import OuterRef, Subquery

from portal.accounts.services import filter_visible
from portal.notifications.models import Delivery, Webhook


def webhooks_for(user):
    """Webhooks the user may see, each with its last delivery's status and time."""
    latest = Delivery.objects.filter(webhook=OuterRef("pk")).order_by("-created_at", "-id")
    return (filter_visible(Webhook.objects.all(), user, "project")
            .select_related("project", "created_by")
            .annotate(last_delivery_status=Subquery(latest.values("status")[:1]),
                      last_delivery_at=Subquery(latest.values("created_at")[:1])))


def deliveries_of(webhook):
    return Delivery.objects.filter(webhook=webhook).order_by("-created_at", "-id")
