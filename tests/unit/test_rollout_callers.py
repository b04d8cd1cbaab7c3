"""ops.rollout's verdict on what callers feel beyond 5xx and latency: requests the candidate
refuses that the stable accepts, predictions collapsed against the stable's, and a latency
check that reaches a verdict at 100 % (no stable traffic to compare with)."""

from __future__ import annotations

import math

import pytest

from ops.plan import Variant
from ops.rollout import (
    Analysis,
    CanaryStep,
    RolloutSpec,
    RolloutState,
    Served,
    Status,
    Strategy,
    Thresholds,
    Verdict,
    decide,
    evaluate,
)

STABLE = Variant("v1", 1, "file:///a/v1.skops", "a" * 64, 0.5)
CANDIDATE = Variant("v2", 2, "file:///a/v2.skops", "b" * 64, 0.5)
BASE = dict(requests=1000, error_rate=0.0, p99_latency=0.05, stable_p99_latency=0.05)
MIX = {"0": 370, "1": 630}


def judged(analysis: Analysis, strategy=Strategy.CANARY, **thresholds):
    evaluation = evaluate(analysis, Thresholds(**thresholds), strategy)
    return evaluation.verdict, {m.metric: m for m in evaluation.measurements}


def test_a_candidate_refusing_every_request_fails_though_it_never_answers_5xx():
    verdict, by = judged(Analysis(**BASE, client_error_rate=1.0, stable_client_error_rate=0.0))
    assert verdict == Verdict.FAIL
    assert by["client_error_excess"].verdict == Verdict.FAIL
    assert "the candidate refused 100.0%" in by["client_error_excess"].detail
    assert by["error_rate"].verdict == Verdict.PASS  # what the old analysis saw


def test_refusals_the_stable_shares_are_the_callers_and_do_not_fail_the_candidate():
    # Callers send 3 % malformed requests: both variants refuse them alike.
    verdict, by = judged(Analysis(**BASE, client_error_rate=0.031, stable_client_error_rate=0.03))
    assert verdict == Verdict.PASS, by["client_error_excess"].detail


def test_without_a_stable_figure_refusals_are_judged_against_none_refused():
    verdict, by = judged(Analysis(**BASE, client_error_rate=0.2))
    assert verdict == Verdict.FAIL and "no stable figure" in by["client_error_excess"].detail


def test_refusals_are_not_judged_on_too_few_requests():
    verdict, by = judged(Analysis(**{**BASE, "requests": 20}, client_error_rate=1.0,
                                  stable_client_error_rate=0.0))
    assert verdict == Verdict.INCONCLUSIVE


@pytest.mark.parametrize("candidate", [{"1": 1000}, {"0": 998, "1": 2}])
def test_a_candidate_predicting_one_class_only_fails(candidate):
    verdict, by = judged(Analysis(**BASE, predictions=candidate, stable_predictions=MIX))
    assert verdict == Verdict.FAIL
    assert "one class only" in by["prediction_shift"].detail or \
        by["prediction_shift"].verdict == Verdict.FAIL


def test_a_retrained_model_with_a_similar_class_mix_passes():
    verdict, by = judged(Analysis(**BASE, predictions={"0": 385, "1": 615},
                                  stable_predictions=MIX))
    assert verdict == Verdict.PASS
    assert by["prediction_shift"].value == pytest.approx(0.015)


def test_a_class_mix_far_from_the_stables_is_shown_and_fails_only_past_a_limit_set():
    analysis = Analysis(**BASE, predictions={"0": 800, "1": 200}, stable_predictions=MIX)
    verdict, by = judged(analysis)  # a better model may change the mix: not judged by default
    assert verdict == Verdict.PASS and by["prediction_shift"].value == pytest.approx(0.43)
    assert "not judged" in by["prediction_shift"].detail
    verdict, by = judged(analysis, max_prediction_shift=0.25)
    assert verdict == Verdict.FAIL


def test_an_endpoint_whose_stable_too_predicts_one_class_is_not_a_collapse():
    verdict, _ = judged(Analysis(**BASE, predictions={"1": 1000}, stable_predictions={"1": 990,
                                                                                    "0": 10}))
    assert verdict == Verdict.PASS


def test_a_constant_regressor_fails_on_its_spread():
    verdict, by = judged(Analysis(**BASE, prediction_spread=0.0, stable_prediction_spread=12.0))
    assert verdict == Verdict.FAIL and by["prediction_spread_ratio"].verdict == Verdict.FAIL
    verdict, _ = judged(Analysis(**BASE, prediction_spread=11.0, stable_prediction_spread=12.0))
    assert verdict == Verdict.PASS


def test_a_shadow_is_judged_on_disagreement_not_on_refusals():
    verdict, by = judged(Analysis(**BASE, disagreement_rate=0.0, client_error_rate=1.0),
                         strategy=Strategy.SHADOW)
    assert verdict == Verdict.PASS and "client_error_excess" not in by


def test_nan_in_the_new_measurements_never_reads_as_a_pass():
    verdict, by = judged(Analysis(**BASE, client_error_rate=math.nan))
    assert "client_error_excess" not in by  # not measured: judged on the rest
    verdict, by = judged(Analysis(**BASE, predictions={"1": math.nan}, stable_predictions=MIX))
    assert "prediction_shift" not in by


