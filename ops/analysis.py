"""Rollout analysis: what Prometheus says about a deployment's candidate.

Reads the model servers' own series (``ops/serving/metrics.py``) through Prometheus's HTTP
API and returns an ``ops.rollout.Analysis``. Anything that cannot be measured — Prometheus
unreachable, no traffic yet, an empty or NaN answer — comes back as ``None``, which the
rollout engine treats as inconclusive, never as a pass. Every query is kept with its answer
so the portal can show exactly what was measured.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError

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


def _selector(endpoint: str, variant: str, environment: str | None = None) -> str:
    where = f'endpoint="{endpoint}",variant="{variant}"'
    return f'environment="{environment}",{where}' if environment else where


def queries_for(endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None) -> dict[str, str]:
    """The PromQL of each measurement, over the last ``window_seconds``.

    ``environment``, when given, is matched on the ``environment`` label that the scrape
    adds to every model-server series (the portal's managed Prometheus does; a Prometheus
    managed elsewhere must too, or the same model in staging and production would mix).
    A shadow candidate answers nobody: its traffic and latency are the server's shadow
    series (copies of live requests), and it has no error series of its own.
    """
    w = f"{max(int(window_seconds), 1)}s"
    c, s = _selector(endpoint, CANDIDATE, environment), _selector(endpoint, STABLE, environment)
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
        self.client = PrometheusClient(url, token, timeout=timeout)

    def _query(self, promql: str) -> float | None:
        result = self.client.query(promql)
        if not result:
            return None
        value = float(result[0]["value"][1])
        return value if math.isfinite(value) else None

    def _alerts(self, endpoint: str, environment: str | None = None) -> tuple[Alert, ...]:
        alerts = []
        for alert in self.client.alerts():
            labels = alert.get("labels", {})
            if (alert.get("state") == "firing" and labels.get("endpoint") == endpoint
                    and labels.get("variant") in (CANDIDATE, None)
                    and (environment is None
                         or labels.get("environment") in (environment, None))):
                alerts.append(Alert(name=labels.get("alertname", "alert"),
                                    severity=labels.get("severity", "warning"),
                                    values={"value": alert.get("value"), **labels}))
        return tuple(alerts)

    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None) -> Measured:
        promql = queries_for(endpoint, window_seconds, shadow, environment)
        try:
            values = {name: self._query(query) for name, query in promql.items()}
            alerts = self._alerts(endpoint, environment)
        except PrometheusUnavailable as e:
            return Measured(Analysis(), promql, error=str(e))
        except (ValueError, KeyError, IndexError, TypeError) as e:
            return Measured(Analysis(), promql, error=f"Prometheus answered oddly: {e}")
        return Measured(Analysis(alerts=alerts, **values), promql)


class NoAnalyzer:
    """Used where no Prometheus is configured: every analysis is inconclusive, and says why."""

    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None) -> Measured:
        return Measured(Analysis(), {}, error="no Prometheus is configured "
                                              "(set MODELGATE_PROMETHEUS_URL)")


# -- SageMaker: CloudWatch --------------------------------------------------------------------

#: SageMaker's own per-variant endpoint metrics (namespace AWS/SageMaker). ModelLatency is
#: in microseconds.
SAGEMAKER_NAMESPACE = "AWS/SageMaker"


class CloudWatchAnalyzer:
    """Measures a SageMaker candidate variant from the metrics SageMaker itself publishes.

    A SageMaker endpoint's containers cannot be scraped by the portal's Prometheus, but
    SageMaker reports ``Invocations``, ``Invocation5XXErrors`` and ``ModelLatency`` per
    endpoint and variant to CloudWatch. Alarms in state ``ALARM`` whose dimensions name the
    endpoint (and the candidate variant, or no variant) are the firing alerts; an alarm
    tagged or described with ``severity=critical`` gates the rollout, as a critical
    Prometheus alert does. ``latency_stat`` is the CloudWatch statistic for p99 latency
    (``p99``; the moto emulator has no percentiles, so its tests use ``Maximum``).
    """

    def __init__(self, cloudwatch, endpoint_name, latency_stat: str = "p99",
                 clock=None):
        self.cloudwatch = cloudwatch
        self.endpoint_name = endpoint_name  # the plan's endpoint -> SageMaker's name
        self.latency_stat = latency_stat
        self.clock = clock

    def _now(self) -> dt.datetime:
        return self.clock() if self.clock else dt.datetime.now(dt.UTC)

    def _queries(self, name: str, period: int) -> dict[str, dict]:
        def stat(metric: str, variant: str, statistic: str) -> dict:
            return {"Metric": {"Namespace": SAGEMAKER_NAMESPACE, "MetricName": metric,
                               "Dimensions": [{"Name": "EndpointName", "Value": name},
                                              {"Name": "VariantName", "Value": variant}]},
                    "Period": period, "Stat": statistic}

        return {
            "requests": stat("Invocations", CANDIDATE, "Sum"),
            "errors": stat("Invocation5XXErrors", CANDIDATE, "Sum"),
            "p99_latency": stat("ModelLatency", CANDIDATE, self.latency_stat),
            "stable_p99_latency": stat("ModelLatency", STABLE, self.latency_stat),
        }

    def _alerts(self, name: str) -> tuple[Alert, ...]:
        alerts = []
        pages = self.cloudwatch.get_paginator("describe_alarms").paginate(StateValue="ALARM")
        for page in pages:
            for alarm in page.get("MetricAlarms", []):
                dims = {d["Name"]: d["Value"] for d in alarm.get("Dimensions", [])}
                if dims.get("EndpointName") != name or \
                        dims.get("VariantName", CANDIDATE) != CANDIDATE:
                    continue
                description = (alarm.get("AlarmDescription") or "").lower()
                severity = "critical" if "severity=critical" in description else "warning"
                alerts.append(Alert(name=alarm["AlarmName"], severity=severity,
                                    values={"metric": alarm.get("MetricName"),
                                            "threshold": alarm.get("Threshold"),
                                            "reason": alarm.get("StateReason", "")}))
        return tuple(alerts)

    def measure(self, endpoint: str, window_seconds: int, shadow: bool = False,
                environment: str | None = None) -> Measured:
        # One SageMaker endpoint per environment's account/region: the name is enough.
        name = self.endpoint_name(endpoint)
        if shadow:
            return Measured(Analysis(), {}, error="SageMaker endpoints have no shadow "
                                                  "comparison metrics")
        # CloudWatch keeps SageMaker metrics at one-minute resolution: the window is rounded
        # up to whole minutes and the datapoints summed (latency: the worst minute).
        period = 60 * max(1, -(-int(window_seconds) // 60))
        end = self._now()
        start = end - dt.timedelta(seconds=period)
        stats = self._queries(name, period)
        shown = {key: f"{s['Metric']['MetricName']} {s['Stat']} "
                      f"EndpointName={name} VariantName={s['Metric']['Dimensions'][1]['Value']}"
                      f" over {period}s" for key, s in stats.items()}
        try:
            answer = self.cloudwatch.get_metric_data(
                MetricDataQueries=[{"Id": key.replace("_", ""), "MetricStat": s,
                                    "ReturnData": True} for key, s in stats.items()],
                StartTime=start, EndTime=end + dt.timedelta(seconds=60))
            found = {r["Id"]: r.get("Values", []) for r in answer.get("MetricDataResults", [])}
            alerts = self._alerts(name)
        except (BotoCoreError, ClientError, KeyError, ValueError) as e:
            return Measured(Analysis(), shown, error=f"CloudWatch unavailable: {e}")

        def total(key: str) -> float | None:
            values = [v for v in found.get(key.replace("_", ""), []) if math.isfinite(v)]
            return sum(values) if values else None

        def worst_seconds(key: str) -> float | None:
            values = [v for v in found.get(key.replace("_", ""), []) if math.isfinite(v)]
            return max(values) / 1e6 if values else None

        requests_ = total("requests")
        errors = total("errors")
        error_rate = None
        if requests_:
            error_rate = (errors or 0.0) / requests_
        analysis = Analysis(requests=requests_, error_rate=error_rate,
                            p99_latency=worst_seconds("p99_latency"),
                            stable_p99_latency=worst_seconds("stable_p99_latency"),
                            alerts=alerts)
        return Measured(analysis, shown)
