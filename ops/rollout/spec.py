"""What a deployment asks of a rollout (``RolloutSpec``), checked once when it is built, and
the limits on how hard an accepted spec may make the workers work (``limits_problem``)."""

from __future__ import annotations

import json
import math
import typing
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from enum import StrEnum

from ops.exceptions import DetailedError, PermanentError
from ops.plan import Variant

DEFAULT_BAKE_SECONDS = 60.0
# The least traffic an analysis reads (the orchestrator's window: the check interval, at
# least this, at most an hour); a step baking less is judged on the step before's traffic.
MIN_ANALYSIS_WINDOW_SECONDS = 30.0


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


#: Strategies that send the candidate callers' live requests while the stable still serves
#: them: a candidate whose inputs differ would fail those requests (canary, A/B) or be judged
#: on requests it cannot answer (shadow), so a breaking interface change goes out directly or
#: by blue/green.
GRADUAL_STRATEGIES = frozenset({Strategy.CANARY, Strategy.AB, Strategy.SHADOW})

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
    # The candidate's share of refused requests (4xx) minus the stable's on the same traffic
    # (None: not judged; a release marked as a breaking interface change).
    max_client_error_excess: float | None = 0.01
    # Classifiers: the share of rows whose predicted class would have to change to turn the
    # candidate's class mix into the stable's (total variation distance, 0..1). None: shown,
    # not judged (a better model may well change the mix); a candidate predicting one class
    # only where the stable predicts several fails whatever this says.
    max_prediction_shift: float | None = None
    # Regressors: the candidate's spread of predictions (standard deviation) / the stable's.
    min_spread_ratio: float = 0.25
    # Where no stable latency exists to compare with: the candidate's p99 limit in seconds
    # (None: such an analysis is judged on min_p99_seconds alone, else inconclusive).
    max_p99_seconds: float | None = None

    def __post_init__(self):
        for name in ("max_error_rate", "max_p99_ratio", "max_disagreement", "min_requests",
                     "min_p99_seconds", "max_client_error_excess", "max_prediction_shift",
                     "min_spread_ratio", "max_p99_seconds"):
            value = getattr(self, name)
            if value is None and name in ("max_p99_seconds", "max_prediction_shift",
                                          "max_client_error_excess"):
                continue
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
    # promoting: how long to wait for the backend to serve the final plan (the portal sets
    # it per backend kind) before the stable is restored.
    serve_timeout_seconds: float = 900.0

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
    _Check(lambda s: not 0 < s.serve_timeout_seconds <= MAX_SECONDS,
           "serve_timeout_seconds must be more than 0 and at most 90 days"),
    _Check(lambda s: s.max_inconclusive_checks is None and s.max_inconclusive_seconds is None,
           "set max_inconclusive_checks or max_inconclusive_seconds, or a rollout without "
           "traffic would wait forever"),
    _Check(lambda s: not _weights(s) or _weights(s)[-1] != 1.0,
           "canary steps must end with weight 1.0", _CANARY),
    _Check(lambda s: any(not 0 < w <= 1 for w in _weights(s))
           or _weights(s) != sorted(set(_weights(s))),
           lambda s: "canary weights must be strictly increasing, each above 0 and at most 1: "
                     f"{_weights(s)}", _CANARY),
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
    Each canary step bakes at least what one analysis reads (``min_bake_seconds``, the
    shortest window, or one check interval when longer), so that it is judged on its own
    traffic: a bake of 0 advanced on the first passing check, judged on the step before's."""

    min_check_interval_seconds: float = 5.0
    max_check_interval_seconds: float = 300.0
    max_steps: int = 20
    min_bake_seconds: float = MIN_ANALYSIS_WINDOW_SECONDS
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
    if spec.strategy == Strategy.CANARY and (problem := _canary_problem(spec, limits)):
        return problem
    if spec.max_inconclusive_checks is not None \
            and spec.max_inconclusive_checks > limits.max_inconclusive_checks:
        return (f"max_inconclusive_checks is at most {limits.max_inconclusive_checks}, not "
                f"{spec.max_inconclusive_checks}")
    if spec.failure_limit > limits.max_failure_limit:
        return f"failure_limit is at most {limits.max_failure_limit}, not {spec.failure_limit}"
    return None


def _canary_problem(spec: RolloutSpec, limits: RolloutLimits) -> str | None:
    """At most ``max_steps`` steps, each baking at least what one analysis reads."""
    if len(spec.steps) > limits.max_steps:
        return f"a canary has at most {limits.max_steps} steps, not {len(spec.steps)}"
    least = max(spec.check_interval_seconds, limits.min_bake_seconds)
    for i, step in enumerate(spec.steps, 1):
        if step.bake_seconds < least:
            return (f"step {i} bakes {step.bake_seconds:g} s, less than the {least:g} s one "
                    f"analysis reads (one check interval, at least {limits.min_bake_seconds:g}"
                    " s): it would be judged on the traffic of the step before")
    return None


