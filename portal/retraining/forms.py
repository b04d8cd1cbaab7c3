import json

from django import forms

from portal.retraining import targets
from portal.retraining.choices import Condition


class RuleForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. drift in production")
    condition = forms.ChoiceField(choices=Condition.choices)
    environment = forms.ChoiceField(required=False,
                                    help_text="Only alerts and tests in this environment")
    for_minutes = forms.IntegerField(initial=30, min_value=1, help_text=(
        "Drift: how long the critical drift must have fired. Accuracy: the window of "
        "feedback measured."))
    min_accuracy = forms.FloatField(required=False, help_text="Accuracy: retrain below this "
                                                              "rate, e.g. 0.85")
    min_outcomes = forms.IntegerField(initial=100, min_value=1, help_text=(
        "Accuracy: judge only with at least this many outcomes in the window"))
    target = forms.ChoiceField(help_text="Where the run starts: a target the operator "
                                         "connected, or this project's own signed webhook")
    params = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), initial="{}", help_text=(
        'The run\'s parameters as JSON: Airflow {"dag_id": "…"}; Kubeflow {"pipeline_id": '
        '"…", "pipeline_version_id": "…"}; GitHub {"workflow": "retrain.yml", "ref": "main"};'
        ' webhook {"url": "https://…"}'))
    cooldown_minutes = forms.IntegerField(initial=24 * 60, min_value=0,
                                          help_text="After a trigger, the rule waits this long")

    def __init__(self, *args, model=None, **kwargs):
        super().__init__(*args, **kwargs)
        environments = model.project.environments.filter(archived_at__isnull=True) \
            if model is not None else []
        self.fields["environment"].choices = [("", "any")] + [
            (e.name, e.name) for e in environments]
        self.fields["target"].choices = targets.names()

    def clean_params(self):
        try:
            params = json.loads(self.cleaned_data["params"] or "{}")
        except ValueError as e:
            raise forms.ValidationError(f"not JSON: {e}") from e
        if not isinstance(params, dict):
            raise forms.ValidationError("a JSON object, e.g. {\"dag_id\": \"retrain\"}")
        return params
