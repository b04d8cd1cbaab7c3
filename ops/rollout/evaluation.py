"""The verdict on one analysis of the candidate: each measurement judged against the
spec's thresholds, and critical alerts."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum

from ops.numbers import distinct, figure
from ops.numbers import seconds as _in_seconds
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
    error_rate: float | None = None  # 0..1, server errors (5xx)
    p99_latency: float | None = None  # seconds
    stable_p99_latency: float | None = None
    disagreement_rate: float | None = None  # shadow
    alerts: tuple[Alert, ...] = ()
    # What callers feel beyond 5xx: the share of requests refused (4xx), the candidate's
    # against the stable's on the same traffic (or the stable's over the rollout so far when
    # it has no traffic now: the 100 % step).
    client_error_rate: float | None = None
    stable_client_error_rate: float | None = None
    # Predicted rows per class label (classifiers), the candidate's and the stable's.
    predictions: dict | None = None
    stable_predictions: dict | None = None
    # The spread of predicted values (regressors: their standard deviation).
    prediction_spread: float | None = None
    stable_prediction_spread: float | None = None


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


def _latency(analysis: Analysis, thresholds: Thresholds, enough: bool) -> Measurement:
    """The candidate's p99 against the stable's; without a stable figure (no traffic on
    the stable and no earlier one to compare with), against ``min_p99_seconds`` and
    ``max_p99_seconds``: a missing denominator never leaves the verdict open for ever."""
    candidate, stable = _number(analysis.p99_latency), _number(analysis.stable_p99_latency)
    fast = candidate is not None and candidate < thresholds.min_p99_seconds
    note = f" (candidate {_seconds(candidate)} / stable {_seconds(stable)})"
    if candidate is not None and not stable:
        limit = thresholds.max_p99_seconds
        if not enough:
            return Measurement("p99_latency", candidate, limit, Verdict.INCONCLUSIVE,
                               f"{_seconds(candidate)}, too few requests to judge")
        if fast:
            return Measurement("p99_latency", candidate, thresholds.min_p99_seconds,
                               Verdict.PASS, f"{_seconds(candidate)} < "
                               f"{_in_seconds(thresholds.min_p99_seconds)} (no stable figure to "
                               "compare)")
        if limit is not None:
            verdict = Verdict.PASS if candidate <= limit else Verdict.FAIL
            return Measurement("p99_latency", candidate, limit, verdict,
                               f"{_seconds(candidate)} {'<=' if verdict == Verdict.PASS else '>'}"
                               f" {_in_seconds(limit)} (no stable figure to compare)")
    ratio = candidate / stable if candidate is not None and stable else None
    excuse = (f"the candidate's p99 is under the latency floor of "
              f"{_in_seconds(thresholds.min_p99_seconds)}, too fast to judge by ratio"
              if fast else None)
    return _judge("p99_latency_ratio", ratio, thresholds.max_p99_ratio, enough, excuse, note)


def _seconds(value: float | None) -> str:
    return "no data" if value is None else _in_seconds(value)


def _judge(metric: str, value: float | None, limit: float, enough: bool,
           excuse: str | None = None, note: str = "") -> Measurement:
    """A value against an upper limit: fail past it, unless ``excuse`` says why not."""
    if value is None:
        verdict, detail = Verdict.INCONCLUSIVE, "no data"
    elif not enough:
        verdict, detail = Verdict.INCONCLUSIVE, f"{figure(value)}, too few requests to judge"
    else:
        shown, bound = distinct(value, limit)  # never "1.5 > 1.5"
        if value > limit and excuse:
            verdict, detail = Verdict.PASS, f"{shown} > {bound}, but {excuse}"
        elif value > limit:
            verdict, detail = Verdict.FAIL, f"{shown} > {bound}"
        else:
            verdict, detail = Verdict.PASS, f"{shown} <= {bound}"
    return Measurement(metric, value, limit, verdict, detail + note)


def _client_errors(analysis: Analysis, thresholds: Thresholds,
                   enough: bool) -> list[Measurement]:
    """Requests the candidate refuses (4xx) beyond the share the stable refuses of the same
    traffic: a candidate with another interface answers every caller 400, never 5xx."""
    candidate = _number(analysis.client_error_rate)
    if candidate is None or thresholds.max_client_error_excess is None:
        return []  # not measured by this source (a shadow), or not judged (a breaking change)
    stable = _number(analysis.stable_client_error_rate)
    # Judged on what the candidate refused at the least (99 % one-sided Wilson bound): with
    # callers sending 2 % bad requests to both, 100 requests often show 4 % on one side.
    requests = _number(analysis.requests) or 0.0
    at_least = _wilson_lower(candidate, requests)
    against = (f"the stable refused {stable:.1%}" if stable is not None
               else "no stable figure: judged against 0")
    measurement = _judge("client_error_excess", max(at_least - (stable or 0.0), 0.0),
                         thresholds.max_client_error_excess, enough,
                         note=f" (the candidate refused {candidate:.1%} of {figure(requests)}, at "
                              f"least {at_least:.1%}; {against})")
    return [measurement]


def _wilson_lower(share: float, n: float, z: float = 2.326) -> float:
    """The lower end of the 99 % one-sided Wilson interval of a share seen in ``n`` trials."""
    if n <= 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(max(share * (1 - share) / n + z * z / (4 * n * n), 0.0))
    return max((centre - spread) / (1 + z * z / n), 0.0)


def _shares(counts: dict | None) -> dict[str, float]:
    counts = {str(k): float(v) for k, v in (counts or {}).items()
              if v is not None and math.isfinite(float(v)) and float(v) > 0}
    total = sum(counts.values())
    return {k: v / total for k, v in counts.items()} if total else {}


def _describe(shares: dict[str, float]) -> str:
    top = sorted(shares.items(), key=lambda kv: -kv[1])[:4]
    return ", ".join(f"{label!r} {share:.0%}" for label, share in top)


def _predictions(analysis: Analysis, thresholds: Thresholds,
                 enough: bool) -> list[Measurement]:
    """The candidate's predicted classes against the stable's on the same traffic (total
    variation distance: the share of rows that would have to change class); a candidate
    answering one class only where the stable answers several fails whatever the distance."""
    candidate, stable = _shares(analysis.predictions), _shares(analysis.stable_predictions)
    if not candidate or not stable:
        return []
    shift = 0.5 * sum(abs(candidate.get(k, 0.0) - stable.get(k, 0.0))
                      for k in set(candidate) | set(stable))
    note = f" (candidate {_describe(candidate)}; stable {_describe(stable)})"
    # One class only where the stable predicts several: judged once the rows the stable's
    # mix would put in other classes are at least 10, so chance alone cannot explain it.
    rows = sum(v for v in (analysis.predictions or {}).values() if _number(v))
    others = rows * (1 - max(stable.values()))
    collapsed = (max(candidate.values()) >= 0.99 and max(stable.values()) <= 0.95
                 and others >= 10)
    limit = thresholds.max_prediction_shift
    if enough and collapsed:
        return [Measurement("prediction_shift", shift, limit, Verdict.FAIL,
                            f"the candidate predicts one class only{note}")]
    if limit is None:
        verdict = Verdict.PASS if enough else Verdict.INCONCLUSIVE
        return [Measurement("prediction_shift", shift, None, verdict,
                            f"{figure(shift)}, not judged (no max_prediction_shift){note}")]
    return [_judge("prediction_shift", shift, limit, enough, note=note)]


def _spread(analysis: Analysis, thresholds: Thresholds, enough: bool) -> list[Measurement]:
    """A regressor's spread of predicted values against the stable's: a constant output
    (spread near 0) fails."""
    candidate = _number(analysis.prediction_spread)
    stable = _number(analysis.stable_prediction_spread)
    if candidate is None or not stable:
        return []
    ratio = candidate / stable
    note = f" (standard deviation: candidate {figure(candidate)}, stable {figure(stable)})"
    if not enough:
        return [Measurement("prediction_spread_ratio", ratio, thresholds.min_spread_ratio,
                            Verdict.INCONCLUSIVE, f"{figure(ratio)}, too few requests to judge")]
    verdict = Verdict.PASS if ratio >= thresholds.min_spread_ratio else Verdict.FAIL
    sign = ">=" if verdict == Verdict.PASS else "<"
    shown, bound = distinct(ratio, thresholds.min_spread_ratio)
    return [Measurement("prediction_spread_ratio", ratio, thresholds.min_spread_ratio, verdict,
                        f"{shown} {sign} {bound}{note}")]


def _sentence(alert: Alert) -> str:
    """An alert as people read it: its name, what it is about (feature, variant) and its
    value rounded; never the raw label set (it once read as a dump of Prometheus labels)."""
    values = alert.values or {}
    about = [f"{label} {values[label]}" for label in ("feature", "variant")
             if values.get(label)]
    try:
        value = float(values.get("value"))
        if math.isfinite(value):
            about.append(f"value {figure(value)}")
    except (TypeError, ValueError):
        pass
    summary = str(values.get("summary") or "").strip()
    return f"{alert.name}" + (f" ({', '.join(about)})" if about else "") + \
        (f": {summary[:200]}" if summary else "")


def _alerts(analysis: Analysis) -> tuple[list[Measurement], list[str]]:
    measurements, critical = [], []
    for alert in analysis.alerts:
        if alert.severity.lower() == "critical":
            critical.append(alert.name)
            measurements.append(Measurement(f"alert:{alert.name}", None, None, Verdict.FAIL,
                                            f"critical alert {_sentence(alert)}"))
        else:  # recorded so people see it, but only critical alerts gate a rollout
            measurements.append(Measurement(f"alert:{alert.name}", None, None, Verdict.PASS,
                                            f"{alert.severity} alert {_sentence(alert)}, "
                                            "not gating"))
    return measurements, critical


def evaluate(analysis: Analysis, thresholds: Thresholds, strategy: Strategy) -> Evaluation:
    """Judge one analysis: fail beats inconclusive beats pass.

    Nothing is judged below ``min_requests`` (inconclusive), except a critical alert, which
    fails at once. Disagreement is judged only for shadow rollouts. Beyond 5xx and latency,
    a candidate fails on what its callers feel: requests it refuses that the stable accepts,
    and predictions collapsed against the stable's.
    """
    requests = _number(analysis.requests)
    enough = requests is not None and requests >= thresholds.min_requests
    shown, needed = distinct(requests or 0, thresholds.min_requests)
    measurements = [Measurement(
        "requests", requests, thresholds.min_requests,
        Verdict.PASS if enough else Verdict.INCONCLUSIVE,
        "no data" if requests is None
        else f"{shown} {'>=' if enough else '<'} {needed} needed")]
    measurements.append(_judge("error_rate", _number(analysis.error_rate),
                               thresholds.max_error_rate, enough))
    measurements.append(_latency(analysis, thresholds, enough))
    if strategy == Strategy.SHADOW:
        measurements.append(_judge("disagreement_rate", _number(analysis.disagreement_rate),
                                   thresholds.max_disagreement, enough))
    else:  # a shadow answers nobody: what its callers feel is the disagreement
        measurements += _client_errors(analysis, thresholds, enough)
        measurements += _predictions(analysis, thresholds, enough)
        measurements += _spread(analysis, thresholds, enough)
    alerts, critical = _alerts(analysis)
    measurements += alerts
    verdicts = {m.verdict for m in measurements}
    overall = next(v for v in (Verdict.FAIL, Verdict.INCONCLUSIVE, Verdict.PASS)
                   if v in verdicts)
    return Evaluation(overall, tuple(measurements), tuple(critical))
