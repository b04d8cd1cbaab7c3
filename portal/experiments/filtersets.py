import django_filters

from portal.experiments.models import Experiment


class ExperimentFilterSet(django_filters.FilterSet):
    """``?deployment=<id>``: the A/B test of one rollout (a CI pipeline that started it);
    ``?project=``, ``?environment=``, ``?model=`` for the others."""

    deployment = django_filters.NumberFilter(field_name="deployment_id")
    project = django_filters.NumberFilter(field_name="deployment__environment__project_id")
    environment = django_filters.NumberFilter(field_name="deployment__environment_id")
    model = django_filters.NumberFilter(field_name="deployment__model_id")

    class Meta:
        model = Experiment
        fields = ["deployment", "project", "environment", "model", "decision"]
