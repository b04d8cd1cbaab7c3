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

    pending ─▶ progressing(step 0..n-1) ─▶ succeeded              (canary, bluegreen, direct)
                    │  ▲                 ─▶ awaiting_decision ─▶ succeeded | kept_stable  (ab, shadow)
                    ▼  │ resume
                  paused
    any live state ─▶ rolled_back   (failed analysis, critical alert, a person, or a
                                     later plan refused by the backend)
    first plan refused by the backend, or the stable-only plan refused ─▶ failed
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum

from ops.exceptions import PermanentError
from ops.plan import ServingPlan, Variant

STABLE = "stable"
CANDIDATE = "candidate"
DEFAULT_BAKE_SECONDS = 60.0


class RolloutError(PermanentError):
    """A rollout cannot do what was asked; ``code`` says why in a stable word.

    Codes: ``invalid_rollout`` (bad spec), ``invalid_state`` (malformed stored state),
    ``unknown_command``, ``invalid_command`` (not allowed in the current state),
    ``rollout_ended`` (deciding on a rollout that has already ended).
    """

    def __init__(self, detail: str, code: str = "invalid_command"):
        super().__init__(detail)
        self.detail = detail
        self.code = code


class Strategy(StrEnum):
    DIRECT = "direct"
    CANARY = "canary"
    AB = "ab"
    BLUEGREEN = "bluegreen"
    SHADOW = "shadow"


class Status(StrEnum):
    PENDING = "pending"
    PROGRESSING = "progressing"
    PAUSED = "paused"
    AWAITING_DECISION = "awaiting_decision"
    SUCCEEDED = "succeeded"
    ROLLED_BACK = "rolled_back"
    KEPT_STABLE = "kept_stable"
    FAILED = "failed"


ENDED = frozenset({Status.SUCCEEDED, Status.ROLLED_BACK, Status.KEPT_STABLE, Status.FAILED})


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


class Command(StrEnum):
    PAUSE = "pause"
    RESUME = "resume"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    KEEP = "keep"  # ab/shadow (running or awaiting a decision): end with the stable only


class Event(StrEnum):
    """The stable word recorded in the deployment's event log for each decision."""

    STARTED = "started"
    BAKING = "baking"
    ADVANCED = "advanced"
    INCONCLUSIVE = "inconclusive"
    ANALYSIS_FAILED = "analysis_failed"  # a failure within the failure limit
    PAUSED = "paused"
    RESUMED = "resumed"
    WATCHING = "watching"  # paused or awaiting a decision: still watching for failures
    AWAITING_DECISION = "awaiting_decision"
    EXTENDED = "extended"
    SUCCEEDED = "succeeded"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    KEPT_STABLE = "kept_stable"
    FAILED = "failed"


# -- inputs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class CanaryStep:
    """One canary step: the candidate's traffic share (0 < weight <= 1) and its bake time."""

    weight: float
    bake_seconds: float = DEFAULT_BAKE_SECONDS


DEFAULT_CANARY_STEPS = tuple(CanaryStep(w) for w in (0.10, 0.25, 0.50, 1.0))


