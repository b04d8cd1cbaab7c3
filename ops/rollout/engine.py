"""``decide``: the next move of a rollout from the latest analysis of its candidate."""

from __future__ import annotations

from dataclasses import replace

from ops.rollout.evaluation import Analysis, Evaluation, Verdict, _number, evaluate
from ops.rollout.plans import _label, _Stage, _stages, current_plan
from ops.rollout.spec import RolloutError, RolloutSpec, Strategy
from ops.rollout.state import Decision, Event, RolloutState, Served, Status

# How often a promoting rollout looks whether the final plan is served.
SERVE_CHECK_SECONDS = 2.0


def _decision(spec: RolloutSpec, old: RolloutState, new: RolloutState, event: Event,
              reason: str, evaluation: Evaluation | None = None,
              wait: float | None = None) -> Decision:
    """Stamp the next step_id, keep the reason of a change of status or of plan (the status
    line reads "step 2 of 4 ...", never the step the rollout started with), emit a plan if
    new."""
    new = replace(new, step_id=old.step_id + 1)
    if new.status != old.status or new.generation != old.generation:
        new = replace(new, reason=reason)
    plan = current_plan(spec, new) if new.generation != old.generation else None
    return Decision(new, plan, None if new.ended else wait, event, reason,
                    evaluation.verdict if evaluation else None,
                    evaluation.measurements if evaluation else ())


def _finish(spec: RolloutSpec, state: RolloutState, status: Status, event: Event, reason: str,
            evaluation: Evaluation | None = None) -> Decision:
    """End the rollout; a new plan only if the endpoint must change (not from pending,
    where rolling back or keeping changes nothing)."""
    changes = status == Status.SUCCEEDED or state.generation != state.base_generation
    new = replace(state, status=status, generation=state.generation + int(changes))
    return _decision(spec, state, new, event, reason, evaluation)


def _promote(spec: RolloutSpec, state: RolloutState, now: float, event: Event, reason: str,
             evaluation: Evaluation | None = None) -> Decision:
    """Emit the final plan (the candidate alone); the rollout succeeds once it is served."""
    new = replace(state, status=Status.PROMOTING, generation=state.generation + 1,
                  step_started_at=now, inconclusive=0, inconclusive_since=None)
    return _decision(spec, state, new, event, reason, evaluation,
                     wait=min(SERVE_CHECK_SECONDS, spec.check_interval_seconds))


def _await_serving(spec: RolloutSpec, state: RolloutState, served: Served | None,
                   now: float) -> Decision:
    """Succeed once the backend serves the final plan and is ready; restore the stable if it
    does not within the spec's ``serve_timeout_seconds``."""
    detail = (served.detail if served and served.detail else "no answer") if not (
        served and served.ready) else f"serving plan {served.generation}"
    if served is not None and served.ready and served.generation == state.generation:
        removed = ", stable removed" if spec.stable else ""
        return _decision(spec, state, replace(state, status=Status.SUCCEEDED), Event.SUCCEEDED,
                         f"the backend serves plan {state.generation}: the candidate takes all "
                         f"traffic{removed}")
    waited = now - (state.step_started_at if state.step_started_at is not None else now)
    if waited >= spec.serve_timeout_seconds:
        why = (f"the backend did not serve the final plan {state.generation} within "
               f"{spec.serve_timeout_seconds:.0f} s ({detail})")
        if spec.stable:
            return _finish(spec, state, Status.ROLLED_BACK, Event.ROLLED_BACK,
                           f"rolled back: {why}; the stable serves again")
        return _decision(spec, state, replace(state, status=Status.FAILED), Event.FAILED,
                         f"{why}; check the backend")
    return _decision(spec, state, state, Event.WATCHING,
                     f"waiting for the backend to serve plan {state.generation} ({detail})",
                     wait=min(SERVE_CHECK_SECONDS, spec.check_interval_seconds))


def _stage_wait(spec: RolloutSpec, stage: _Stage, elapsed: float) -> float:
    if stage.min_seconds is None:
        return spec.check_interval_seconds
    return min(max(stage.min_seconds - elapsed, 0.0), spec.check_interval_seconds)


def _stage_over(stage: _Stage, elapsed: float, analysis: Analysis) -> bool:
    if stage.min_seconds is not None and elapsed >= stage.min_seconds:
        return True
    requests = _number(analysis.requests)
    return stage.sample_size is not None and requests is not None \
        and requests >= stage.sample_size


def _start(spec: RolloutSpec, state: RolloutState, now: float) -> Decision:
    stages = _stages(spec)
    if not stages:
        return _promote(spec, state, now, Event.PROMOTING,
                        "direct: all traffic to the candidate at once; succeeds once served")
    new = replace(state, status=Status.PROGRESSING, step=0, step_started_at=now,
                  generation=state.generation + 1)
    return _decision(spec, state, new, Event.STARTED,
                     f"started {spec.strategy}: {stages[0].label}",
                     wait=_stage_wait(spec, stages[0], 0.0))


