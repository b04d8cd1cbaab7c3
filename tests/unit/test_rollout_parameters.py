"""ops.rollout.spec.parse_parameters: a release request's strategy parameters, every name
known and every value of its kind, refused with the parameter's path in a sentence (before:
an unknown key surfaced as "CanaryStep.__init__() got an unexpected keyword argument"); and
the canary steps a spec accepts."""

from __future__ import annotations

import math

import pytest

from ops.plan import Variant
from ops.rollout import CanaryStep, RolloutError, RolloutSpec, Thresholds
from ops.rollout.spec import ParameterError, parse_parameters

STABLE = Variant("v1", 1, "file:///a/v1.skops", "a" * 64, 1.0)
CANDIDATE = Variant("v2", 2, "file:///a/v2.skops", "b" * 64, 1.0)
PYTHON_WORDS = ("__init__", "argument", "TypeError", "not supported between", "iterable",
                "NoneType", "<class")


def test_known_parameters_become_the_specs_arguments():
    parsed = parse_parameters({
        "steps": [{"weight": 0.5, "bake_seconds": 60}, [1.0, 90]],
        "thresholds": {"max_error_rate": 0.02, "min_requests": 50},
        "failure_limit": 2.0, "sample_size": None, "split": 0.3,
        "outcome": {"metric": "conversion"}}, also=frozenset({"outcome"}))
    assert parsed == {"steps": (CanaryStep(0.5, 60), CanaryStep(1.0, 90)),
                      "thresholds": Thresholds(max_error_rate=0.02, min_requests=50),
                      "failure_limit": 2, "sample_size": None, "split": 0.3}
    RolloutSpec("canary", "churn", CANDIDATE, STABLE, **parsed)


def test_every_field_of_the_thresholds_is_a_parameter():
    """A threshold added to ``Thresholds`` is accepted without listing it again."""
    from dataclasses import fields

    for f in fields(Thresholds):
        if f.default is not None:
            parse_parameters({"thresholds": {f.name: f.default}})


@pytest.mark.parametrize(("params", "path", "words"), [
    ({"steps": [{"weight": 1.0, "bake": 60}]}, "steps[0].bake",
     "unknown parameter steps[0].bake; valid here: bake_seconds, weight"),
    ({"thresholds": {"max_errors": 0.1}}, "thresholds.max_errors",
     "unknown parameter thresholds.max_errors; valid here: "),
    ({"bake_seconds": 60}, "bake_seconds", "unknown parameter bake_seconds; valid here: "),
    ({"stable": {"name": "x"}}, "stable", "unknown parameter stable"),
    ({"outcome": {"metric": "x"}}, "outcome", "unknown parameter outcome"),
    ({"steps": [{"bake_seconds": 60}]}, "steps[0].weight", "steps[0].weight is required"),
    ({"steps": "fast"}, "steps", "steps must be a non-empty list of steps"),
    ({"steps": []}, "steps", "steps must be a non-empty list of steps"),
    ({"steps": [[0.5, 60, 3]]}, "steps[0]", "steps[0] must be an object of weight, "
                                            "bake_seconds"),
    ({"steps": [{"weight": "half"}]}, "steps[0].weight",
     'steps[0].weight must be a number, not "half"'),
    ({"steps": [{"weight": None}]}, "steps[0].weight", "must be a number, not null"),
    ({"thresholds": 3}, "thresholds", "thresholds must be an object of max_error_rate"),
    ({"thresholds": {"max_error_rate": "high"}}, "thresholds.max_error_rate",
     'thresholds.max_error_rate must be a number, not "high"'),
    ({"thresholds": {"max_error_rate": -1}}, "thresholds",
     "thresholds.max_error_rate must be a number of at least 0"),
    ({"split": "0.5"}, "split", 'split must be a number, not "0.5"'),
    ({"split": True}, "split", "split must be a number, not true"),
    ({"check_interval_seconds": math.nan}, "check_interval_seconds", "must be a number"),
    ({"duration_seconds": 10 ** 400}, "duration_seconds", "must be a number or null, not 1000"),
    ({"failure_limit": 1.5}, "failure_limit", "failure_limit must be a whole number, not 1.5"),
    ({"failure_limit": None}, "failure_limit", "failure_limit must be a whole number, not null"),
    ({"sample_size": [1]}, "sample_size", "sample_size must be a whole number or null"),
])
def test_unknown_or_malformed_parameters_are_named_by_their_path(params, path, words):
    with pytest.raises(ParameterError) as refused:
        parse_parameters(params)
    assert refused.value.path == path
    assert words in refused.value.detail
    assert not any(w in refused.value.detail for w in PYTHON_WORDS), refused.value.detail
    assert refused.value.code == ("unknown_parameter" if "unknown" in words
                                  else "invalid_parameter")


def test_parameters_must_be_an_object():
    with pytest.raises(ParameterError, match="must be a JSON object"):
        parse_parameters([{"weight": 1.0}])


@pytest.mark.parametrize("weights", [
    [0.5, 0.25, 1.0], [0.5, 0.5, 1.0], [0.0, 1.0], [-0.5, 1.0], [math.nan, 1.0],
    [0.5, 1.5, 1.0],
])
def test_canary_weights_are_strictly_increasing_within_zero_and_one(weights):
    with pytest.raises(RolloutError, match="strictly increasing, each above 0 and at most 1"):
        RolloutSpec("canary", "churn", CANDIDATE, STABLE,
                    steps=[CanaryStep(w) for w in weights])


def test_a_canary_must_end_with_all_the_traffic():
    with pytest.raises(RolloutError, match="end with weight 1.0"):
        RolloutSpec("canary", "churn", CANDIDATE, STABLE, steps=[CanaryStep(0.5),
                                                                 CanaryStep(2.0)])