@dataclass(frozen=True)
class Thresholds:
    """Limits a candidate must stay within; below ``min_requests`` nothing is judged.

    ``min_p99_seconds``: a candidate whose p99 stays under it is not failed for latency
    whatever the ratio. Over one step's few hundred requests a p99 is nearly the slowest
    request, and the ratio of two small latencies is mostly noise: a stable at 73 ms and a
    candidate at 168 ms (the demo's A/B, rolled back on a busy machine although the
    candidate's model predicts 40 times faster) are both fast."""

    max_error_rate: float = 0.01
    max_p99_ratio: float = 1.5  # candidate p99 / stable p99
    max_disagreement: float = 0.05  # shadow only: share of answers differing from stable
    min_requests: int = 100
    min_p99_seconds: float = 0.25

    def __post_init__(self):
        for name in ("max_error_rate", "max_p99_ratio", "max_disagreement", "min_requests",
                     "min_p99_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) \
                    or not math.isfinite(value) or value < 0:
                raise RolloutError(f"thresholds.{name} must be a number of at least 0, "
                                   f"not {value!r}")


@dataclass(frozen=True)
class RolloutSpec:
    """What a deployment wants: strategy, the two variant templates and its limits.

    ``failure_limit``: the rollout rolls back when the number of failed analyses (counted
    over the whole rollout, never reset) reaches it; 1 rolls back on the first failure.
    ``check_interval_seconds``: how often the candidate is analysed while a step bakes,
    re-checked after an inconclusive or tolerated failed analysis, and watched while paused
    or awaiting a decision. An analysis that stays inconclusive after a step's bake pauses
    the rollout after ``max_inconclusive_checks`` checks or ``max_inconclusive_seconds``
    (whichever comes first; either may be None, not both).
    """

    strategy: Strategy
    endpoint: str
    candidate: Variant
    stable: Variant | None = None  # required by every strategy but direct
    steps: tuple[CanaryStep, ...] = DEFAULT_CANARY_STEPS  # canary
    split: float = 0.5  # ab: the candidate's share
    duration_seconds: float | None = 3600.0  # ab, shadow: run length...
    sample_size: int | None = None  # ...or until the candidate saw this many requests
    check_seconds: float = DEFAULT_BAKE_SECONDS  # bluegreen: idle candidate checked this long
    warm_seconds: float = 300.0  # bluegreen: stable kept warm this long after the switch
    thresholds: Thresholds = field(default_factory=Thresholds)
    failure_limit: int = 1
    check_interval_seconds: float = 30.0
    max_inconclusive_checks: int | None = 10
    max_inconclusive_seconds: float | None = None

    def __post_init__(self):
        try:
            object.__setattr__(self, "strategy", Strategy(self.strategy))
        except ValueError as e:
            raise RolloutError(f"unknown strategy {self.strategy!r}; valid: "
                               f"{', '.join(Strategy)}", code="invalid_rollout") from e
        object.__setattr__(self, "steps", tuple(self.steps))
        problem = _spec_problem(self)
        if problem:
            raise RolloutError(problem, code="invalid_rollout")

    def to_dict(self) -> dict:
        return {**asdict(self), "strategy": str(self.strategy)}

    @classmethod
    def from_dict(cls, data: dict) -> RolloutSpec:
        try:
            data = dict(data)
            data["candidate"] = Variant(**data["candidate"])
            if data.get("stable") is not None:
                data["stable"] = Variant(**data["stable"])
            if "steps" in data:
                data["steps"] = tuple(CanaryStep(**s) for s in data["steps"])
            if "thresholds" in data:
                data["thresholds"] = Thresholds(**data["thresholds"])
            return cls(**data)
        except (KeyError, TypeError) as e:
            raise RolloutError(f"malformed rollout spec: {e}", code="invalid_rollout") from e


def _spec_problem(spec: RolloutSpec) -> str | None:
    """The first reason a spec cannot run, or None; checked once, when the spec is built."""
    t = spec.thresholds
    if spec.stable is None and spec.strategy != Strategy.DIRECT:
        return f"a {spec.strategy} rollout needs a stable variant to compare with and return to"
    if t.min_requests < 1:
        return "min_requests must be at least 1: no traffic is never a pass"
    if min(t.max_error_rate, t.max_p99_ratio, t.max_disagreement) < 0:
        return "thresholds cannot be negative"
    if spec.failure_limit < 1:
        return "failure_limit must be at least 1"
    if spec.check_interval_seconds <= 0:
        return "check_interval_seconds must be positive"
    if spec.max_inconclusive_checks is None and spec.max_inconclusive_seconds is None:
        return "set max_inconclusive_checks or max_inconclusive_seconds, or a rollout " \
               "without traffic would wait forever"
    if spec.strategy == Strategy.CANARY:
        weights = [s.weight for s in spec.steps]
        if not weights or weights[-1] != 1.0:
            return "canary steps must end with weight 1.0"
        if any(w <= 0 for w in weights) or weights != sorted(set(weights)):
            return f"canary weights must be positive and strictly increasing: {weights}"
        if any(s.bake_seconds < 0 for s in spec.steps):
            return "bake times cannot be negative"
    if spec.strategy in (Strategy.AB, Strategy.SHADOW):
        if spec.duration_seconds is None and spec.sample_size is None:
            return f"a {spec.strategy} rollout needs a duration or a sample size to end"
        if spec.sample_size is not None and spec.sample_size < t.min_requests:
            return "sample_size cannot be below thresholds.min_requests"
    if spec.strategy == Strategy.AB and not 0 < spec.split < 1:
        return "an A/B split must be between 0 and 1"
    if min(spec.check_seconds, spec.warm_seconds) < 0:
        return "check and warm times cannot be negative"
    return None


MAX_SECONDS = 90 * 86400  # the longest any rollout time may be (as ``extend``'s)


@dataclass(frozen=True)
class RolloutLimits:
    """How often and how much a rollout may make the workers work.

    A spec within ``_spec_problem`` can still be a load: ``check_interval_seconds:
    0.001`` queued about twenty decisions a second (each a database write, Prometheus
    queries and a re-applied plan). These bounds are checked when a release is requested
    (``limits_problem``), not when a spec is built: specs stored before them still load.
    Every wait the engine returns is then at least ``min_check_interval_seconds``, except
    at a step change (bounded by ``max_steps``), and at most ``max_check_interval_seconds``
    (below the broker's redelivery timeout, so a countdown is never delivered twice).
    A step's bake is 0 (advance on the first passing check) or at least one interval, so
    that a step is watched at least once before it ends."""

    min_check_interval_seconds: float = 5.0
    max_check_interval_seconds: float = 300.0
    max_steps: int = 20
    max_inconclusive_checks: int = 1000
    max_failure_limit: int = 100
    max_seconds: float = MAX_SECONDS


def limits_problem(spec: RolloutSpec, limits: RolloutLimits = RolloutLimits()) -> str | None:
    """The first way ``spec`` passes ``limits``, or None."""
    times = {"check_interval_seconds": spec.check_interval_seconds,
             "duration_seconds": spec.duration_seconds, "check_seconds": spec.check_seconds,
             "warm_seconds": spec.warm_seconds,
             "max_inconclusive_seconds": spec.max_inconclusive_seconds,
             **{f"step {i} bake_seconds": s.bake_seconds
                for i, s in enumerate(spec.steps, 1)}}
    for name, value in times.items():
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value)
                                      and not isinstance(value, bool)):
            return f"{name} must be a finite number of seconds, not {value!r}"
        if value is not None and value > limits.max_seconds:
            return f"{name} is at most {limits.max_seconds:g} s (90 days), not {value:g}"
    interval = spec.check_interval_seconds
    if not limits.min_check_interval_seconds <= interval <= limits.max_check_interval_seconds:
        return (f"check_interval_seconds must be between {limits.min_check_interval_seconds:g}"
                f" and {limits.max_check_interval_seconds:g}, not {interval:g}")
    if spec.strategy == Strategy.CANARY:
        if len(spec.steps) > limits.max_steps:
            return f"a canary has at most {limits.max_steps} steps, not {len(spec.steps)}"
        for i, step in enumerate(spec.steps, 1):
            if 0 < step.bake_seconds < interval:
                return (f"step {i} bakes {step.bake_seconds:g} s, less than one check "
                        f"interval ({interval:g} s): bake 0 or at least the interval")
    if spec.max_inconclusive_checks is not None \
            and spec.max_inconclusive_checks > limits.max_inconclusive_checks:
        return (f"max_inconclusive_checks is at most {limits.max_inconclusive_checks}, not "
                f"{spec.max_inconclusive_checks}")
    if spec.failure_limit > limits.max_failure_limit:
        return f"failure_limit is at most {limits.max_failure_limit}, not {spec.failure_limit}"
    return None


