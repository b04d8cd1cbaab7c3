import django_filters

from portal.monitoring.choices import AlertState, Severity
from portal.monitoring.models import Alert


class AlertFilterSet(django_filters.FilterSet):
    project = django_filters.CharFilter(field_name="project__slug", label="Project (slug)")
    model = django_filters.CharFilter(field_name="model__name")
    environment = django_filters.CharFilter(field_name="environment__name")
    severity = django_filters.ChoiceFilter(choices=Severity.choices)
    state = django_filters.ChoiceFilter(choices=AlertState.choices)
    endpoint = django_filters.CharFilter()

    class Meta:
        model = Alert
        fields = ["project", "model", "environment", "severity", "state", "endpoint"]
