"""Each strategy as a list of stages, and the serving plan a rollout's state stands for.

Plans always name their variants ``"stable"`` and ``"candidate"``; they are built from the
spec's two ``Variant`` templates, whose own names and weights are ignored."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ops.plan import ServingPlan
from ops.rollout.spec import RolloutSpec, Strategy
from ops.rollout.state import RolloutState, Status

STABLE = "stable"
CANDIDATE = "candidate"


@dataclass(frozen=True)
class _Stage:
    """One plan held until its time (or sample) is up and its analysis passes."""

    candidate_weight: float
    label: str
    min_seconds: float | None  # None: the stage ends on sample size only
    sample_size: int | None = None
    sticky: bool = False
    shadow: bool = False


def _stages(spec: RolloutSpec) -> tuple[_Stage, ...]:
    """Every strategy is a list of stages; direct has none (it finishes at once)."""
    if spec.strategy == Strategy.CANARY:
        n = len(spec.steps)
        return tuple(_Stage(s.weight, f"step {i + 1} of {n} ({s.weight:.0%} to the candidate)",
                            s.bake_seconds) for i, s in enumerate(spec.steps))
    if spec.strategy == Strategy.BLUEGREEN:
        return (_Stage(0.0, "check (candidate up, no traffic)", spec.check_seconds),
                _Stage(1.0, "switched (stable kept warm)", spec.warm_seconds))
    if spec.strategy == Strategy.AB:
        return (_Stage(spec.split, f"A/B ({spec.split:.0%} to the candidate, sticky)",
                       spec.duration_seconds, spec.sample_size, sticky=True),)
    if spec.strategy == Strategy.SHADOW:
        return (_Stage(0.0, "shadow (candidate gets a copy of live traffic)",
                       spec.duration_seconds, spec.sample_size, shadow=True),)
    return ()


def _plan(spec: RolloutSpec, generation: int, stable: float | None, candidate: float | None,
          shadow: bool = False, sticky: bool = False) -> ServingPlan:
    variants = []
    if stable is not None:
        variants.append(replace(spec.stable, name=STABLE, weight=stable))
    if candidate is not None:
        variants.append(replace(spec.candidate, name=CANDIDATE, weight=candidate))
    return ServingPlan(spec.endpoint, tuple(variants), generation=generation,
                       shadow=CANDIDATE if shadow else None, sticky=sticky)


def current_plan(spec: RolloutSpec, state: RolloutState) -> ServingPlan | None:
    """The plan the endpoint should serve in ``state``; None if this rollout emitted none.

    Rebuilt from the state alone, so an orchestrator that crashed before applying a
    decision's plan can apply it again.
    """
    if state.generation == state.base_generation:
        return None
    if state.status in (Status.PROMOTING, Status.SUCCEEDED):
        return _plan(spec, state.generation, None, 1.0)
    if state.status in (Status.ROLLED_BACK, Status.KEPT_STABLE, Status.FAILED):
        return _plan(spec, state.generation, 1.0, None) if spec.stable else None
    stage = _stages(spec)[state.step]
    return _plan(spec, state.generation, round(1.0 - stage.candidate_weight, 6),
                 stage.candidate_weight, shadow=stage.shadow, sticky=stage.sticky)


def _label(spec: RolloutSpec, state: RolloutState) -> str:
    stages = _stages(spec)
    if state.status in (Status.PENDING, Status.PROMOTING) or state.step >= len(stages):
        return str(state.status)
    return stages[state.step].label