# A release request's parameters -----------------------------------------------------------

#: Fields of ``RolloutSpec`` the portal fills in; every other field is a parameter.
_FILLED_IN = frozenset({"strategy", "endpoint", "candidate", "stable"})

#: The parameters each strategy reads besides those every rollout reads (``COMMON``): what
#: the API schema documents per strategy. ``parse_parameters`` accepts every parameter
#: under any strategy; one the strategy does not read changes nothing.
STRATEGY_PARAMETERS = {
    Strategy.DIRECT: (),
    Strategy.CANARY: ("steps",),
    Strategy.AB: ("split", "duration_seconds", "sample_size"),
    Strategy.SHADOW: ("duration_seconds", "sample_size"),
    Strategy.BLUEGREEN: ("check_seconds", "warm_seconds"),
}
COMMON_PARAMETERS = ("thresholds", "failure_limit", "check_interval_seconds",
                     "max_inconclusive_checks", "max_inconclusive_seconds",
                     "serve_timeout_seconds")


class ParameterError(RolloutError):
    """A strategy parameter is unknown or not of its kind; ``path`` names it
    (``steps[1].weight``), relative to the parameters' object."""

    code = "invalid_parameter"

    def __init__(self, path: str, detail: str, code: str | None = None):
        super().__init__(detail, code=code)
        self.path = path


def parse_parameters(params, also: frozenset[str] = frozenset()) -> dict:
    """``RolloutSpec`` keyword arguments from a release request's JSON strategy parameters.

    The names accepted are the fields of ``RolloutSpec``, ``CanaryStep`` and ``Thresholds``
    themselves, so a field added to one is a parameter at once, plus ``also`` (the portal's
    own, an A/B test's ``outcome``), which are left out of the result. Unknown names, values
    of the wrong kind and missing step weights raise ``ParameterError`` naming the path;
    whether the values make a rollout is for the spec (built from the result) and
    ``limits_problem`` to say. A step may be written ``[weight, bake_seconds]``."""
    if not isinstance(params, dict):
        raise ParameterError("", "strategy parameters must be a JSON object")
    spec_fields = [f.name for f in fields(RolloutSpec) if f.name not in _FILLED_IN]
    _refuse_unknown(params, [*spec_fields, *also], "")
    parsed = {}
    for name, value in params.items():
        if name == "steps":
            parsed[name] = _steps(value)
        elif name == "thresholds":
            parsed[name] = _build(Thresholds, value, "thresholds")
        elif name not in also:
            parsed[name] = _number(RolloutSpec, name, value, name)
    return parsed


def _refuse_unknown(values: dict, known: list[str], path: str) -> None:
    unknown = sorted(set(values) - set(known))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise ParameterError(where, f"unknown parameter {where}; valid here: "
                                    f"{', '.join(sorted(known))}", code="unknown_parameter")


def _steps(value) -> tuple[CanaryStep, ...]:
    if not isinstance(value, list) or not value:
        raise ParameterError("steps", 'steps must be a non-empty list of steps, each '
                                      '{"weight": 0.25, "bake_seconds": 60}')
    steps = []
    for i, step in enumerate(value):
        if isinstance(step, list) and 1 <= len(step) <= 2:
            step = dict(zip(("weight", "bake_seconds"), step, strict=False))
        steps.append(_build(CanaryStep, step, f"steps[{i}]"))
    return tuple(steps)


def _build(cls, values, path: str):
    """``cls`` (a dataclass of numbers) from a JSON object, every name and number checked."""
    if not isinstance(values, dict):
        raise ParameterError(path, f"{path} must be an object of "
                                   f"{', '.join(f.name for f in fields(cls))}")
    _refuse_unknown(values, [f.name for f in fields(cls)], path)
    for f in fields(cls):
        if f.name not in values and f.default is MISSING and f.default_factory is MISSING:
            raise ParameterError(f"{path}.{f.name}", f"{path}.{f.name} is required")
    numbers = {name: _number(cls, name, value, f"{path}.{name}")
               for name, value in values.items()}
    try:
        return cls(**numbers)
    except RolloutError as e:  # the class's own check (thresholds at least 0)
        raise ParameterError(path, e.detail) from e


def _number(cls, name: str, value, path: str):
    """``value`` if it is what field ``name`` of ``cls`` takes: a finite number, a whole
    one for an ``int`` field, or null where the field may be None."""
    hint = typing.get_type_hints(cls)[name]
    kinds = typing.get_args(hint) or (hint,)
    whole = int in kinds and float not in kinds
    if value is None and type(None) in kinds:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
        kind = "a whole number" if whole else "a number"
        nullable = " or null" if type(None) in kinds else ""
        raise ParameterError(path, f"{path} must be {kind}{nullable}, not {_shown(value)}")
    if whole and not float(value).is_integer():
        raise ParameterError(path, f"{path} must be a whole number, not {value:g}")
    return int(value) if whole else value


def _shown(value) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer past a float's range
        return False
