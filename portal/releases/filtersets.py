import django_filters

from portal.api.filters import InProjectFilterSet
from portal.releases.choices import RequestStatus
from portal.releases.models import ApprovalRequest, Deployment, Environment


class EnvironmentFilterSet(InProjectFilterSet):
    class Meta:
        model = Environment
        fields = ["project", "project_slug", "name", "backend"]


class InEnvironmentFilterSet(django_filters.FilterSet):
    """Base of the filter sets of what belongs to one environment: ``?environment=<id>``, or
    ``?project=<id>`` for every environment of a project."""

    project = django_filters.NumberFilter(field_name="environment__project_id")
    environment = django_filters.NumberFilter(field_name="environment_id")


class ApprovalRequestFilterSet(InEnvironmentFilterSet):
    model = django_filters.NumberFilter(field_name="version__model_id")
    version = django_filters.NumberFilter(field_name="version_id")
    status = django_filters.ChoiceFilter(choices=RequestStatus.choices)

    class Meta:
        model = ApprovalRequest
        fields = ["project", "environment", "model", "version", "status", "strategy"]


class DeploymentFilterSet(InEnvironmentFilterSet):
    model = django_filters.NumberFilter(field_name="model_id")
    status = django_filters.CharFilter()

    class Meta:
        model = Deployment
        fields = ["project", "environment", "model", "status", "strategy"]
