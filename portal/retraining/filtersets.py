import django_filters

from portal.retraining.choices import Condition, TriggerState
from portal.retraining.models import RetrainingRule, RetrainingTrigger


class RuleFilterSet(django_filters.FilterSet):
    model = django_filters.NumberFilter(field_name="model_id")
    project_slug = django_filters.CharFilter(field_name="model__project__slug")
    condition = django_filters.ChoiceFilter(choices=Condition.choices)

    class Meta:
        model = RetrainingRule
        fields = ["model", "project_slug", "condition", "active"]


class TriggerFilterSet(django_filters.FilterSet):
    model = django_filters.NumberFilter(field_name="model_id")
    rule = django_filters.NumberFilter(field_name="rule_id")
    project_slug = django_filters.CharFilter(field_name="model__project__slug")
    state = django_filters.ChoiceFilter(choices=TriggerState.choices)

    class Meta:
        model = RetrainingTrigger
        fields = ["model", "rule", "project_slug", "state"]