@dataclass(frozen=True)
class Alert:
    """A firing alert on the candidate; only severity ``critical`` gates a rollout."""

    name: str
    severity: str
    values: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Analysis:
    """The candidate's metrics over the current step; any value may be None or NaN.

    The orchestrator should measure from ``state.step_started_at`` so each verdict judges
    the traffic of the step being decided.
    """

    requests: float | None = None
    error_rate: float | None = None  # 0..1
    p99_latency: float | None = None  # seconds
    stable_p99_latency: float | None = None
    disagreement_rate: float | None = None  # shadow
    alerts: tuple[Alert, ...] = ()


# -- state and outputs ----------------------------------------------------------------------


@dataclass(frozen=True)
class RolloutState:
    """Where a rollout stands; lives in a database row as JSON (``to_dict``/``from_dict``).

    ``step_id`` increases by one with every decision and command, so the orchestrator claims
    a step with ``UPDATE ... WHERE step_id = <the step_id it decided from>``.
    ``generation`` is that of the last plan emitted, ``base_generation`` that of the plan the
    endpoint served before this rollout (a state whose two generations are equal has emitted
    nothing). ``reason`` explains the latest change of status.
    """

    status: Status = Status.PENDING
    step: int = 0
    step_id: int = 0
    generation: int = 0
    base_generation: int = 0
    step_started_at: float | None = None
    failures: int = 0
    inconclusive: int = 0
    inconclusive_since: float | None = None
    reason: str = ""

    @classmethod
    def initial(cls, generation: int = 0) -> RolloutState:
        """A pending rollout of an endpoint currently serving plan ``generation`` (0: none)."""
        return cls(generation=generation, base_generation=generation)

    @property
    def ended(self) -> bool:
        return self.status in ENDED

    def to_dict(self) -> dict:
        return {**asdict(self), "status": str(self.status)}

    @classmethod
    def from_dict(cls, data: dict) -> RolloutState:
        try:
            return cls(**{**data, "status": Status(data["status"])})
        except (KeyError, TypeError, ValueError) as e:
            raise RolloutError(f"malformed rollout state: {e}", code="invalid_state") from e


