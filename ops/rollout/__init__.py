"""The rollout engine: a pure state machine that decides a deployment's next serving plan.

Given a deployment's ``RolloutSpec`` (strategy, variants, thresholds), its persisted
``RolloutState`` and the latest ``Analysis`` of the candidate, ``decide`` returns a
``Decision``: the next ``ServingPlan`` to apply (or none), how long to wait before deciding
again, the new state, a human reason, the event to record and every measurement judged.
People act through ``command`` (pause, resume, promote, rollback, keep); a backend that
refuses a plan is reported with ``apply_failed``.

Nothing here reads a clock, a database or the network: time comes in as ``now`` (POSIX
seconds), so the same inputs always give the same decision and the orchestrator (a Celery
task) can retry freely. Plans always name their variants ``"stable"`` and ``"candidate"``;
they are built from the caller's two ``Variant`` templates, whose own names and weights are
ignored.

How the orchestrator is meant to use it (one decision = one claimed step)::

    state = RolloutState.from_dict(row.state)
    decision = decide(spec, state, analysis_since(state.step_started_at), now)
    # Claim the step: only one worker (or person) can move a state on from step_id N.
    claimed = UPDATE deployment SET state = decision.state.to_dict(),
                                    step_id = decision.state.step_id
              WHERE id = row.id AND step_id = state.step_id
    if not claimed: return            # someone else decided this step; theirs stands
    record(decision.to_dict())        # event, reason, measurements
    if decision.plan: backend.apply(decision.plan)       # declarative: safe to re-apply
    if decision.wait_seconds is not None: schedule(row.id, countdown=decision.wait_seconds)

After a crash between the UPDATE and ``apply``, ``current_plan(spec, state)`` rebuilds the
plan the endpoint should be serving from the state alone; re-applying it is harmless.

States::

    pending ─▶ progressing(step 0..n-1) ─▶ promoting ─▶ succeeded   (canary, bluegreen, direct)
                    │  ▲                 ─▶ awaiting_decision ─▶ promoting | kept_stable  (ab, shadow)
                    ▼  │ resume
                  paused
    any live state ─▶ rolled_back   (failed analysis, critical alert, a person, or a
                                     later plan refused by the backend)
    first plan refused by the backend, or the stable-only plan refused ─▶ failed
    promoting: the final plan applied; succeeded once the backend reports it served and
    ready (``decide(..., served=Served(...))``), rolled back if not within 15 minutes

The engine is split by concern: ``spec`` (what a deployment asks for, checked when built, and
the limits on how hard it may make the workers work), ``evaluation`` (the verdict on one
analysis of the candidate), ``state`` (the stored state and the decisions), ``plans`` (each
strategy's stages and the plan each serves), ``engine`` (``decide``) and ``commands`` (what
people do). Everything is importable from here.
"""

from ops.rollout.commands import Command, apply_failed, command, extend, superseded
from ops.rollout.engine import decide
from ops.rollout.evaluation import Alert, Analysis, Evaluation, Measurement, Verdict, evaluate
from ops.rollout.plans import CANDIDATE, STABLE, current_plan
from ops.rollout.spec import (
    DEFAULT_BAKE_SECONDS,
    DEFAULT_CANARY_STEPS,
    MAX_SECONDS,
    CanaryStep,
    RolloutError,
    RolloutLimits,
    RolloutSpec,
    Strategy,
    Thresholds,
    limits_problem,
)
from ops.rollout.state import ENDED, Decision, Event, RolloutState, Served, Status

__all__ = [
    "CANDIDATE", "DEFAULT_BAKE_SECONDS", "DEFAULT_CANARY_STEPS", "ENDED", "MAX_SECONDS",
    "STABLE", "Alert", "Analysis", "CanaryStep", "Command", "Decision", "Evaluation", "Event",
    "Measurement", "RolloutError", "RolloutLimits", "RolloutSpec", "RolloutState", "Served",
    "Status",
    "Strategy", "Thresholds", "Verdict", "apply_failed", "command", "current_plan", "decide",
    "evaluate", "extend", "limits_problem", "superseded",
]
