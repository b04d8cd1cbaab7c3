import django_filters

from portal.notifications.choices import DeliveryStatus
from portal.notifications.models import Delivery, Webhook


class WebhookFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="project_id")
    project_slug = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = Webhook
        fields = ["project", "project_slug", "name", "active"]


class DeliveryFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event = django_filters.CharFilter()

    class Meta:
        model = Delivery
        fields = ["status", "event"]