@dataclass(frozen=True)
class Measurement:
    """One judged metric: its value (None when missing or NaN), threshold and verdict."""

    metric: str
    value: float | None
    threshold: float | None
    verdict: Verdict
    detail: str = ""

    def to_dict(self) -> dict:
        return {**asdict(self), "verdict": str(self.verdict)}


@dataclass(frozen=True)
class Evaluation:
    """The verdict on one analysis and the measurements it rests on."""

    verdict: Verdict
    measurements: tuple[Measurement, ...]
    critical_alerts: tuple[str, ...] = ()

    def why(self, verdict: Verdict) -> str:
        return "; ".join(f"{m.metric}: {m.detail}" for m in self.measurements
                         if m.verdict == verdict)


@dataclass(frozen=True)
class Decision:
    """What to do now: persist ``state``, apply ``plan`` if any, decide again after
    ``wait_seconds`` (None once the rollout has ended)."""

    state: RolloutState
    plan: ServingPlan | None
    wait_seconds: float | None
    event: Event
    reason: str
    verdict: Verdict | None = None  # of the analysis judged, None when none was
    measurements: tuple[Measurement, ...] = ()

    def to_dict(self) -> dict:
        return {"state": self.state.to_dict(), "wait_seconds": self.wait_seconds,
                "plan": asdict(self.plan) if self.plan else None, "event": str(self.event),
                "reason": self.reason, "verdict": str(self.verdict) if self.verdict else None,
                "measurements": [m.to_dict() for m in self.measurements]}


