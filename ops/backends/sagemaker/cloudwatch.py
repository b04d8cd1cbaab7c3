"""Rollout analysis of SageMaker endpoints: CloudWatch, where SageMaker reports its metrics.

The portal's Prometheus cannot scrape a SageMaker endpoint's containers; this analyzer
implements ``ops.analysis.Analyzer`` from what SageMaker itself publishes.
"""

from __future__ import annotations

import datetime as dt
import math

from botocore.exceptions import BotoCoreError, ClientError

from ops.analysis import CANDIDATE, STABLE, Analyzer, Measured
from ops.rollout import Alert, Analysis

#: SageMaker's own per-variant endpoint metrics (namespace AWS/SageMaker). ModelLatency is
#: in microseconds.
SAGEMAKER_NAMESPACE = "AWS/SageMaker"


class CloudWatchAnalyzer(Analyzer):
    """Measures a SageMaker candidate variant from the metrics SageMaker itself publishes.

    A SageMaker endpoint's containers cannot be scraped by the portal's Prometheus, but
    SageMaker reports ``Invocations``, ``Invocation5XXErrors``, ``Invocation4XXErrors`` and
    ``ModelLatency`` per endpoint and variant to CloudWatch. Alarms in state ``ALARM`` whose dimensions name the
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
            "refused": stat("Invocation4XXErrors", CANDIDATE, "Sum"),
            "stable_requests": stat("Invocations", STABLE, "Sum"),
            "stable_refused": stat("Invocation4XXErrors", STABLE, "Sum"),
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
                environment: str | None = None, baseline_seconds: int | None = None,
                project: str | None = None) -> Measured:
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

        def share(part: str, whole: str) -> float | None:
            count = total(whole)
            return (total(part) or 0.0) / count if count else None

        analysis = Analysis(requests=total("requests"), error_rate=share("errors", "requests"),
                            client_error_rate=share("refused", "requests"),
                            stable_client_error_rate=share("stable_refused", "stable_requests"),
                            p99_latency=worst_seconds("p99_latency"),
                            stable_p99_latency=worst_seconds("stable_p99_latency"),
                            alerts=alerts)
        return Measured(analysis, shown)