def _advance(spec: RolloutSpec, state: RolloutState, now: float,
             evaluation: Evaluation) -> Decision:
    stages, passed = _stages(spec), _label(spec, state)
    if state.step + 1 < len(stages):
        new = replace(state, step=state.step + 1, step_started_at=now,
                      generation=state.generation + 1, inconclusive=0, inconclusive_since=None)
        return _decision(spec, state, new, Event.ADVANCED,
                         f"{passed} passed; now {stages[state.step + 1].label}", evaluation,
                         wait=_stage_wait(spec, stages[state.step + 1], 0.0))
    if spec.strategy in (Strategy.AB, Strategy.SHADOW):
        new = replace(state, status=Status.AWAITING_DECISION, inconclusive=0,
                      inconclusive_since=None)
        return _decision(spec, state, new, Event.AWAITING_DECISION,
                         f"{passed} complete, verdict pass: awaiting a person's decision "
                         "(promote or keep)", evaluation, wait=spec.check_interval_seconds)
    return _promote(spec, state, now, Event.PROMOTING,
                    f"{passed} passed: the candidate takes all traffic, stable removed; "
                    "succeeds once served", evaluation)


def _analysis_failed(spec: RolloutSpec, state: RolloutState,
                     evaluation: Evaluation) -> Decision:
    failures = state.failures + 1
    why = evaluation.why(Verdict.FAIL)
    if evaluation.critical_alerts:
        return _finish(spec, replace(state, failures=failures), Status.ROLLED_BACK,
                       Event.ROLLED_BACK, f"rolled back at {_label(spec, state)}: critical "
                       f"alert on the candidate ({why})", evaluation)
    if failures >= spec.failure_limit:
        return _finish(spec, replace(state, failures=failures), Status.ROLLED_BACK,
                       Event.ROLLED_BACK, f"rolled back at {_label(spec, state)}: analysis "
                       f"failed {failures} of {spec.failure_limit} allowed times ({why})",
                       evaluation)
    new = replace(state, failures=failures, inconclusive=0, inconclusive_since=None)
    return _decision(spec, state, new, Event.ANALYSIS_FAILED,
                     f"analysis failed ({why}): failure {failures}, rollback at "
                     f"{spec.failure_limit}; re-checking", evaluation,
                     wait=spec.check_interval_seconds)


def _still_inconclusive(spec: RolloutSpec, state: RolloutState, now: float,
                        evaluation: Evaluation) -> Decision:
    count = state.inconclusive + 1
    since = now if state.inconclusive_since is None else state.inconclusive_since
    new = replace(state, inconclusive=count, inconclusive_since=since)
    why = evaluation.why(Verdict.INCONCLUSIVE)
    too_many = spec.max_inconclusive_checks is not None and count >= spec.max_inconclusive_checks
    too_long = (spec.max_inconclusive_seconds is not None
                and now - since >= spec.max_inconclusive_seconds)
    if too_many or too_long:
        return _decision(spec, state, replace(new, status=Status.PAUSED), Event.PAUSED,
                         f"paused for a person at {_label(spec, state)}: analysis still "
                         f"inconclusive after {count} checks over {now - since:.0f} s ({why})",
                         evaluation, wait=spec.check_interval_seconds)
    return _decision(spec, state, new, Event.INCONCLUSIVE,
                     f"analysis inconclusive at {_label(spec, state)} ({why}); re-checking",
                     evaluation, wait=spec.check_interval_seconds)


def _comparable(spec: RolloutSpec, state: RolloutState, analysis: Analysis) -> Analysis:
    """What of the analysis compares the candidate with the stable on the same traffic.
    Blue/green's check sends the idle candidate a few rows of its own (the smoke requests),
    not the stable's traffic: its refusals and predictions say nothing against the
    stable's; errors, latency and alerts still count."""
    if spec.strategy == Strategy.BLUEGREEN and state.status == Status.PROGRESSING \
            and state.step == 0:
        return replace(analysis, client_error_rate=None, stable_client_error_rate=None,
                       predictions=None, stable_predictions=None, prediction_spread=None,
                       stable_prediction_spread=None)
    return analysis


def decide(spec: RolloutSpec, state: RolloutState, analysis: Analysis | None,
           now: float, served: Served | None = None) -> Decision:
    """Decide the next move from the latest analysis (None counts as no data at all).

    A pending rollout starts (the analysis is ignored). Otherwise a critical alert, or a
    failed analysis reaching ``failure_limit``, rolls back from any live state; a paused
    rollout or one awaiting a decision only keeps watching; a progressing one bakes until
    its step's time (or A/B sample) is up, then advances on a pass and re-checks, then
    pauses, while the analysis stays inconclusive. A promoting rollout (its final plan
    applied) succeeds once ``served`` (what the backend observes) shows that plan served
    and ready.
    """
    if state.ended:
        raise RolloutError(f"the rollout has already ended ({state.status})",
                           code="rollout_ended")
    if state.status == Status.PENDING:
        return _start(spec, state, now)
    if state.status == Status.PROMOTING:
        return _await_serving(spec, state, served, now)
    analysis = _comparable(spec, state, analysis or Analysis())
    evaluation = evaluate(analysis, spec.thresholds, spec.strategy)
    if evaluation.verdict == Verdict.FAIL:
        return _analysis_failed(spec, state, evaluation)
    if state.status != Status.PROGRESSING:
        return _decision(spec, state, state, Event.WATCHING,
                         f"still {state.status}: {state.reason}", evaluation,
                         wait=spec.check_interval_seconds)
    stage = _stages(spec)[state.step]
    elapsed = now - state.step_started_at
    if not _stage_over(stage, elapsed, analysis):
        return _decision(spec, state, state, Event.BAKING,
                         f"{stage.label}: baking, {elapsed:.0f} s elapsed", evaluation,
                         wait=_stage_wait(spec, stage, elapsed))
    if evaluation.verdict == Verdict.PASS:
        return _advance(spec, state, now, evaluation)
    return _still_inconclusive(spec, state, now, evaluation)
