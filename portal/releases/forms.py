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


# What an A/B test can measure, by the model's task: (value, words, kind, higher is better).
# Never "conversion" by default for a classifier: the requester chooses.
OUTCOMES = {
    "classification": [
        ("correct", "Answer confirmed correct (share of cases whose true outcome matched)",
         "binary", True),
        ("missed_positive", "Missed positive (a case cleared that turned out positive)",
         "binary", False),
        ("false_alarm", "False alarm (a case flagged that turned out negative)",
         "binary", False),
        ("conversion", "Conversion (the person acted on the answer: a business outcome)",
         "binary", True),
    ],
    "regression": [
        ("absolute_error", "Absolute error (|prediction − true value|, lower is better)",
         "numeric", False),
        ("squared_error", "Squared error (lower is better)", "numeric", False),
        ("outcome", "Business value reported per request (higher is better)", "numeric", True),
    ],
}
# The release form's fields for each strategy's parameters, shown for the strategies named.
PARAMETER_GROUPS = [
    ("Canary steps", "canary", ["canary_steps", "bake_minutes"]),
    ("A/B test", "ab", ["split_percent", "outcome_metric"]),
    ("How long", "ab shadow", ["duration_hours"]),
    ("Limits the candidate must stay within", "canary ab shadow bluegreen",
     ["max_error_percent", "max_p99_ratio", "min_requests"]),
    ("Shadow", "shadow", ["max_disagreement_percent"]),
]


def _percent(value):
    return None if value is None else round(value / 100, 6)


