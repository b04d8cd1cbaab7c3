"""Rollout analysis: what Prometheus says about a deployment's candidate.

Reads the model servers' own series (``ops/serving/metrics.py``) through Prometheus's HTTP
API and returns an ``ops.rollout.Analysis``. Anything that cannot be measured — Prometheus
unreachable, no traffic yet, an empty or NaN answer — comes back as ``None``, which the
rollout engine treats as inconclusive, never as a pass. Every query is kept with its answer
so the portal can show exactly what was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import requests

from ops.rollout import Alert, Analysis

CANDIDATE = "candidate"
STABLE = "stable"


@dataclass
class Measured:
    """An analysis plus the PromQL behind each number (for the deployment's record)."""

    analysis: Analysis
    queries: dict = field(default_factory=dict)
    error: str = ""


def _selector(endpoint: str, variant: str) -> str:
    return f'endpoint="{endpoint}",variant="{variant}"'


def queries_for(endpoint: str, window_seconds: int, shadow: bool = False) -> dict[str, str]:
    """The PromQL of each measurement, over the last ``window_seconds``.

    A shadow candidate answers nobody: its traffic and latency are the server's shadow
    series (copies of live requests), and it has no error series of its own.
    """
    w = f"{max(int(window_seconds), 1)}s"
    c, s = _selector(endpoint, CANDIDATE), _selector(endpoint, STABLE)
    if shadow:
        compared = f"sum(increase(modelgate_shadow_comparisons_total{{{c}}}[{w}]))"
        return {
            "requests": compared,
            "error_rate": (f"(sum(increase(modelgate_shadow_comparisons_total{{{c},"
                           f"result=\"error\"}}[{w}])) or vector(0)) / {compared}"),
            "p99_latency": ("histogram_quantile(0.99, sum by (le) (rate("
                            f"modelgate_shadow_duration_seconds_bucket{{{c}}}[{w}])))"),
            "stable_p99_latency": ("histogram_quantile(0.99, sum by (le) (rate("
                                   f"modelgate_request_duration_seconds_bucket{{{s}}}[{w}])))"),
            "disagreement_rate": (
                f"(sum(increase(modelgate_shadow_comparisons_total{{{c},result=\"disagree\"}}"
                f"[{w}])) or vector(0)) / sum(increase(modelgate_shadow_comparisons_total"
                f"{{{c},result=~\"agree|disagree\"}}[{w}]))"),
        }
    return {
        "requests": f"sum(increase(modelgate_requests_total{{{c}}}[{w}]))",
        # No 5xx series at all means no server error yet: 0, not "no data".
        "error_rate": (f"(sum(increase(modelgate_requests_total{{{c},status=\"5xx\"}}[{w}])) "
                       f"or vector(0)) / sum(increase(modelgate_requests_total{{{c}}}[{w}]))"),
        "p99_latency": ("histogram_quantile(0.99, sum by (le) (rate("
                        f"modelgate_request_duration_seconds_bucket{{{c}}}[{w}])))"),
        "stable_p99_latency": ("histogram_quantile(0.99, sum by (le) (rate("
                               f"modelgate_request_duration_seconds_bucket{{{s}}}[{w}])))"),
        "disagreement_rate": (
            f"(sum(increase(modelgate_shadow_comparisons_total{{{c},result=\"disagree\"}}[{w}])) "
            f"or vector(0)) / sum(increase(modelgate_shadow_comparisons_total{{{c}}}[{w}]))"),
    }


class PrometheusAnalyzer:
    """Measures a candidate through a Prometheus server's HTTP API."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 5.0):
        self.url = url.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"
        self.timeout = timeout

    def _query(self, promql: str) -> float | None:
        answer = self.session.get(f"{self.url}/api/v1/query", params={"query": promql},
                                  timeout=self.timeout)
        answer.raise_for_status()
        result = answer.json().get("data", {}).get("result", [])
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    def _alerts(self, endpoint: str) -> tuple[Alert, ...]:
        answer = self.session.get(f"{self.url}/api/v1/alerts", timeout=self.timeout)
        answer.raise_for_status()
        alerts = []
        for alert in answer.json().get("data", {}).get("alerts", []):
            labels = alert.get("labels", {})
            if (alert.get("state") == "firing" and labels.get("endpoint") == endpoint
                    and labels.get("variant") in (CANDIDATE, None)):
                alerts.append(Alert(name=labels.get("alertname", "alert"),
                                    severity=labels.get("severity", "warning"),
                                    values={"value": alert.get("value"), **labels}))
        return tuple(alerts)

    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False) -> Measured:
        promql = queries_for(endpoint, window_seconds, shadow)
        try:
            values = {name: self._query(query) for name, query in promql.items()}
            alerts = self._alerts(endpoint)
        except (requests.RequestException, ValueError, KeyError) as e:
            return Measured(Analysis(), promql, error=f"Prometheus unavailable: {e}")
        return Measured(Analysis(alerts=alerts, **values), promql)


class NoAnalyzer:
    """Used where no Prometheus is configured: every analysis is inconclusive, and says why."""

    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False) -> Measured:
        return Measured(Analysis(), {}, error="no Prometheus is configured "
                                              "(set MODELGATE_PROMETHEUS_URL)")
