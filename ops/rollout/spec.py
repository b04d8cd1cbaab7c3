"""What a deployment asks of a rollout (``RolloutSpec``), checked once when it is built, and
the limits on how hard an accepted spec may make the workers work (``limits_problem``)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ops.exceptions import DetailedError, PermanentError
from ops.plan import Variant

DEFAULT_BAKE_SECONDS = 60.0


class RolloutError(DetailedError, PermanentError):
    """A rollout cannot do what was asked; ``code`` says why in a stable word.

    Codes: ``invalid_rollout`` (bad spec), ``invalid_state`` (malformed stored state),
    ``unknown_command``, ``invalid_command`` (not allowed in the current state),
    ``rollout_ended`` (deciding on a rollout that has already ended).
    """

    code = "invalid_command"


class Strategy(StrEnum):
    """The rollout strategies, the one list of them (the portal's choices derive from it)."""

    DIRECT = "direct"
    CANARY = "canary"
    AB = "ab"
    BLUEGREEN = "bluegreen"
    SHADOW = "shadow"

    @property
    def label(self) -> str:
        """How people read the strategy."""
        return STRATEGY_LABELS[self]


STRATEGY_LABELS = {
    Strategy.DIRECT: "Direct (all traffic at once)",
    Strategy.CANARY: "Canary (stepped traffic)",
    Strategy.AB: "A/B split",
    Strategy.BLUEGREEN: "Blue/green",
    Strategy.SHADOW: "Shadow",
}


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


@dataclass(frozen=True)
class _Check:
    """One way a spec cannot run, in the strategies it applies to."""

    broken: Callable[[RolloutSpec], bool]
    why: str | Callable[[RolloutSpec], str]  # a function where the words depend on the spec
    strategies: frozenset = frozenset(Strategy)


def _weights(spec: RolloutSpec) -> list[float]:
    return [s.weight for s in spec.steps]


_CANARY = frozenset({Strategy.CANARY})
_COMPARISONS = frozenset({Strategy.AB, Strategy.SHADOW})

#: In this order: the first broken one is the spec's problem.
_SPEC_CHECKS = (
    _Check(lambda s: s.stable is None,
           lambda s: f"a {s.strategy} rollout needs a stable variant to compare with and "
                     "return to", frozenset(Strategy) - {Strategy.DIRECT}),
    _Check(lambda s: s.thresholds.min_requests < 1,
           "min_requests must be at least 1: no traffic is never a pass"),
    _Check(lambda s: min(s.thresholds.max_error_rate, s.thresholds.max_p99_ratio,
                         s.thresholds.max_disagreement) < 0, "thresholds cannot be negative"),
    _Check(lambda s: s.failure_limit < 1, "failure_limit must be at least 1"),
    _Check(lambda s: s.check_interval_seconds <= 0, "check_interval_seconds must be positive"),
    _Check(lambda s: s.max_inconclusive_checks is None and s.max_inconclusive_seconds is None,
           "set max_inconclusive_checks or max_inconclusive_seconds, or a rollout without "
           "traffic would wait forever"),
    _Check(lambda s: not _weights(s) or _weights(s)[-1] != 1.0,
           "canary steps must end with weight 1.0", _CANARY),
    _Check(lambda s: any(w <= 0 for w in _weights(s)) or _weights(s) != sorted(set(_weights(s))),
           lambda s: f"canary weights must be positive and strictly increasing: {_weights(s)}",
           _CANARY),
    _Check(lambda s: any(step.bake_seconds < 0 for step in s.steps),
           "bake times cannot be negative", _CANARY),
    _Check(lambda s: s.duration_seconds is None and s.sample_size is None,
           lambda s: f"a {s.strategy} rollout needs a duration or a sample size to end",
           _COMPARISONS),
    _Check(lambda s: s.sample_size is not None and s.sample_size < s.thresholds.min_requests,
           "sample_size cannot be below thresholds.min_requests", _COMPARISONS),
    _Check(lambda s: not 0 < s.split < 1, "an A/B split must be between 0 and 1",
           frozenset({Strategy.AB})),
    _Check(lambda s: min(s.check_seconds, s.warm_seconds) < 0,
           "check and warm times cannot be negative"),
)


def _spec_problem(spec: RolloutSpec) -> str | None:
    """The first reason a spec cannot run, or None; checked once, when the spec is built."""
    for check in _SPEC_CHECKS:
        if spec.strategy in check.strategies and check.broken(spec):
            return check.why(spec) if callable(check.why) else check.why
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
