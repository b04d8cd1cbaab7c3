"""Rollout analysis: what Prometheus says about a deployment's candidate.

Reads the model servers' own series (``ops/serving/metrics.py``) through Prometheus's HTTP
API and returns an ``ops.rollout.Analysis``. Anything that cannot be measured — Prometheus
unreachable, no traffic yet, an empty or NaN answer — comes back as ``None``, which the
rollout engine treats as inconclusive, never as a pass. Every query is kept with its answer
so the portal can show exactly what was measured.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from ops import promql
from ops.prometheus import PrometheusClient, PrometheusUnavailable
from ops.rollout import Alert, Analysis

CANDIDATE = "candidate"
STABLE = "stable"


@dataclass
class Measured:
    """An analysis plus the PromQL behind each number (for the deployment's record)."""

    analysis: Analysis
    queries: dict = field(default_factory=dict)
    error: str = ""


class Analyzer(ABC):
    """What the rollout analysis asks of a source of measurements: ``measure``.

    Implemented by ``PrometheusAnalyzer`` (the model servers' own series), ``NoAnalyzer``
    (nothing configured) and a backend's own (``Backend.analyzer()``; SageMaker's
    ``CloudWatchAnalyzer`` in ``ops.backends.sagemaker``).
    """

    @abstractmethod
    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None, baseline_seconds: int | None = None,
                project: str | None = None) -> Measured:
        """The candidate of ``endpoint`` over the last ``window_seconds`` (its shadow
        comparison when ``shadow``), matched to ``environment`` (and ``project``, whose
        environments it is) where the source can tell environments apart; what the stable lacks over that window (no traffic: the 100 %
        step) over the last ``baseline_seconds`` (the rollout so far) where the source can.
        Never raises for an unreachable source or missing data: the ``Measured`` then has
        ``None`` values (inconclusive) and says why in ``error``."""


def _selector(endpoint: str, variant: str, environment: str | None = None,
              project: str | None = None) -> str:
    return promql.selector(environment=environment, project=project, endpoint=endpoint,
                           variant=variant)


def queries_for(endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None, project: str | None = None) -> dict[str, str]:
    """The PromQL of each measurement, over the last ``window_seconds``.

    ``environment`` and ``project``, when given, are matched on the labels the scrape adds
    to every model-server series (the portal's managed Prometheus does; a Prometheus
    managed elsewhere must too, or the same model in staging and production would mix, and
    two projects' ``production``/``churn`` would judge each other's rollouts).
    A shadow candidate answers nobody: its traffic and latency are the server's shadow
    series (copies of live requests), and it has no error series of its own.
    """
    w = f"{max(int(window_seconds), 1)}s"
    c = _selector(endpoint, CANDIDATE, environment, project)
    s = _selector(endpoint, STABLE, environment, project)
    if shadow:
        return {
            "requests": promql.shadow_compared(c, w),
            "error_rate": promql.shadow_share("error", c, w),
            "p99_latency": promql.p99_latency(c, w, histogram=promql.SHADOW_DURATION),
            "stable_p99_latency": promql.p99_latency(s, w),
            "disagreement_rate": promql.shadow_share("disagree", c, w,
                                                     among='result=~"agree|disagree"'),
        }
    return {
        "requests": promql.requests(c, w, over=promql.INCREASE),
        # No 5xx series at all means no server error yet: 0, not "no data".
        "error_rate": promql.error_rate(c, w, over=promql.INCREASE, zero_without_errors=True),
        "p99_latency": promql.p99_latency(c, w),
        "stable_p99_latency": promql.p99_latency(s, w),
        "disagreement_rate": promql.shadow_share("disagree", c, w),
        "client_error_rate": promql.refused_share(c, w),
        "stable_client_error_rate": promql.refused_share(s, w),
        "predictions": promql.predictions_by_class(c, w),
        "stable_predictions": promql.predictions_by_class(s, w),
        "prediction_spread": promql.prediction_spread(c, w),
        "stable_prediction_spread": promql.prediction_spread(s, w),
    }


# Measurements of the stable that a step may lack (at 100 % the stable has no traffic): they
# are then taken over the rollout so far, what the stable measured in the steps before.
STABLE_BASELINE = ("stable_p99_latency", "stable_client_error_rate", "stable_predictions",
                   "stable_prediction_spread")
# Measurements answered per label value (a vector), not as one number.
BY_LABEL = {"predictions": "class", "stable_predictions": "class"}


