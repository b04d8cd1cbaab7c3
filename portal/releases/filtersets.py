import django_filters

from portal.releases.choices import RequestStatus
from portal.releases.models import ApprovalRequest, Deployment, Environment


class EnvironmentFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="project_id")
    project_slug = django_filters.CharFilter(field_name="project__slug")

    class Meta:
        model = Environment
        fields = ["project", "project_slug", "name", "backend"]


class ApprovalRequestFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="environment__project_id")
    environment = django_filters.NumberFilter(field_name="environment_id")
    model = django_filters.NumberFilter(field_name="version__model_id")
    version = django_filters.NumberFilter(field_name="version_id")
    status = django_filters.ChoiceFilter(choices=RequestStatus.choices)

    class Meta:
        model = ApprovalRequest
        fields = ["project", "environment", "model", "version", "status", "strategy"]


class DeploymentFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="environment__project_id")
    environment = django_filters.NumberFilter(field_name="environment_id")
    model = django_filters.NumberFilter(field_name="model_id")
    status = django_filters.CharFilter()

    class Meta:
        model = Deployment
        fields = ["project", "environment", "model", "status", "strategy"]
