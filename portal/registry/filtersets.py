import django_filters

from portal.api.filters import DateTimeFilter, InProjectFilterSet
from portal.registry.choices import Task, VersionStatus
from portal.registry.models import Dataset, ModelVersion, Project, RegisteredModel


class ProjectFilterSet(django_filters.FilterSet):
    slug = django_filters.CharFilter()

    class Meta:
        model = Project
        fields = ["slug"]


class RegisteredModelFilterSet(InProjectFilterSet):
    name = django_filters.CharFilter()
    task = django_filters.ChoiceFilter(choices=Task.choices)

    class Meta:
        model = RegisteredModel
        fields = ["project", "project_slug", "name", "task"]


class ModelVersionFilterSet(django_filters.FilterSet):
    project = django_filters.NumberFilter(field_name="model__project_id")
    project_slug = django_filters.CharFilter(field_name="model__project__slug")
    model = django_filters.NumberFilter(field_name="model_id")
    model_name = django_filters.CharFilter(field_name="model__name")
    status = django_filters.ChoiceFilter(choices=VersionStatus.choices)
    tag = django_filters.CharFilter(field_name="tags__name")
    label = django_filters.CharFilter()
    dataset = django_filters.NumberFilter(field_name="dataset_id")
    created_after = DateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = DateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = ModelVersion
        fields = ["project", "project_slug", "model", "model_name", "status", "tag", "label",
                  "dataset", "created_after", "created_before"]


class DatasetFilterSet(InProjectFilterSet):
    name = django_filters.CharFilter()
    sha256 = django_filters.CharFilter()

    class Meta:
        model = Dataset
        fields = ["project", "project_slug", "name", "sha256"]