class RequestForm(JsonFieldsForm):
    """A release request. The strategy's parameters come from their own fields (empty: the
    rollout's defaults) merged over the JSON of ``strategy_params`` (anything else the API
    takes); the service checks them, with the API's messages (``_check_strategy_params``)."""

    environment = forms.ModelChoiceField(queryset=Environment.objects.none(),
                                         empty_label="Choose where it goes")
    strategy = forms.ChoiceField(choices=Strategy.choices, initial=Strategy.CANARY,
                                 widget=forms.Select(attrs={"data-shows": "strategy"}))
    canary_steps = forms.CharField(
        required=False, label="Traffic steps (% to the candidate)",
        widget=forms.TextInput(attrs={"placeholder": "10, 25, 50, 100"}),
        help_text="Each step's share of traffic, ending at 100; empty: 10, 25, 50, 100")
    bake_minutes = forms.FloatField(
        required=False, min_value=0, label="Bake time per step (minutes)",
        widget=forms.NumberInput(attrs={"placeholder": "1", "step": "any"}),
        help_text="How long each step runs and is analysed before the next")
    split_percent = forms.FloatField(
        required=False, min_value=0, max_value=100, label="Traffic to the candidate (%)",
        widget=forms.NumberInput(attrs={"placeholder": "50", "step": "any"}))
    outcome_metric = forms.ChoiceField(
        required=False, label="What decides the test",
        help_text="The outcome your application reports back for each answer")
    duration_hours = forms.FloatField(
        required=False, min_value=0, label="Duration (hours)",
        widget=forms.NumberInput(attrs={"placeholder": "1", "step": "any"}))
    max_error_percent = forms.FloatField(
        required=False, min_value=0, max_value=100, label="Highest error rate (%)",
        widget=forms.NumberInput(attrs={"placeholder": "1", "step": "any"}),
        help_text="Server errors of the candidate; above it, the rollout rolls back")
    max_p99_ratio = forms.FloatField(
        required=False, min_value=0, label="Slowest p99 latency (× the stable's)",
        widget=forms.NumberInput(attrs={"placeholder": "1.5", "step": "any"}))
    min_requests = forms.IntegerField(
        required=False, min_value=1, label="Requests before judging",
        widget=forms.NumberInput(attrs={"placeholder": "100"}))
    max_disagreement_percent = forms.FloatField(
        required=False, min_value=0, max_value=100, label="Highest disagreement (%)",
        widget=forms.NumberInput(attrs={"placeholder": "5", "step": "any"}),
        help_text="Share of answers differing from the stable's")
    strategy_params = forms.CharField(
        required=False, widget=forms.Textarea(attrs={"rows": 3, "class": "mono"}),
        label="More parameters (JSON)",
        help_text='Anything else the API takes, e.g. {"failure_limit": 2}; the fields above '
                  "win over it")
    breaking_change = forms.BooleanField(
        required=False, label="Breaking interface change",
        help_text="The version's inputs differ from those of the version serving now (names, "
                  "order, count or types): callers must change too. Released directly or by "
                  "blue/green only; approvers must acknowledge it")
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False,
                             help_text="What changed and why it should ship")

    def __init__(self, *args, project=None, task="classification", **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["environment"].queryset = Environment.objects.filter(
            project=project, archived_at__isnull=True)
        self.fields["environment"].label_from_instance = lambda e: e.name
        self.outcomes = {value: (kind, better)
                         for value, _, kind, better in OUTCOMES.get(task, [])}
        self.fields["outcome_metric"].choices = [("", "Choose what the test measures")] + [
            (value, words) for value, words, _, _ in OUTCOMES.get(task, [])]
        self.sources = {}  # parameter path → the field it came from (for errors)

    def groups(self):
        """(legend, strategies, bound fields) of the parameter fieldsets."""
        return [(legend, shown, [self[name] for name in names])
                for legend, shown, names in PARAMETER_GROUPS]

    def clean_strategy_params(self):
        return self._json("strategy_params", dict)

    def clean_canary_steps(self):
        raw = (self.cleaned_data.get("canary_steps") or "").replace("%", "")
        try:
            return [float(p) for p in raw.replace(";", ",").split(",") if p.strip()]
        except ValueError as e:
            raise forms.ValidationError("give percentages separated by commas, e.g. "
                                        "10, 25, 50, 100") from e

    def clean(self):
        data = super().clean()
        params = dict(data.get("strategy_params") or {})
        strategy = data.get("strategy")
        self._only_shown(data, strategy)
        self._canary(data, params)
        self._put(params, "split", _percent(data.get("split_percent")), "split_percent")
        self._put(params, "duration_seconds", data.get("duration_hours") and
                  data["duration_hours"] * 3600, "duration_hours")
        limits = {"max_error_rate": _percent(data.get("max_error_percent")),
                  "max_p99_ratio": data.get("max_p99_ratio"),
                  "min_requests": data.get("min_requests"),
                  "max_disagreement": _percent(data.get("max_disagreement_percent"))}
        field_of = {"max_error_rate": "max_error_percent", "max_p99_ratio": "max_p99_ratio",
                    "min_requests": "min_requests",
                    "max_disagreement": "max_disagreement_percent"}
        for key, value in limits.items():
            if value is not None:
                params["thresholds"] = {**params.get("thresholds", {}), key: value}
                self.sources[f"thresholds.{key}"] = field_of[key]
        self._outcome(data, params, strategy)
        data["strategy_params"] = params
        return data

    def _only_shown(self, data, strategy):
        """The fieldsets of other strategies are hidden: what they still hold is neither
        sent nor judged (leftovers from a strategy chosen first)."""
        shown = {name for _, strategies, names in PARAMETER_GROUPS
                 if strategy in strategies.split() for name in names}
        for _, _, names in PARAMETER_GROUPS:
            for name in set(names) - shown:
                self._errors.pop(name, None)
                data[name] = None

    def _put(self, params, key, value, field):
        if value is not None and value != "":
            params[key] = value
            self.sources[key] = field

    def _canary(self, data, params):
        steps, bake = data.get("canary_steps"), data.get("bake_minutes")
        if not steps and bake is None:
            return
        if not steps:  # a bake time for the default steps
            steps = [10, 25, 50, 100]
        step = {} if bake is None else {"bake_seconds": bake * 60}
        params["steps"] = [{"weight": _percent(w), **step} for w in steps]
        self.sources["steps"] = "canary_steps"
        if bake is not None:
            self.sources["bake"] = "bake_minutes"

    def _outcome(self, data, params, strategy):
        metric = data.get("outcome_metric")
        if strategy == Strategy.AB and not metric and "outcome" not in params:
            self.add_error("outcome_metric", "Choose what decides the test: the outcome your "
                                             "application reports for each answer.")
        elif metric:
            kind, better = self.outcomes[metric]
            params["outcome"] = {"metric": metric, "kind": kind, "higher_is_better": better}
            self.sources["outcome"] = "outcome_metric"

    def field_of(self, path: str | None, detail: str = "") -> str | None:
        """The form field an error about ``strategy_params.<path>`` belongs on: the field
        the parameter came from. A refusal of the whole parameters (what the rollout's spec
        says, with no path) goes on the field whose parameter it names."""
        if not path or not path.startswith("strategy_params"):
            return path.split(".", 1)[0] if path else path
        inner = path[len("strategy_params."):] if "." in path else ""
        if "bake" in self.sources and "bake" in (inner or detail):  # "step 1 bakes 3 s"
            return self.sources["bake"]
        for key in (inner.split("[", 1)[0], ".".join(inner.split(".")[:2]),
                    inner.split(".", 1)[0]):
            if key in self.sources:
                return self.sources[key]
        if not inner:
            for key, field in self.sources.items():
                words = key.rsplit(".", 1)[-1].rstrip("s").replace("_seconds", "")
                if words in detail or words.replace("_", " ") in detail:
                    return field
        return "strategy_params"


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


class EnvironmentEditForm(EnvironmentForm):
    """An environment's protection rules and target, as its owner changes them (its name
    stays: URLs, endpoints and the audit trail know it by it)."""

    def __init__(self, *args, environment, **kwargs):
        kwargs["initial"] = {
            "description": environment.description, "target": environment.target,
            "settings": json.dumps(environment.settings) if environment.settings else "",
            "required_approvals": environment.required_approvals,
            "gates": json.dumps(environment.gates, indent=1) if environment.gates else "",
            "approval_ttl_hours": environment.approval_ttl_hours,
            "release_alias": environment.release_alias}
        super().__init__(*args, **kwargs)
        del self.fields["name"]
        self.fields["release_alias"].help_text = (
            "The model's alias that points at the version released once its rollout "
            "succeeds, e.g. champion; empty: a release moves no alias")
        self.fields["required_approvals"].help_text = (
            "Approvers other than the requester who must approve; from the next review on")

    def clean_release_alias(self):
        return self.cleaned_data.get("release_alias") or ""
