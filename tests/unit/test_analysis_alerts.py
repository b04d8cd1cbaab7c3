"""ops.analysis: which firing alerts are the candidate's, and which the endpoint's."""

from __future__ import annotations

from ops.analysis import PrometheusAnalyzer
from ops.rollout import Strategy, Thresholds, Verdict, evaluate


class Alerts:
    def __init__(self, *alerts):
        self._alerts = list(alerts)

    def alerts(self):
        return self._alerts


def alert(variant, state="firing", name="ModelgateFeatureDriftCritical", feature="age"):
    return {"state": state, "value": "0.4123",
            "labels": {"alertname": name, "severity": "critical", "endpoint": "churn",
                       "environment": "production", "variant": variant, "feature": feature},
            "annotations": {"summary": f"{feature} drifted far on churn"}}


def analyzer(*alerts) -> PrometheusAnalyzer:
    found = PrometheusAnalyzer("http://127.0.0.1:9")
    found.client = Alerts(*alerts)
    return found


def test_an_alert_only_the_candidate_has_gates_the_rollout():
    [found] = analyzer(alert("candidate"))._alerts("churn", "production")
    assert found.severity == "critical"


def test_an_alert_the_stable_has_too_is_the_endpoints_and_does_not_gate():
    for stable in (alert("stable"), alert("stable", state="pending")):
        [found] = analyzer(alert("candidate"), stable)._alerts("churn", "production")
        assert found.severity == "endpoint"
        evaluation = evaluate_alerts(found)
        assert evaluation.verdict == Verdict.PASS and not evaluation.critical_alerts
        detail = evaluation.measurements[-1].detail
        assert "every variant" in detail and "feature age" in detail and "0.412" in detail


def test_the_same_alert_on_another_feature_is_still_the_candidates():
    [found] = analyzer(alert("candidate"), alert("stable", feature="income"))._alerts(
        "churn", "production")
    assert found.severity == "critical"


def evaluate_alerts(found):
    from ops.rollout import Analysis

    analysis = Analysis(requests=1000, error_rate=0.0, p99_latency=0.01,
                        stable_p99_latency=0.01, alerts=(found,))
    return evaluate(analysis, Thresholds(), Strategy.CANARY)