class PrometheusAnalyzer(Analyzer):
    """Measures a candidate through a Prometheus server's HTTP API."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0):
        self.client = PrometheusClient(url, token, timeout=timeout)

    def _query(self, promql: str) -> float | None:
        result = self.client.query(promql)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    def _by_label(self, promql: str, label: str) -> dict | None:
        """``{label value: number}`` of a vector answer (None when empty)."""
        values = {}
        for sample in self.client.query(promql) or []:
            value = float(sample["value"][1])
            if math.isfinite(value):
                values[sample["metric"].get(label, "")] = value
        # All zero (a variant loaded at weight 0 exports series that do not move): no data,
        # so the stable's figure is taken over the rollout so far.
        return values if any(values.values()) else None

    def _values(self, queries: dict[str, str]) -> dict:
        return {name: (self._by_label(query, BY_LABEL[name]) if name in BY_LABEL
                       else self._query(query))
                for name, query in queries.items()}

    def _baseline(self, values: dict, queries: dict, endpoint: str, baseline_seconds: int,
                  environment: str | None, project: str | None = None) -> None:
        """Fill the stable's missing measurements from the rollout so far (in place)."""
        longer = queries_for(endpoint, baseline_seconds, environment=environment,
                             project=project)
        for name in STABLE_BASELINE:
            if values.get(name) is None and name in queries:
                key = f"{name} (over the rollout so far)"
                queries[key] = longer[name]
                values[name] = self._values({name: longer[name]})[name]

    def _alerts(self, endpoint: str, environment: str | None = None,
                project: str | None = None) -> tuple[Alert, ...]:
        """Firing alerts on the candidate (or on no variant). One that the stable has too
        (firing or pending: the same alert and feature) is the endpoint's, not the
        candidate's: shifted inputs reach every variant alike, and blaming the candidate for
        them once rolled back an A/B test whose two arms drifted together. It is kept, as a
        warning that does not gate the rollout."""
        active = [a for a in self.client.alerts()
                  if (a.get("labels") or {}).get("endpoint") == endpoint
                  and (environment is None
                       or (a.get("labels") or {}).get("environment") in (environment, None))
                  and (project is None
                       or (a.get("labels") or {}).get("project") in (project, None))]
        on_stable = {_kind(a["labels"]) for a in active
                     if a["labels"].get("variant") == STABLE
                     and a.get("state") in ("firing", "pending")}
        alerts = []
        for alert in active:
            labels = alert["labels"]
            if alert.get("state") != "firing" or labels.get("variant") not in (CANDIDATE, None):
                continue
            values = {"value": alert.get("value"), **labels,
                      "summary": (alert.get("annotations") or {}).get("summary", "")}
            severity = labels.get("severity", "warning")
            if labels.get("variant") == CANDIDATE and _kind(labels) in on_stable:
                severity = "endpoint"  # every variant has it: not a verdict on the candidate
                values["summary"] = ("on every variant of the endpoint (the inputs changed, "
                                     "not the candidate): " + values["summary"]).rstrip(": ")
            alerts.append(Alert(name=labels.get("alertname", "alert"), severity=severity,
                                values=values))
        return tuple(alerts)

    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None, baseline_seconds: int | None = None,
                project: str | None = None) -> Measured:
        promql = queries_for(endpoint, window_seconds, shadow, environment, project)
        try:
            values = self._values(promql)
            if not shadow and baseline_seconds and baseline_seconds > window_seconds:
                self._baseline(values, promql, endpoint, int(baseline_seconds), environment,
                               project)
            alerts = self._alerts(endpoint, environment, project)
        except PrometheusUnavailable as e:
            return Measured(Analysis(), promql, error=str(e))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return Measured(Analysis(), promql, error=f"Prometheus answered oddly: {e}")
        return Measured(Analysis(alerts=alerts, **values), promql)


def _kind(labels: dict) -> tuple:
    """What makes two variants' alerts the same alert: its name and what it is about."""
    return labels.get("alertname"), labels.get("feature")


class NoAnalyzer(Analyzer):
    """Used where no Prometheus is configured: every analysis is inconclusive, and says why."""

    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None, baseline_seconds: int | None = None,
                project: str | None = None) -> Measured:
        return Measured(Analysis(), {}, error="no Prometheus is configured "
                                              "(set MODELGATE_PROMETHEUS_URL)")


# -- SageMaker: CloudWatch (moved next to the SageMaker backend) ------------------------------


def __getattr__(name: str):
    """``CloudWatchAnalyzer`` and ``SAGEMAKER_NAMESPACE`` live in
    ``ops.backends.sagemaker.cloudwatch``; imported from here on first use (a plain import
    would be circular, and this module needs no AWS library)."""
    if name in ("CloudWatchAnalyzer", "SAGEMAKER_NAMESPACE"):
        from ops.backends.sagemaker import cloudwatch

        return getattr(cloudwatch, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
