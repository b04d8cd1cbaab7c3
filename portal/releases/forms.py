import json

from django import forms

from portal.api.parsers import NUL_REFUSED, contains_nul
from portal.registry.models import name_validator
from portal.releases import targets
from portal.releases.choices import Strategy
from portal.releases.models import Environment


class JsonFieldsForm(forms.Form):
    """A form with fields holding a JSON document (``clean_<field>`` calls ``_json``)."""

    def _json(self, name, kind):
        raw = self.cleaned_data.get(name) or ""
        if not raw.strip():
            return kind()
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as e:
            raise forms.ValidationError(f"not valid JSON: {e}") from e
        if not isinstance(value, kind):
            raise forms.ValidationError(f"expected a JSON {kind.__name__}")
        if contains_nul(value):
            raise forms.ValidationError(NUL_REFUSED)
        return value


class RequestForm(JsonFieldsForm):
    environment = forms.ModelChoiceField(queryset=Environment.objects.none())
    strategy = forms.ChoiceField(choices=Strategy.choices, initial=Strategy.CANARY)
    strategy_params = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3}),
        help_text='The rollout\'s parameters as JSON, e.g. {"steps": [{"weight": 0.25, '
                  '"bake_seconds": 300}, {"weight": 1.0, "bake_seconds": 300}]} for a canary; '
                  "empty: the defaults")
    breaking_change = forms.BooleanField(
        required=False, label="Breaking interface change",
        help_text="The version's inputs differ from those of the version serving now (names, "
                  "order, count or types): callers must change too. Released directly or by "
                  "blue/green only; approvers must acknowledge it")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                             help_text="What changed and why it should ship")

    def __init__(self, *args, project=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["environment"].queryset = Environment.objects.filter(project=project)

    def clean_strategy_params(self):
        return self._json("strategy_params", dict)


class ReviewForm(forms.Form):
    comment = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}),
                              help_text="Required: what you checked and why you decide so")
    acknowledge_breaking_change = forms.BooleanField(
        required=False, label="I acknowledge this breaking interface change",
        help_text="Callers sending the inputs of the version serving now will get errors "
                  "once this version serves")


def _target_choices():
    return [(t.name, f"{t.name} ({t.backend}{': ' + t.description if t.description else ''})")
            for t in targets.targets().values()]


class EnvironmentForm(JsonFieldsForm):
    name = forms.CharField(max_length=64, help_text="e.g. staging, production")
    description = forms.CharField(required=False)
    target = forms.ChoiceField(
        choices=_target_choices,
        help_text="Where it deploys: one of the targets your operator defined")
    settings = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                               help_text='What the target lets a project choose, as JSON, e.g. '
                                         '{"namespace": "ml-team"} on Kubernetes; none on '
                                         'the local machine')
    required_approvals = forms.IntegerField(min_value=1, max_value=5, initial=1)
    gates = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                            help_text='Metric rules as JSON, e.g. [{"metric": "roc_auc", '
                                      '"min": 0.9}, {"metric": "roc_auc", "max_drop": 0.01}]')
    approval_ttl_hours = forms.IntegerField(min_value=1, initial=72)
    # Empty is None: the service gives the name's default (production: champion).
    release_alias = forms.CharField(
        required=False, empty_value=None, max_length=64, validators=[name_validator],
        label="Alias a successful release moves",
        help_text="The model's alias that points at the version released once its rollout "
                  "succeeds, e.g. champion; empty: champion for production, none for others")

    def clean_settings(self):
        return self._json("settings", dict)

    def clean_gates(self):
        return self._json("gates", list)
