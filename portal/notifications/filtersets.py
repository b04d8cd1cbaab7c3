import django_filters

from portal.api.filters import InProjectFilterSet
from portal.notifications.choices import DeliveryStatus
from portal.notifications.models import Delivery, Webhook


class WebhookFilterSet(InProjectFilterSet):
    class Meta:
        model = Webhook
        fields = ["project", "project_slug", "name", "active"]


class DeliveryFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event = django_filters.CharFilter()

    class Meta:
        model = Delivery
        fields = ["status", "event"]
