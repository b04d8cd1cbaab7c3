"""ops.rollout.limits_problem: how often and how much a rollout may make the workers work
(issue 18: ``check_interval_seconds: 0.001`` queued about twenty decisions a second)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.plan import Variant
from ops.rollout import (
    Analysis,
    CanaryStep,
    RolloutLimits,
    RolloutSpec,
    RolloutState,
    Served,
    decide,
    limits_problem,
)
from ops.rollout.spec import MIN_ANALYSIS_WINDOW_SECONDS

STABLE = Variant("v1", 1, "file:///a/v1.skops", "a" * 64, 1.0)
CANDIDATE = Variant("v2", 2, "file:///a/v2.skops", "b" * 64, 1.0)


def spec(strategy="canary", **kwargs) -> RolloutSpec:
    return RolloutSpec(strategy, "churn", candidate=CANDIDATE, stable=STABLE, **kwargs)


@pytest.mark.parametrize("strategy", ["direct", "canary", "ab", "bluegreen", "shadow"])
def test_the_defaults_are_within_the_limits(strategy):
    assert limits_problem(spec(strategy)) is None


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"check_interval_seconds": 0.001}, "check_interval_seconds must be between 5 and 300, "
                                        "not 0.001"),
    ({"check_interval_seconds": 4.9}, "between 5 and 300"),
    ({"check_interval_seconds": 3600}, "between 5 and 300"),
    ({"check_interval_seconds": math.inf}, "finite number"),
    ({"check_interval_seconds": math.nan}, "finite number"),
    ({"steps": [CanaryStep(w / 25, 60) for w in range(1, 26)]},
     "a canary has at most 20 steps, not 25"),
    ({"steps": [CanaryStep(0.5, 2), CanaryStep(1.0, 60)]},
     "step 1 bakes 2 s, less than the 30 s one analysis reads"),
    ({"steps": [CanaryStep(0.5, 0), CanaryStep(1.0, 0)]},
     "step 1 bakes 0 s, less than the 30 s one analysis reads"),
    ({"steps": [CanaryStep(0.5, 60), CanaryStep(1.0, 45)], "check_interval_seconds": 60},
     "step 2 bakes 45 s, less than the 60 s one analysis reads (one check interval"),
    ({"steps": [CanaryStep(0.5, math.nan), CanaryStep(1.0)]}, "finite number"),
    ({"max_inconclusive_checks": 100_000}, "max_inconclusive_checks is at most 1000"),
    ({"failure_limit": 1_000}, "failure_limit is at most 100"),
    ({"strategy": "ab", "duration_seconds": 100 * 86400}, "duration_seconds is at most"),
    ({"strategy": "bluegreen", "warm_seconds": 1e12}, "warm_seconds is at most"),
    ({"max_inconclusive_checks": None, "max_inconclusive_seconds": 1e9},
     "max_inconclusive_seconds is at most"),
])
def test_specs_past_the_limits_are_refused_saying_which(kwargs, words):
    kwargs = {"strategy": "canary", **kwargs}
    problem = limits_problem(spec(**kwargs))
    assert problem is not None and words in problem


def test_each_step_bakes_at_least_what_one_analysis_reads():
    """Before: a canary whose every bake was 0 s was accepted, and each step advanced on
    its first passing check, judged on the 30 s of traffic before it, the step before's."""
    assert MIN_ANALYSIS_WINDOW_SECONDS == 30
    steps = [CanaryStep(0.25, 30), CanaryStep(0.5, 30), CanaryStep(1.0, 45)]
    assert limits_problem(spec(steps=steps, check_interval_seconds=10)) is None
    assert limits_problem(spec(steps=steps, check_interval_seconds=30)) is None
    assert "step 1 bakes 30 s" in limits_problem(spec(steps=steps, check_interval_seconds=60))
    zeros = spec(steps=[CanaryStep(0.25, 0), CanaryStep(1.0, 0)])
    assert "step 1 bakes 0 s" in limits_problem(zeros)
    assert limits_problem(zeros, RolloutLimits(min_bake_seconds=0)) is not None  # interval


def test_the_operator_sets_the_interval_floor_and_the_step_count():
    fast = spec(check_interval_seconds=1, steps=[CanaryStep(0.5, 1), CanaryStep(1.0, 1)])
    assert "between 5 and" in limits_problem(fast)
    assert "less than the 30 s" in limits_problem(fast,
                                                  RolloutLimits(min_check_interval_seconds=1))
    assert limits_problem(fast, RolloutLimits(min_check_interval_seconds=1,
                                              min_bake_seconds=1)) is None
    three = spec(steps=[CanaryStep(0.25), CanaryStep(0.5), CanaryStep(1.0)])
    assert "at most 2 steps" in limits_problem(three, RolloutLimits(max_steps=2))


@settings(max_examples=60, deadline=None)
@given(interval=st.floats(5, 300), bakes=st.lists(st.one_of(st.just(0.0), st.floats(0, 3600)),
                                                  min_size=1, max_size=20),
       requests=st.sampled_from([None, 0, 50, 10_000]))
def test_within_the_limits_decisions_come_at_most_every_interval_but_at_step_changes(
        interval, bakes, requests):
    """Whatever the analysis says, a rollout within the limits is decided again no sooner
    than ``min_check_interval_seconds`` after a decision, except when a step changes or its
    bake ends between two checks (at most twice per step)."""
    bakes = [max(b, interval, MIN_ANALYSIS_WINDOW_SECONDS) for b in bakes]
    weights = [(i + 1) / len(bakes) for i in range(len(bakes))]
    rollout = spec(steps=[CanaryStep(w, b) for w, b in zip(weights, bakes, strict=True)],
                   check_interval_seconds=interval)
    assert limits_problem(rollout) is None
    analysis = Analysis(requests=requests, error_rate=0.0, p99_latency=0.1,
                        stable_p99_latency=0.1)
    state, now, short_waits = RolloutState.initial(3), 0.0, 0
    for _ in range(500):
        # The backend serves each plan by the next decision (a promoting rollout looks every
        # 2 s until it does).
        decision = decide(rollout, state, analysis, now,
                          served=Served(state.generation, True))
        if decision.wait_seconds is None or state.status.value == "paused":
            break
        if decision.wait_seconds < 5:
            short_waits += 1
        # a decision takes time (a few queries at least): a wait of 1e-13 s at the end of
        # a bake is followed by a decision a little later, not at the same float instant
        state, now = decision.state, now + max(decision.wait_seconds, 0.001)
    assert short_waits <= 2 * len(bakes) + 1
