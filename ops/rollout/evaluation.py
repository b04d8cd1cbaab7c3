"""The verdict on one analysis of the candidate: each measurement judged against the
spec's thresholds, and critical alerts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ops.rollout.spec import Strategy, Thresholds


class Verdict(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    INCONCLUSIVE = "inconclusive"


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