# -- the 100 % step -------------------------------------------------------------------------


@pytest.mark.parametrize("p99, limit, expected", [
    (0.05, None, Verdict.PASS),  # fast: under min_p99_seconds
    (0.4, 0.5, Verdict.PASS),  # under the absolute limit
    (0.8, 0.5, Verdict.FAIL),  # over it
    (0.4, None, Verdict.INCONCLUSIVE),  # nothing to judge it by
])
def test_without_a_stable_latency_the_candidate_is_judged_on_absolute_limits(p99, limit,
                                                                              expected):
    analysis = Analysis(requests=1000, error_rate=0.0, p99_latency=p99)
    verdict, by = judged(analysis, max_p99_seconds=limit)
    assert verdict == expected, by["p99_latency"].detail


def test_a_canary_finishes_on_its_own_when_the_stable_gets_no_traffic_at_100_percent():
    """Every step passes; at 100 % the stable answers nothing, so no stable p99 exists."""
    spec = RolloutSpec(Strategy.CANARY, "churn", candidate=CANDIDATE, stable=STABLE,
                       steps=(CanaryStep(0.5, 60), CanaryStep(1.0, 60)))
    state, now = RolloutState.initial(3), 1_700_000_000.0
    decision = decide(spec, state, None, now)
    for _ in range(20):
        at_full = decision.state.step == 1
        analysis = Analysis(requests=1000, error_rate=0.0, p99_latency=0.03,
                            stable_p99_latency=None if at_full else 0.03,
                            client_error_rate=0.0,
                            stable_client_error_rate=None if at_full else 0.0)
        now += decision.wait_seconds
        decision = decide(spec, decision.state, analysis, now,
                          served=Served(decision.state.generation, True))
        if decision.state.ended:
            break
    assert decision.state.status == Status.SUCCEEDED, decision.reason


def test_refusals_are_judged_on_what_the_sample_shows_at_the_least():
    """Callers sending 2 % bad requests to both: 100 requests often show 4 % on one side.
    Judged on the share's 99 % lower bound, that is no failure; 8 % of 100 is."""
    small = {**BASE, "requests": 100}
    verdict, by = judged(Analysis(**small, client_error_rate=0.04, stable_client_error_rate=0.02))
    assert verdict == Verdict.PASS, by["client_error_excess"].detail
    verdict, _ = judged(Analysis(**small, client_error_rate=0.10, stable_client_error_rate=0.02))
    assert verdict == Verdict.FAIL
    verdict, _ = judged(Analysis(**small, client_error_rate=1.0, stable_client_error_rate=0.0))
    assert verdict == Verdict.FAIL


def test_false_alarms_on_refusals_are_rare_at_the_smallest_sample():
    """Over many checks of 100 requests where both sides refuse 2 %, almost none fail."""
    import numpy as np

    rng = np.random.default_rng(0)
    failed = 0
    for _ in range(2000):
        share = rng.binomial(100, 0.02) / 100
        verdict, _ = judged(Analysis(**{**BASE, "requests": 100}, client_error_rate=share,
                                     stable_client_error_rate=0.02))
        failed += verdict == Verdict.FAIL
    assert failed / 2000 < 0.005, failed


def test_one_class_only_is_judged_once_chance_cannot_explain_it():
    # The stable predicts 5 % of rows as "0": in 100 rows that is 5, chance may show none.
    verdict, by = judged(Analysis(**BASE, predictions={"1": 100},
                                  stable_predictions={"1": 950, "0": 50}))
    assert verdict == Verdict.PASS, by["prediction_shift"].detail
    verdict, by = judged(Analysis(**BASE, predictions={"1": 400},
                                  stable_predictions={"1": 950, "0": 50}))
    assert verdict == Verdict.FAIL and "one class only" in by["prediction_shift"].detail


def test_blue_greens_check_judges_the_smoke_requests_on_errors_and_latency_only():
    """The idle candidate gets a few rows of its own, not the stable's traffic: one class,
    or refusals of a zeros row, say nothing against the stable."""
    spec = RolloutSpec(Strategy.BLUEGREEN, "churn", candidate=CANDIDATE, stable=STABLE,
                       check_seconds=60, warm_seconds=60)
    state = decide(spec, RolloutState.initial(3), None, 0.0).state
    smoke = Analysis(**BASE, client_error_rate=0.0, stable_client_error_rate=0.0,
                     predictions={"1": 200}, stable_predictions=MIX)
    decision = decide(spec, state, smoke, 61.0, served=Served(state.generation, True))
    assert decision.verdict == Verdict.PASS and decision.state.step == 1, decision.reason


def test_a_breaking_interface_change_is_not_judged_on_refusals():
    """Callers still on the old interface are refused by design (the release says so)."""
    verdict, by = judged(Analysis(**BASE, client_error_rate=0.6, stable_client_error_rate=0.0),
                         max_client_error_excess=None)
    assert verdict == Verdict.PASS and "client_error_excess" not in by
