"""A release request's strategy parameters as the API schema types them: one object per
strategy, its parameters with their types and defaults (issue 15: the canary step format
was found by trial and error).

The names, types and defaults are read from ``ops.rollout``'s dataclasses (``RolloutSpec``,
``CanaryStep``, ``Thresholds``) and which strategy reads which from
``STRATEGY_PARAMETERS``, so a parameter added there is documented at once; only the words
are here. ``ops.rollout.spec.parse_parameters`` stays the check: it accepts every parameter
under any strategy, so each strategy's object also allows the others.
"""

import typing
from dataclasses import MISSING, asdict, fields

from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from ops.rollout import CanaryStep, RolloutSpec, Strategy, Thresholds
from ops.rollout.spec import COMMON_PARAMETERS, STRATEGY_PARAMETERS
from portal.experiments.choices import OutcomeKind

HELP = {
    "steps": "The candidate's traffic share at each step (0 < weight <= 1, strictly "
             "increasing, the last 1.0) and how long each bakes (at least one analysis "
             "window); a step may also be written [weight, bake_seconds]",
    "weight": "The candidate's share of the traffic during the step",
    "bake_seconds": "How long the step runs before the next one",
    "split": "The candidate's (B's) share of the traffic, between 0 and 1",
    "duration_seconds": "How long the comparison runs (null: until sample_size)",
    "sample_size": "Or until the candidate answered this many requests (null: by duration)",
    "check_seconds": "How long the idle candidate is checked before traffic switches",
    "warm_seconds": "How long the stable is kept warm after the switch",
    "thresholds": "Limits the candidate must stay within to pass an analysis",
    "failure_limit": "Failed analyses (over the whole rollout) that roll it back",
    "check_interval_seconds": "How often the candidate is analysed (within the operator's "
                              "bounds: MODELGATE_ROLLOUT_MIN_CHECK_SECONDS to 300)",
    "max_inconclusive_checks": "Pause after this many inconclusive analyses past a step's "
                               "bake (null: by time only)",
    "max_inconclusive_seconds": "Or after this long inconclusive (null: by count only)",
    "serve_timeout_seconds": "How long the final plan may take to be served before the "
                             "stable is restored",
    "max_error_rate": "The candidate's share of failed (5xx) requests",
    "max_p99_ratio": "Candidate p99 latency / stable p99 latency",
    "max_disagreement": "Shadow: the share of answers differing from the stable's",
    "min_requests": "Requests an analysis needs before it judges anything",
    "min_p99_seconds": "A candidate whose p99 stays under this is not failed for latency",
    "max_client_error_excess": "The candidate's share of refused (4xx) requests minus the "
                               "stable's (null: not judged)",
    "max_prediction_shift": "Classifiers: the share of predictions changing class "
                            "(null: shown, not judged)",
    "min_spread_ratio": "Regressors: candidate / stable spread of predictions",
    "max_p99_seconds": "Without a stable latency to compare with: the candidate's p99 "
                       "limit (null: min_p99_seconds alone)",
}


def _number(cls, name: str, **kwargs) -> serializers.Field:
    """A field of dataclass ``cls`` as a serializer field: its type, null if it may be
    None, and its default."""
    field = next(f for f in fields(cls) if f.name == name)
    kinds = typing.get_args(typing.get_type_hints(cls)[name]) or \
        (typing.get_type_hints(cls)[name],)
    whole = int in kinds and float not in kinds
    options = {"allow_null": type(None) in kinds, "help_text": HELP.get(name, "")}
    if field.default is MISSING:
        options["required"] = True
    else:
        options["required"] = False
        if field.default is not None:
            options["default"] = field.default
    options.update(kwargs)
    return (serializers.IntegerField if whole else serializers.FloatField)(**options)


def _serializer(name: str, doc: str, declared: dict) -> type[serializers.Serializer]:
    return type(name, (serializers.Serializer,), {"__doc__": doc, **declared})


CanaryStepSerializer = _serializer(
    "CanaryStepSerializer", "One canary step.",
    {f.name: _number(CanaryStep, f.name) for f in fields(CanaryStep)})
ThresholdsSerializer = _serializer(
    "ThresholdsSerializer", "Limits a candidate must stay within; below min_requests "
    "nothing is judged.", {f.name: _number(Thresholds, f.name) for f in fields(Thresholds)})


class OutcomeSerializer(serializers.Serializer):
    """What an A/B test measures: the feedback sent to /api/v1/feedback/."""

    metric = serializers.CharField(max_length=64, required=False,
                                   help_text="Its name (default conversion for binary "
                                             "outcomes, outcome for numeric ones)")
    kind = serializers.ChoiceField(choices=OutcomeKind.choices, required=False,
                                   help_text="Default binary for classifiers, numeric for "
                                             "regressors")
    higher_is_better = serializers.BooleanField(required=False, default=True)


def _parameter(name: str) -> serializers.Field:
    if name == "steps":
        return CanaryStepSerializer(
            many=True, required=False, help_text=HELP["steps"],
            default=[asdict(s) for s in RolloutSpec.__dataclass_fields__["steps"].default])
    if name == "thresholds":
        return ThresholdsSerializer(required=False, help_text=HELP["thresholds"])
    return _number(RolloutSpec, name)


LABELS = {Strategy.AB: "AB", Strategy.BLUEGREEN: "BlueGreen"}

#: One parameters object per strategy, in ``Strategy``'s order.
PARAMETERS = {
    strategy: _serializer(
        f"{LABELS.get(strategy, strategy.value.title())}ParametersSerializer",
        f"Parameters of a {strategy.value} release (strategy {strategy.value}); all optional.",
        {name: _parameter(name)
         for name in (*STRATEGY_PARAMETERS[strategy], *COMMON_PARAMETERS)}
        | ({"outcome": OutcomeSerializer(required=False)} if strategy == Strategy.AB else {}))
    for strategy in Strategy
}


class StrategyParamsField(serializers.JSONField):
    """A release request's ``strategy_params``: checked by the services
    (``parse_parameters``), typed in the schema by ``StrategyParamsExtension``."""


class StrategyParamsExtension(OpenApiSerializerFieldExtension):
    target_class = StrategyParamsField

    def map_serializer_field(self, auto_schema, direction):
        if direction == "request":
            return {"anyOf": [auto_schema.resolve_serializer(s, direction).ref
                              for s in PARAMETERS.values()],
                    "description": "The parameters of the strategy asked for (the object "
                                   "named after it); each has its defaults"}
        # Answers echo what was asked, as it was written (a step as [weight, bake_seconds]
        # too): typed as the request's object, not held to it.
        return {"type": "object", "additionalProperties": {},
                "description": "The strategy parameters as requested"}