# -- analysis -------------------------------------------------------------------------------


def _number(value) -> float | None:
    """A usable number, or None for missing and NaN (which must never read as a pass)."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def evaluate(analysis: Analysis, thresholds: Thresholds, strategy: Strategy) -> Evaluation:
    """Judge one analysis: fail beats inconclusive beats pass.

    Nothing is judged below ``min_requests`` (inconclusive), except a critical alert, which
    fails at once. Disagreement is judged only for shadow rollouts.
    """
    requests = _number(analysis.requests)
    enough = requests is not None and requests >= thresholds.min_requests
    measurements = [Measurement(
        "requests", requests, thresholds.min_requests,
        Verdict.PASS if enough else Verdict.INCONCLUSIVE,
        "no data" if requests is None
        else f"{requests:g} {'>=' if enough else '<'} {thresholds.min_requests} needed")]

    candidate_p99, stable_p99 = _number(analysis.p99_latency), _number(analysis.stable_p99_latency)
    ratio = candidate_p99 / stable_p99 if candidate_p99 is not None and stable_p99 else None
    # (metric, value, limit, why a value past the limit still passes, note)
    fast = (f"the candidate's p99 is under {thresholds.min_p99_seconds:g} s"
            if candidate_p99 is not None and candidate_p99 < thresholds.min_p99_seconds
            else None)
    checks = [("error_rate", _number(analysis.error_rate), thresholds.max_error_rate, None, ""),
              ("p99_latency_ratio", ratio, thresholds.max_p99_ratio, fast,
               f" (candidate {candidate_p99} s / stable {stable_p99} s)")]
    if strategy == Strategy.SHADOW:
        checks.append(("disagreement_rate", _number(analysis.disagreement_rate),
                       thresholds.max_disagreement, None, ""))
    for metric, value, limit, excuse, note in checks:
        if value is None:
            verdict, detail = Verdict.INCONCLUSIVE, "no data"
        elif not enough:
            verdict, detail = Verdict.INCONCLUSIVE, f"{value:.4g}, too few requests to judge"
        elif value > limit and excuse:
            verdict, detail = Verdict.PASS, f"{value:.4g} > {limit:g}, but {excuse}"
        elif value > limit:
            verdict, detail = Verdict.FAIL, f"{value:.4g} > {limit:g}"
        else:
            verdict, detail = Verdict.PASS, f"{value:.4g} <= {limit:g}"
        measurements.append(Measurement(metric, value, limit, verdict, detail + note))

    critical = []
    for alert in analysis.alerts:
        values = ", ".join(f"{k}={v}" for k, v in sorted(alert.values.items()))
        if alert.severity.lower() == "critical":
            critical.append(alert.name)
            measurements.append(Measurement(f"alert:{alert.name}", None, None, Verdict.FAIL,
                                            f"critical alert firing {values}".strip()))
        else:  # recorded so people see it, but only critical alerts gate a rollout
            measurements.append(Measurement(f"alert:{alert.name}", None, None, Verdict.PASS,
                                            f"{alert.severity} alert firing, not gating {values}"
                                            .strip()))

    verdicts = {m.verdict for m in measurements}
    overall = next(v for v in (Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.PASS)
                   if v in verdicts)
    return Evaluation(overall, tuple(measurements), tuple(critical))


# -- stages and plans -----------------------------------------------------------------------


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
    if state.status == Status.SUCCEEDED:
        return _plan(spec, state.generation, None, 1.0)
    if state.status in (Status.ROLLED_BACK, Status.KEPT_STABLE, Status.FAILED):
        return _plan(spec, state.generation, 1.0, None) if spec.stable else None
    stage = _stages(spec)[state.step]
    return _plan(spec, state.generation, round(1.0 - stage.candidate_weight, 6),
                 stage.candidate_weight, shadow=stage.shadow, sticky=stage.sticky)


def _label(spec: RolloutSpec, state: RolloutState) -> str:
    stages = _stages(spec)
    if state.status == Status.PENDING or state.step >= len(stages):
        return str(state.status)
    return stages[state.step].label


# -- transitions ----------------------------------------------------------------------------


def _decision(spec: RolloutSpec, old: RolloutState, new: RolloutState, event: Event,
              reason: str, evaluation: Evaluation | None = None,
              wait: float | None = None) -> Decision:
    """Stamp the next step_id, keep the reason of a status change, emit a plan if new."""
    new = replace(new, step_id=old.step_id + 1)
    if new.status != old.status:
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
        return _finish(spec, state, Status.SUCCEEDED, Event.SUCCEEDED,
                       "direct: all traffic to the candidate at once")
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
    return _finish(spec, state, Status.SUCCEEDED, Event.SUCCEEDED,
                   f"{passed} passed: the candidate serves all traffic, stable removed",
                   evaluation)


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


def decide(spec: RolloutSpec, state: RolloutState, analysis: Analysis | None,
           now: float) -> Decision:
    """Decide the next move from the latest analysis (None counts as no data at all).

    A pending rollout starts (the analysis is ignored). Otherwise a critical alert, or a
    failed analysis reaching ``failure_limit``, rolls back from any live state; a paused
    rollout or one awaiting a decision only keeps watching; a progressing one bakes until
    its step's time (or A/B sample) is up, then advances on a pass and re-checks, then
    pauses, while the analysis stays inconclusive.
    """
    if state.ended:
        raise RolloutError(f"the rollout has already ended ({state.status})",
                           code="rollout_ended")
    if state.status == Status.PENDING:
        return _start(spec, state, now)
    analysis = analysis or Analysis()
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


_ALLOWED = {
    Command.PAUSE: {Status.PROGRESSING},
    Command.RESUME: {Status.PAUSED},
    Command.PROMOTE: {Status.PENDING, Status.PROGRESSING, Status.PAUSED,
                      Status.AWAITING_DECISION},
    Command.ROLLBACK: {Status.PENDING, Status.PROGRESSING, Status.PAUSED,
                       Status.AWAITING_DECISION},
    Command.KEEP: {Status.PROGRESSING, Status.PAUSED, Status.AWAITING_DECISION},
}
_COMPARING = (Strategy.AB, Strategy.SHADOW)  # strategies that end on a person's decision


def command(spec: RolloutSpec, state: RolloutState, name: str | Command, now: float,
            actor: str = "") -> Decision:
    """Carry out a person's command, or raise ``RolloutError`` if the state forbids it.

    Promote ends at once with the candidate alone (even skipping bluegreen's warm period);
    rollback ends with the stable alone; keep (ab/shadow, running or awaiting a decision:
    the comparison is settled in the stable's favour) ends with the stable alone as
    ``kept_stable``. Pause holds the current split; resume continues the
    same step, its bake clock still counting from when the step began.
    """
    try:
        cmd = Command(name)
    except ValueError as e:
        raise RolloutError(f"unknown command {name!r}; valid: {', '.join(Command)}",
                           code="unknown_command") from e
    if state.status not in _ALLOWED[cmd] or (cmd == Command.KEEP
                                              and spec.strategy not in _COMPARING):
        raise RolloutError(_refusal(cmd, state))
    by = f" by {actor}" if actor else " by a person"
    if cmd == Command.PAUSE:
        return _decision(spec, state, replace(state, status=Status.PAUSED), Event.PAUSED,
                         f"paused{by} at {_label(spec, state)}",
                         wait=spec.check_interval_seconds)
    if cmd == Command.RESUME:
        new = replace(state, status=Status.PROGRESSING, inconclusive=0, inconclusive_since=None)
        return _decision(spec, state, new, Event.RESUMED,
                         f"resumed{by} at {_label(spec, state)}", wait=0.0)
    if cmd == Command.PROMOTE:
        return _finish(spec, state, Status.SUCCEEDED, Event.PROMOTED,
                       f"promoted{by}: the candidate serves all traffic, stable removed")
    if cmd == Command.KEEP:
        return _finish(spec, state, Status.KEPT_STABLE, Event.KEPT_STABLE,
                       f"stable kept{by}: candidate removed")
    return _finish(spec, state, Status.ROLLED_BACK, Event.ROLLED_BACK,
                   f"rolled back{by} at {_label(spec, state)}: stable serves all traffic")


def _refusal(cmd: Command, state: RolloutState) -> str:
    if state.ended:
        return f"cannot {cmd}: the rollout has already ended ({state.status})"
    if cmd == Command.RESUME:
        return f"cannot resume: the rollout is {state.status}, not paused"
    if cmd == Command.PAUSE:
        return f"cannot pause: the rollout is {state.status}; only a progressing one pauses"
    return (f"cannot {cmd}: the rollout is {state.status}; keep is for a running A/B or "
            "shadow rollout")


def extend(spec: RolloutSpec, state: RolloutState, seconds: float, now: float,
           actor: str = "") -> tuple[RolloutSpec, Decision]:
    """Run an A/B or shadow comparison ``seconds`` longer than from now: the new spec (its
    duration counted from the stage's start, no sample-size end) and the decision.

    The split stays as it is, with the same plan generation, so every prediction of the
    comparison still belongs to it; a comparison awaiting a decision goes back to running.
    """
    if spec.strategy not in _COMPARING:
        raise RolloutError(f"cannot extend a {spec.strategy} rollout; only A/B and shadow "
                           "comparisons run for a set time")
    if state.status not in (Status.PROGRESSING, Status.PAUSED, Status.AWAITING_DECISION):
        raise RolloutError(f"cannot extend: the rollout is {state.status}")
    if not 0 < seconds <= 90 * 86400:
        raise RolloutError("extend by more than 0 seconds and at most 90 days",
                           code="invalid_command")
    started = state.step_started_at if state.step_started_at is not None else now
    new_spec = replace(spec, duration_seconds=round(now - started + seconds, 3),
                       sample_size=None)
    status = Status.PAUSED if state.status == Status.PAUSED else Status.PROGRESSING
    by = f" by {actor}" if actor else " by a person"
    new = replace(state, status=status, inconclusive=0, inconclusive_since=None)
    hours = seconds / 3600
    return new_spec, _decision(new_spec, state, new, Event.EXTENDED,
                               f"extended{by}: {_label(new_spec, state)} runs {hours:g} h "
                               "more", wait=min(seconds, spec.check_interval_seconds))


def apply_failed(spec: RolloutSpec, state: RolloutState, detail: str) -> Decision:
    """The backend refused the plan of ``state`` for good; decide how to recover.

    The first plan refused: the rollout could not start (``failed``), and the stable-only
    plan restores whatever the backend half-applied. A later plan refused: roll back. The
    stable-only plan itself refused: ``failed`` with no plan, a person must look.
    """
    if state.generation == state.base_generation or state.status == Status.FAILED:
        raise RolloutError(f"no plan of this rollout awaits applying ({state.status})")
    first = state.generation == state.base_generation + 1
    refused = f"the backend refused plan generation {state.generation}: {detail}"
    if state.status in (Status.ROLLED_BACK, Status.KEPT_STABLE) or (first and not spec.stable):
        return _decision(spec, state, replace(state, status=Status.FAILED), Event.FAILED,
                         f"{refused}; the endpoint's state is unknown, check the backend")
    if first:
        new = replace(state, status=Status.FAILED, generation=state.generation + 1)
        return _decision(spec, state, new, Event.FAILED,
                         f"could not start, {refused}; restoring the stable")
    return _finish(spec, state, Status.ROLLED_BACK, Event.ROLLED_BACK,
                   f"rolled back, {refused}")
