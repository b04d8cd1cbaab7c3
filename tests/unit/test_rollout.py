"""ops.rollout: the pure rollout state machine."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ops.plan import ServingPlan, Variant
from ops.rollout import (
    CANDIDATE,
    STABLE,
    Alert,
    Analysis,
    CanaryStep,
    Decision,
    Event,
    RolloutError,
    RolloutSpec,
    RolloutState,
    Served,
    Status,
    Strategy,
    Thresholds,
    Verdict,
    apply_failed,
    command,
    current_plan,
    decide,
    evaluate,
    extend,
)

T0 = 1_700_000_000.0
BASE_GENERATION = 7
STABLE_TEMPLATE = Variant("v1", 1, "file:///artifacts/v1.skops", "a" * 64, 0.3, replicas=2)
CANDIDATE_TEMPLATE = Variant("v2", 2, "file:///artifacts/v2.skops", "b" * 64, 0.7, replicas=2)

HEALTHY = Analysis(requests=1000, error_rate=0.001, p99_latency=0.11, stable_p99_latency=0.10,
                   disagreement_rate=0.01)
NO_TRAFFIC = Analysis(requests=0)


def make_spec(strategy="canary", **kwargs) -> RolloutSpec:
    kwargs.setdefault("stable", STABLE_TEMPLATE)
    return RolloutSpec(strategy, "churn-prod", candidate=CANDIDATE_TEMPLATE, **kwargs)


def start(spec, now=T0) -> Decision:
    return decide(spec, RolloutState.initial(BASE_GENERATION), None, now)


def served(state: RolloutState) -> Served:
    """A backend that serves every plan it is given, at once."""
    return Served(state.generation, True)


def run(spec, analysis, state=None, now=T0, limit=200):
    """Decide repeatedly, waiting as told, until the rollout ends or waits for a person
    (the backend serving each plan by the next decision)."""
    state = state or RolloutState.initial(BASE_GENERATION)
    decisions = []
    while len(decisions) < limit:
        d = decide(spec, state, analysis, now, served=served(state))
        decisions.append((now, d))
        state = d.state
        if state.ended or state.status in (Status.PAUSED, Status.AWAITING_DECISION):
            return decisions
        now += d.wait_seconds
    raise AssertionError("the rollout never settled")


def plans(decisions):
    return [d.plan for _, d in decisions if d.plan is not None]


def weights(plan: ServingPlan) -> dict[str, float]:
    return {v.name: v.weight for v in plan.variants}


def progressing_at(spec, step, now=T0) -> RolloutState:
    """A rollout healthily walked to ``step`` (bake times from ``spec``)."""
    state = start(spec, now).state
    while state.step < step:
        now = state.step_started_at + 10_000
        state = decide(spec, state, HEALTHY, now).state
    return state


# -- canary ---------------------------------------------------------------------------------


def test_canary_of_a_healthy_candidate_walks_10_25_50_100_with_bake_waits_and_succeeds():
    spec = make_spec(steps=[CanaryStep(0.1, 60), CanaryStep(0.25, 60), CanaryStep(0.5, 120),
                            CanaryStep(1.0, 60)])
    decisions = run(spec, HEALTHY)

    emitted = plans(decisions)
    assert [weights(p) for p in emitted] == [
        {STABLE: 0.9, CANDIDATE: 0.1}, {STABLE: 0.75, CANDIDATE: 0.25},
        {STABLE: 0.5, CANDIDATE: 0.5}, {STABLE: 0.0, CANDIDATE: 1.0}, {CANDIDATE: 1.0}]
    plan_times = [now - T0 for now, d in decisions if d.plan is not None]
    assert plan_times == [0, 60, 120, 240, 300]  # each step baked its full time
    assert all(d.event == Event.BAKING for now, d in decisions[:-1] if d.plan is None)
    promoting, final = decisions[-2][1], decisions[-1][1]
    assert promoting.state.status == Status.PROMOTING and promoting.event == Event.PROMOTING
    assert promoting.plan.variants[0].version_id == CANDIDATE_TEMPLATE.version_id
    assert final.state.status == Status.SUCCEEDED and final.event == Event.SUCCEEDED
    assert final.plan is None and final.wait_seconds is None  # served: nothing more to apply


def test_default_canary_steps_are_10_25_50_100_percent():
    assert [weights(p)[CANDIDATE] for p in plans(run(make_spec(), HEALTHY))] == [
        0.1, 0.25, 0.5, 1.0, 1.0]


def test_canary_never_advances_before_its_bake_time_even_when_healthy():
    spec = make_spec(steps=[CanaryStep(0.1, 600), CanaryStep(1.0, 60)])
    state = start(spec).state
    for elapsed in (1, 30, 300, 599):
        d = decide(spec, state, HEALTHY, T0 + elapsed)
        assert d.plan is None and d.event == Event.BAKING
        assert d.wait_seconds == min(600 - elapsed, spec.check_interval_seconds)
    assert decide(spec, state, HEALTHY, T0 + 600).event == Event.ADVANCED


def test_plans_are_built_from_the_templates_renamed_stable_and_candidate():
    plan = start(make_spec()).plan
    assert [v.name for v in plan.variants] == [STABLE, CANDIDATE]
    assert plan.variant(STABLE).artifact_uri == STABLE_TEMPLATE.artifact_uri
    assert plan.variant(CANDIDATE).sha256 == CANDIDATE_TEMPLATE.sha256
    assert plan.variant(CANDIDATE).replicas == 2
    assert plan.endpoint == "churn-prod" and plan.generation == BASE_GENERATION + 1


# -- failure and rollback -------------------------------------------------------------------


def test_failing_error_rate_at_step_2_rolls_back_with_the_stable_only_plan():
    spec = make_spec()
    state = progressing_at(spec, 1)
    bad = Analysis(requests=1000, error_rate=0.2, p99_latency=0.1, stable_p99_latency=0.1)

    d = decide(spec, state, bad, state.step_started_at + 30)

    assert d.state.status == Status.ROLLED_BACK and d.event == Event.ROLLED_BACK
    assert [(v.name, v.weight) for v in d.plan.variants] == [(STABLE, 1.0)]
    assert d.plan.variants[0].version_id == STABLE_TEMPLATE.version_id
    assert d.plan.generation == state.generation + 1
    assert d.wait_seconds is None and d.verdict == Verdict.FAIL
    assert "error_rate" in d.reason and "step 2 of 4" in d.reason
    assert d.state.reason == d.reason


def test_critical_alert_rolls_back_immediately_despite_a_failure_budget_and_no_traffic():
    spec = make_spec(failure_limit=5)
    state = start(spec).state
    alert = Alert("CandidateOOM", "critical", {"value": "2000000000.123", "variant": "candidate",
                                               "endpoint": "churn", "job": "modelgate"})

    d = decide(spec, state, Analysis(requests=0, alerts=(alert,)), T0 + 1)

    assert d.state.status == Status.ROLLED_BACK
    assert weights(d.plan) == {STABLE: 1.0}
    [alert_measurement] = [m for m in d.measurements if m.metric == "alert:CandidateOOM"]
    assert alert_measurement.verdict == Verdict.FAIL
    # A sentence with the value rounded, not the label set.
    assert alert_measurement.detail == "critical alert CandidateOOM (variant candidate, " \
        "value 2,000,000,000)"
    assert "critical alert" in d.reason and "job=" not in d.reason


def test_warning_alert_is_recorded_but_does_not_gate():
    spec = make_spec()
    state = start(spec).state
    analysis = Analysis(requests=1000, error_rate=0, p99_latency=0.1, stable_p99_latency=0.1,
                        alerts=(Alert("SlowWarmup", "warning"),))
    d = decide(spec, state, analysis, T0 + 60)
    assert d.event == Event.ADVANCED
    assert any(m.metric == "alert:SlowWarmup" and m.verdict == Verdict.PASS
               for m in d.measurements)


@pytest.mark.parametrize("candidate, stable, verdict", [
    (0.168, 0.073, Verdict.PASS),   # 2.3x, but both fast: not a latency problem
    (0.30, 0.10, Verdict.FAIL),     # 3x and past the floor
    (0.24, 0.20, Verdict.PASS),     # within the ratio
])
def test_latency_fails_only_past_the_ratio_and_the_floor(candidate, stable, verdict):
    analysis = Analysis(requests=1000, error_rate=0.0, p99_latency=candidate,
                        stable_p99_latency=stable)
    evaluation = evaluate(analysis, Thresholds(), Strategy.CANARY)
    latency = next(m for m in evaluation.measurements if m.metric == "p99_latency_ratio")
    assert latency.verdict == verdict and evaluation.verdict == verdict, latency.detail


def test_the_latency_floor_is_a_threshold_like_the_others():
    with pytest.raises(RolloutError, match="min_p99_seconds"):
        Thresholds(min_p99_seconds=-1)
    assert Thresholds(min_p99_seconds=0).min_p99_seconds == 0  # 0: the ratio alone


def test_failure_limit_is_the_failed_analysis_that_rolls_back():
    spec = make_spec(failure_limit=3)
    state = start(spec).state
    slow = Analysis(requests=1000, error_rate=0, p99_latency=0.5, stable_p99_latency=0.1)
    events = []
    for i in range(3):
        d = decide(spec, state, slow, T0 + 60 + 30 * i)
        events.append(d.event)
        state = d.state
    assert events == [Event.ANALYSIS_FAILED, Event.ANALYSIS_FAILED, Event.ROLLED_BACK]
    assert state.failures == 3 and "3 of 3" in state.reason


def test_a_tolerated_failure_holds_the_step_until_a_later_pass():
    spec = make_spec(failure_limit=2)
    state = start(spec).state
    bad = Analysis(requests=1000, error_rate=0.5, p99_latency=0.1, stable_p99_latency=0.1)
    d = decide(spec, state, bad, T0 + 60)
    assert d.event == Event.ANALYSIS_FAILED and d.plan is None
    assert d.wait_seconds == spec.check_interval_seconds
    d = decide(spec, d.state, HEALTHY, T0 + 90)
    assert d.event == Event.ADVANCED and d.state.failures == 1


# -- inconclusive analyses ------------------------------------------------------------------


@pytest.mark.parametrize("analysis", [
    None,
    Analysis(),
    NO_TRAFFIC,
    Analysis(requests=math.nan, error_rate=0.0, p99_latency=0.1, stable_p99_latency=0.1),
    Analysis(requests=1000, error_rate=math.nan, p99_latency=0.1, stable_p99_latency=0.1),
    Analysis(requests=1000, error_rate=0.0, p99_latency=math.nan, stable_p99_latency=0.1),
    # No stable figure and a candidate not under min_p99_seconds, with no max_p99_seconds.
    Analysis(requests=1000, error_rate=0.0, p99_latency=0.3, stable_p99_latency=None),
    Analysis(requests=1000, error_rate=0.0, p99_latency=0.3, stable_p99_latency=0.0),
    Analysis(requests=99, error_rate=0.0, p99_latency=0.1, stable_p99_latency=0.1),
], ids=["none", "empty", "no-traffic", "nan-requests", "nan-errors", "nan-p99",
        "no-stable-p99", "zero-stable-p99", "below-min-sample"])
def test_missing_nan_or_too_little_data_is_inconclusive_never_a_pass(analysis):
    spec = make_spec()
    state = start(spec).state
    d = decide(spec, state, analysis, T0 + 60)
    assert d.verdict == Verdict.INCONCLUSIVE
    assert d.event == Event.INCONCLUSIVE and d.plan is None
    assert d.state.step == 0 and d.state.inconclusive == 1
    assert d.wait_seconds == spec.check_interval_seconds


def test_a_bad_rate_below_the_minimum_sample_is_not_judged():
    spec = make_spec()
    evaluation = evaluate(Analysis(requests=5, error_rate=0.6, p99_latency=0.1,
                                   stable_p99_latency=0.1), spec.thresholds, spec.strategy)
    assert evaluation.verdict == Verdict.INCONCLUSIVE
    assert {m.metric: m.verdict for m in evaluation.measurements}["error_rate"] \
        == Verdict.INCONCLUSIVE


def test_nan_measurements_are_recorded_as_missing_values():
    evaluation = evaluate(Analysis(requests=math.nan, error_rate=math.nan), Thresholds(),
                          "canary")
    assert [m.value for m in evaluation.measurements] == [None, None, None]


def test_inconclusive_analyses_wait_then_pause_past_the_check_limit():
    spec = make_spec(max_inconclusive_checks=4)
    decisions = run(spec, NO_TRAFFIC)
    events = [d.event for _, d in decisions]
    assert events == [Event.STARTED, Event.BAKING, Event.INCONCLUSIVE, Event.INCONCLUSIVE,
                      Event.INCONCLUSIVE, Event.PAUSED]
    paused = decisions[-1][1]
    assert paused.state.status == Status.PAUSED and paused.plan is None
    assert "inconclusive after 4 checks" in paused.reason and "requests" in paused.reason
    assert paused.state.reason == paused.reason
    assert paused.wait_seconds == spec.check_interval_seconds  # still watched for failures


def test_inconclusive_analyses_pause_past_the_time_limit():
    spec = make_spec(max_inconclusive_checks=None, max_inconclusive_seconds=120)
    decisions = run(spec, NO_TRAFFIC)
    first_inconclusive = next(now for now, d in decisions if d.event == Event.INCONCLUSIVE)
    paused_at, paused = decisions[-1]
    assert paused.state.status == Status.PAUSED
    assert paused_at - first_inconclusive == 120


def test_a_paused_rollout_still_rolls_back_on_a_critical_alert():
    spec = make_spec()
    state = command(spec, start(spec).state, "pause", T0 + 5).state
    d = decide(spec, state, Analysis(alerts=(Alert("Down", "CRITICAL"),)), T0 + 10)
    assert d.state.status == Status.ROLLED_BACK and weights(d.plan) == {STABLE: 1.0}


def test_a_paused_rollout_holds_its_split_and_only_watches():
    spec = make_spec()
    state = command(spec, start(spec).state, "pause", T0 + 5).state
    d = decide(spec, state, HEALTHY, T0 + 10_000)
    assert d.event == Event.WATCHING and d.plan is None
    assert d.state.status == Status.PAUSED and d.state.step == 0
    assert d.state.reason == state.reason


def test_resume_after_pause_continues_from_the_same_step():
    spec = make_spec(max_inconclusive_checks=2)
    state = progressing_at(spec, 2)
    while state.status != Status.PAUSED:
        state = decide(spec, state, NO_TRAFFIC, state.step_started_at + 1000 + state.step_id).state

    resumed = command(spec, state, "resume", T0 + 50_000, actor="alice")
    assert resumed.state.status == Status.PROGRESSING and resumed.state.step == 2
    assert resumed.plan is None and resumed.wait_seconds == 0
    assert resumed.state.inconclusive == 0 and "alice" in resumed.reason

    d = decide(spec, resumed.state, HEALTHY, T0 + 50_000)
    assert d.event == Event.ADVANCED and d.state.step == 3
    assert weights(d.plan) == {STABLE: 0.0, CANDIDATE: 1.0}


# -- commands -------------------------------------------------------------------------------


def states_of_every_live_kind():
    """One rollout in each live status, with the spec that produced it."""
    canary = make_spec()
    ab = make_spec("ab", duration_seconds=600)
    progressing = progressing_at(canary, 1)
    return {
        Status.PENDING: (canary, RolloutState.initial(BASE_GENERATION)),
        Status.PROGRESSING: (canary, progressing),
        Status.PAUSED: (canary, command(canary, progressing, "pause", T0).state),
        Status.AWAITING_DECISION: (ab, run(ab, HEALTHY)[-1][1].state),
    }


@pytest.mark.parametrize("status", [Status.PENDING, Status.PROGRESSING, Status.PAUSED,
                                    Status.AWAITING_DECISION])
def test_manual_promote_ends_with_the_candidate_alone_from_each_live_state(status):
    spec, state = states_of_every_live_kind()[status]
    assert state.status == status
    d = command(spec, state, "promote", T0 + 1, actor="bob")
    assert d.state.status == Status.PROMOTING and d.event == Event.PROMOTED
    assert weights(d.plan) == {CANDIDATE: 1.0} and d.plan.sticky is False
    assert d.plan.generation == state.generation + 1
    assert d.wait_seconds is not None and "bob" in d.reason
    done = decide(spec, d.state, None, T0 + 3, served=Served(d.plan.generation, True))
    assert done.state.status == Status.SUCCEEDED and done.plan is None


@pytest.mark.parametrize("status", [Status.PROGRESSING, Status.PAUSED,
                                    Status.AWAITING_DECISION])
def test_manual_rollback_ends_with_the_stable_alone_from_each_live_state(status):
    spec, state = states_of_every_live_kind()[status]
    d = command(spec, state, "rollback", T0 + 1)
    assert d.state.status == Status.ROLLED_BACK and d.event == Event.ROLLED_BACK
    assert weights(d.plan) == {STABLE: 1.0}
    assert d.plan.generation == state.generation + 1


def test_rollback_before_the_start_ends_without_touching_the_endpoint():
    spec, state = states_of_every_live_kind()[Status.PENDING]
    d = command(spec, state, "rollback", T0)
    assert d.state.status == Status.ROLLED_BACK and d.plan is None
    assert current_plan(spec, d.state) is None


def ended_states():
    canary = make_spec()
    ab = make_spec("ab", duration_seconds=600)
    awaiting = run(ab, HEALTHY)[-1][1].state
    return [
        (canary, run(canary, HEALTHY)[-1][1].state),
        (canary, command(canary, progressing_at(canary, 1), "rollback", T0).state),
        (ab, command(ab, awaiting, "keep", T0).state),
        (canary, apply_failed(canary, start(canary).state, "quota exceeded").state),
    ]


@pytest.mark.parametrize("name", ["pause", "resume", "promote", "rollback", "keep"])
@pytest.mark.parametrize("index", range(4), ids=["succeeded", "rolled_back", "kept_stable",
                                                 "failed"])
def test_every_command_on_an_ended_rollout_raises(name, index):
    spec, state = ended_states()[index]
    with pytest.raises(RolloutError) as caught:
        command(spec, state, name, T0)
    assert caught.value.code == "invalid_command"
    assert "already ended" in caught.value.detail


@pytest.mark.parametrize(("status", "name", "words"), [
    (Status.PROGRESSING, "resume", "not paused"),
    (Status.PENDING, "resume", "not paused"),
    (Status.AWAITING_DECISION, "resume", "not paused"),
    (Status.PAUSED, "pause", "only a progressing"),
    (Status.PENDING, "pause", "only a progressing"),
    (Status.AWAITING_DECISION, "pause", "only a progressing"),
    (Status.PROGRESSING, "keep", "running A/B or shadow"),
    (Status.PAUSED, "keep", "running A/B or shadow"),
])
def test_commands_invalid_for_the_current_state_raise_a_clear_error(status, name, words):
    spec, state = states_of_every_live_kind()[status]
    with pytest.raises(RolloutError) as caught:
        command(spec, state, name, T0)
    assert caught.value.code == "invalid_command" and words in caught.value.detail


def test_an_unknown_command_raises_listing_the_valid_ones():
    spec, state = states_of_every_live_kind()[Status.PROGRESSING]
    with pytest.raises(RolloutError) as caught:
        command(spec, state, "restart", T0)
    assert caught.value.code == "unknown_command" and "promote" in caught.value.detail


def test_deciding_on_an_ended_rollout_raises():
    spec, state = ended_states()[0]
    with pytest.raises(RolloutError) as caught:
        decide(spec, state, HEALTHY, T0)
    assert caught.value.code == "rollout_ended"


# -- A/B ------------------------------------------------------------------------------------


def test_ab_runs_a_sticky_split_and_awaits_a_decision_after_its_duration():
    spec = make_spec("ab", split=0.2, duration_seconds=3600)
    decisions = run(spec, HEALTHY)
    first = decisions[0][1].plan
    assert weights(first) == {STABLE: 0.8, CANDIDATE: 0.2} and first.sticky is True
    awaited_at, awaiting = decisions[-1]
    assert awaiting.state.status == Status.AWAITING_DECISION
    assert awaited_at - T0 == 3600 and awaiting.plan is None  # the split keeps running
    assert "promote or keep" in awaiting.reason


def test_ab_ends_early_once_the_candidate_reaches_the_sample_size():
    spec = make_spec("ab", duration_seconds=86_400, sample_size=500)
    state = start(spec).state
    small = Analysis(requests=200, error_rate=0, p99_latency=0.1, stable_p99_latency=0.1)
    assert decide(spec, state, small, T0 + 30).event == Event.BAKING
    d = decide(spec, state, HEALTHY, T0 + 60)
    assert d.state.status == Status.AWAITING_DECISION


def test_ab_keep_ends_kept_stable_with_the_stable_only_plan():
    spec = make_spec("ab", duration_seconds=600)
    awaiting = run(spec, HEALTHY)[-1][1].state
    d = command(spec, awaiting, "keep", T0 + 700, actor="carol")
    assert d.state.status == Status.KEPT_STABLE and d.event == Event.KEPT_STABLE
    assert weights(d.plan) == {STABLE: 1.0} and d.plan.sticky is False


def test_ab_keep_while_running_settles_it_for_the_stable():
    spec = make_spec("ab", duration_seconds=86_400)
    running = start(spec).state
    d = command(spec, running, "keep", T0 + 60, actor="dana")
    assert d.state.status == Status.KEPT_STABLE and weights(d.plan) == {STABLE: 1.0}


def test_ab_extend_keeps_the_split_and_its_generation_and_runs_longer():
    spec = make_spec("ab", duration_seconds=600, sample_size=500)
    awaiting = run(spec, HEALTHY)[-1][1].state
    assert awaiting.status == Status.AWAITING_DECISION
    new_spec, d = extend(spec, awaiting, 7200, awaiting.step_started_at + 900, actor="erin")
    assert d.event == Event.EXTENDED and d.state.status == Status.PROGRESSING
    assert d.plan is None and d.state.generation == awaiting.generation  # same split
    assert new_spec.duration_seconds == 900 + 7200 and new_spec.sample_size is None
    assert "erin" in d.reason and "2 h more" in d.reason
    # it bakes again until the new end, then awaits a decision once more
    later = decide(new_spec, d.state, HEALTHY, awaiting.step_started_at + 900 + 3600)
    assert later.event == Event.BAKING
    done = decide(new_spec, d.state, HEALTHY, awaiting.step_started_at + 900 + 7200)
    assert done.state.status == Status.AWAITING_DECISION


@pytest.mark.parametrize(("strategy", "seconds", "words"), [
    ("canary", 3600, "only A/B and shadow"),
    ("ab", 0, "more than 0 seconds"),
    ("ab", 91 * 86400, "at most 90 days"),
])
def test_extend_refuses_other_strategies_and_silly_lengths(strategy, seconds, words):
    spec = make_spec(strategy, duration_seconds=600) if strategy == "ab" else make_spec()
    with pytest.raises(RolloutError) as caught:
        extend(spec, start(spec).state, seconds, T0 + 10)
    assert words in caught.value.detail


def test_ab_promote_ends_with_the_candidate_alone():
    spec = make_spec("ab", duration_seconds=600)
    d = command(spec, run(spec, HEALTHY)[-1][1].state, "promote", T0 + 700)
    assert d.state.status == Status.PROMOTING and weights(d.plan) == {CANDIDATE: 1.0}


def test_ab_guardrail_failure_rolls_back_during_the_experiment():
    spec = make_spec("ab", duration_seconds=86_400)
    bad = Analysis(requests=1000, error_rate=0.3, p99_latency=0.1, stable_p99_latency=0.1)
    d = decide(spec, start(spec).state, bad, T0 + 30)
    assert d.state.status == Status.ROLLED_BACK


# -- blue/green -----------------------------------------------------------------------------


def test_bluegreen_checks_the_idle_candidate_switches_at_once_keeps_stable_warm_then_removes_it():
    spec = make_spec("bluegreen", check_seconds=60, warm_seconds=300)
    decisions = run(spec, HEALTHY)
    assert [weights(p) for p in plans(decisions)] == [
        {STABLE: 1.0, CANDIDATE: 0.0},  # candidate up at full capacity, no traffic
        {STABLE: 0.0, CANDIDATE: 1.0},  # all traffic switched, stable warm
        {CANDIDATE: 1.0},  # stable removed
    ]
    assert [now - T0 for now, d in decisions if d.plan] == [0, 60, 360]
    assert plans(decisions)[1].variant(STABLE).replicas == STABLE_TEMPLATE.replicas
    assert decisions[-1][1].state.status == Status.SUCCEEDED


def test_bluegreen_never_switches_on_an_inconclusive_check():
    spec = make_spec("bluegreen", max_inconclusive_checks=3)
    decisions = run(spec, NO_TRAFFIC)
    assert len(plans(decisions)) == 1 and decisions[-1][1].state.status == Status.PAUSED


def test_bluegreen_failure_while_stable_is_warm_switches_straight_back():
    spec = make_spec("bluegreen")
    switched = progressing_at(spec, 1)
    bad = Analysis(requests=1000, error_rate=0.0, p99_latency=0.9, stable_p99_latency=0.1)
    d = decide(spec, switched, bad, switched.step_started_at + 10)
    assert d.state.status == Status.ROLLED_BACK and weights(d.plan) == {STABLE: 1.0}


# -- shadow ---------------------------------------------------------------------------------


def test_shadow_copies_traffic_to_the_candidate_and_ends_awaiting_a_decision():
    spec = make_spec("shadow", duration_seconds=1800)
    decisions = run(spec, HEALTHY)
    plan = decisions[0][1].plan
    assert plan.shadow == CANDIDATE and plan.weights() == {STABLE: 1.0}
    awaiting = decisions[-1][1]
    assert awaiting.state.status == Status.AWAITING_DECISION
    assert {m.metric: m.verdict for m in awaiting.measurements}["disagreement_rate"] \
        == Verdict.PASS


def test_shadow_without_a_disagreement_rate_is_inconclusive():
    spec = make_spec("shadow", duration_seconds=60)
    no_disagreement = Analysis(requests=1000, error_rate=0, p99_latency=0.1,
                               stable_p99_latency=0.1)
    d = decide(spec, start(spec).state, no_disagreement, T0 + 60)
    assert d.verdict == Verdict.INCONCLUSIVE


def test_shadow_disagreeing_too_often_rolls_back():
    spec = make_spec("shadow")
    d = decide(spec, start(spec).state,
               Analysis(requests=1000, error_rate=0, p99_latency=0.1, stable_p99_latency=0.1,
                        disagreement_rate=0.4), T0 + 30)
    assert d.state.status == Status.ROLLED_BACK
    assert weights(d.plan) == {STABLE: 1.0} and d.plan.shadow is None


# -- direct, backend refusals, spec validation ----------------------------------------------


def test_direct_goes_straight_to_the_candidate_alone_and_succeeds():
    d = start(make_spec("direct"))
    assert d.state.status == Status.PROMOTING and weights(d.plan) == {CANDIDATE: 1.0}
    done = decide(make_spec("direct"), d.state, None, T0 + 2, served=served(d.state))
    assert done.state.status == Status.SUCCEEDED


def test_direct_needs_no_stable_for_a_first_deployment():
    d = start(make_spec("direct", stable=None))
    assert d.state.status == Status.PROMOTING and weights(d.plan) == {CANDIDATE: 1.0}


# -- promoting: succeeded only once the backend serves the final plan --------------------


def test_succeeded_is_never_reported_before_the_backend_serves_the_final_plan():
    spec = make_spec("direct")
    state = start(spec).state
    for what in (None, Served(state.generation - 1, True), Served(state.generation, False,
                                                                  "the model server is starting")):
        d = decide(spec, state, HEALTHY, T0 + 5, served=what)
        assert d.state.status == Status.PROMOTING and d.plan is None, what
        assert d.wait_seconds <= 2.0 and "waiting for the backend" in d.reason
    assert "the model server is starting" in d.reason
    d = decide(spec, state, HEALTHY, T0 + 6, served=Served(state.generation, True))
    assert d.state.status == Status.SUCCEEDED and d.state.ended


def test_a_final_plan_never_served_restores_the_stable_or_fails_without_one():
    spec = make_spec("direct")
    state = start(spec).state
    d = decide(spec, state, None, T0 + 901, served=Served(state.generation, False, "crashing"))
    assert d.state.status == Status.ROLLED_BACK and weights(d.plan) == {STABLE: 1.0}
    assert "did not serve the final plan" in d.reason and "crashing" in d.reason
    first = make_spec("direct", stable=None)
    state = start(first).state
    d = decide(first, state, None, T0 + 901, served=None)
    assert d.state.status == Status.FAILED and d.plan is None


def test_a_promoting_rollout_can_be_rolled_back_by_a_person():
    spec = make_spec()
    d = command(spec, progressing_at(spec, 1), "promote", T0 + 100)
    back = command(spec, d.state, "rollback", T0 + 101, actor="ann")
    assert back.state.status == Status.ROLLED_BACK and weights(back.plan) == {STABLE: 1.0}


def test_a_refused_first_plan_means_the_rollout_failed_to_start_and_restores_stable():
    spec = make_spec()
    d = apply_failed(spec, start(spec).state, "insufficient GPUs")
    assert d.state.status == Status.FAILED and weights(d.plan) == {STABLE: 1.0}
    assert "could not start" in d.reason and "insufficient GPUs" in d.reason


def test_a_refused_later_plan_rolls_back():
    spec = make_spec()
    d = apply_failed(spec, progressing_at(spec, 2), "quota")
    assert d.state.status == Status.ROLLED_BACK and weights(d.plan) == {STABLE: 1.0}


def test_a_refused_rollback_plan_fails_without_a_plan():
    spec = make_spec()
    rolled_back = command(spec, progressing_at(spec, 1), "rollback", T0).state
    d = apply_failed(spec, rolled_back, "api down")
    assert d.state.status == Status.FAILED and d.plan is None and "unknown" in d.reason


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"strategy": "canary", "stable": None}, "needs a stable"),
    ({"strategy": "rolling"}, "unknown strategy"),
    ({"steps": [CanaryStep(0.1), CanaryStep(0.5)]}, "end with weight 1.0"),
    ({"steps": [CanaryStep(0.5), CanaryStep(0.25), CanaryStep(1.0)]}, "strictly increasing"),
    ({"thresholds": Thresholds(min_requests=0)}, "no traffic is never a pass"),
    ({"strategy": "ab", "duration_seconds": None}, "duration or a sample size"),
    ({"strategy": "ab", "split": 1.0}, "between 0 and 1"),
    ({"failure_limit": 0}, "failure_limit"),
    ({"max_inconclusive_checks": None}, "wait forever"),
])
def test_an_impossible_spec_is_refused_when_built(kwargs, words):
    kwargs = {"strategy": "canary", **kwargs}
    with pytest.raises(RolloutError) as caught:
        make_spec(**kwargs)
    assert caught.value.code == "invalid_rollout" and words in caught.value.detail


# -- contracts: measurements, serialisation, idempotence, generations -----------------------


def test_every_judged_decision_lists_its_measurements_with_verdicts():
    spec = make_spec("shadow", duration_seconds=120)
    for _, d in run(spec, HEALTHY)[1:]:
        assert {m.metric for m in d.measurements} == {
            "requests", "error_rate", "p99_latency_ratio", "disagreement_rate"}
        assert all(m.verdict in set(Verdict) for m in d.measurements)
        ratio = next(m for m in d.measurements if m.metric == "p99_latency_ratio")
        assert ratio.value == pytest.approx(1.1) and ratio.threshold == 1.5


def test_state_and_spec_round_trip_through_json():
    spec = make_spec("ab", sample_size=500, thresholds=Thresholds(max_error_rate=0.02))
    state = run(spec, HEALTHY)[-1][1].state
    assert RolloutState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert RolloutSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


def test_a_malformed_stored_state_raises_a_domain_error():
    with pytest.raises(RolloutError) as caught:
        RolloutState.from_dict({"status": "exploded"})
    assert caught.value.code == "invalid_state"


def test_deciding_twice_on_the_same_inputs_gives_the_same_decision():
    spec = make_spec()
    state = progressing_at(spec, 1)
    later = state.step_started_at + 60
    assert decide(spec, state, HEALTHY, later) == decide(spec, state, HEALTHY, later)


ANALYSES = st.sampled_from([
    HEALTHY, NO_TRAFFIC, None, Analysis(requests=math.nan),
    Analysis(requests=1000, error_rate=0.5, p99_latency=0.1, stable_p99_latency=0.1),
    Analysis(requests=1000, error_rate=0, p99_latency=1.0, stable_p99_latency=0.1,
             disagreement_rate=0.0),
    Analysis(requests=10, alerts=(Alert("Down", "critical"),)),
    Analysis(requests=1000, error_rate=0, p99_latency=0.1, stable_p99_latency=0.1,
             disagreement_rate=0.0, alerts=(Alert("Warm", "warning", {"v": 1}),)),
])
ACTIONS = st.lists(st.one_of(
    st.tuples(st.just("decide"), ANALYSES, st.floats(0, 400)),
    st.tuples(st.just("command"), st.sampled_from(["pause", "resume", "promote", "rollback",
                                                    "keep"]), st.just(0.0)),
), max_size=40)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(strategy=st.sampled_from(["direct", "canary", "ab", "bluegreen", "shadow"]),
       failure_limit=st.integers(1, 3), actions=ACTIONS)
def test_any_sequence_of_decisions_and_commands_keeps_the_contracts(strategy, failure_limit,
                                                                    actions):
    spec = make_spec(strategy, failure_limit=failure_limit, sample_size=None
                     if strategy != "ab" else 300, max_inconclusive_checks=3)
    state = RolloutState.initial(BASE_GENERATION)
    generation, now = BASE_GENERATION, T0
    for kind, what, dt in actions:
        now += dt
        try:
            if kind == "decide":
                d = decide(spec, state, what, now)
                assert d == decide(spec, state, what, now)  # pure
            else:
                d = command(spec, state, what, now)
        except RolloutError:
            continue  # refused: the state is untouched
        assert d.state.step_id == state.step_id + 1
        if d.plan is not None:
            assert d.plan.generation == generation + 1  # one up with every emitted plan
            generation = d.plan.generation
            assert d.plan == current_plan(spec, d.state)
        assert d.state.generation == generation
        assert (d.wait_seconds is None) == d.state.ended
        assert d.wait_seconds is None or d.wait_seconds >= 0
        assert RolloutState.from_dict(json.loads(json.dumps(d.state.to_dict()))) == d.state
        json.dumps(d.to_dict(), allow_nan=False)
        state = d.state


def test_a_first_release_while_promoting_cannot_be_rolled_back_to_nothing():
    spec = make_spec("direct", stable=None)
    state = start(spec).state
    with pytest.raises(RolloutError, match="no stable version"):
        command(spec, state, "rollback", T0 + 1)
