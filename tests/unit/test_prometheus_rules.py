"""The rules and configuration the portal writes, checked by the real promtool.

``promtool test rules`` evaluates the rules on synthetic series offline, so these tests
check what the alerts do (which fires, when, with which labels), not only their syntax.
"""

import json
import os
import shutil
import subprocess
import textwrap

import pytest
import yaml

from ops import prometheus
from ops.prometheus import EndpointRules, PrometheusConfigError, PrometheusUnavailable, Target

PROMTOOL = shutil.which("promtool")
# CI installs promtool: there a missing one fails the tests instead of skipping them.
needs_promtool = pytest.mark.skipif(PROMTOOL is None and not os.environ.get("CI"),
                                    reason="promtool is not installed (apt-get install prometheus)")

RULES = EndpointRules(environment="production", endpoint="churn", project="crm", model="churn",
                      max_error_rate=0.05, max_p99_latency_seconds=0.5, no_traffic_minutes=5,
                      for_seconds=60, drift_for_seconds=30)


def promtool_test(tmp_path, rules: dict, tests: str) -> subprocess.CompletedProcess:
    (tmp_path / "rules.yml").write_text(prometheus.dump(rules))
    (tmp_path / "test.yml").write_text(textwrap.dedent(tests))
    return subprocess.run([PROMTOOL, "test", "rules", "test.yml"], cwd=tmp_path,
                          capture_output=True, text=True)


@needs_promtool
def test_promtool_accepts_the_rules():
    prometheus.check_rules_text(prometheus.dump(prometheus.rule_groups([RULES])))


@needs_promtool
def test_error_rate_alert_fires_after_its_for_duration_with_the_labels_the_portal_needs(
        tmp_path):
    done = promtool_test(tmp_path, prometheus.rule_groups([RULES]), """
        rule_files: [rules.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'modelgate_requests_total{environment="production",project="crm",endpoint="churn",variant="candidate",status="2xx"}'
                values: '0+90x20'
              - series: 'modelgate_requests_total{environment="production",project="crm",endpoint="churn",variant="candidate",status="5xx"}'
                values: '0+10x20'
              - series: 'modelgate_requests_total{environment="production",project="crm",endpoint="churn",variant="stable",status="2xx"}'
                values: '0+100x20'
              - series: 'modelgate_requests_total{environment="staging",project="crm",endpoint="churn",variant="candidate",status="5xx"}'
                values: '0+100x20'
            alert_rule_test:
              - eval_time: 1m
                alertname: ModelgateErrorRateHigh
                exp_alerts: []
              - eval_time: 3m
                alertname: ModelgateErrorRateHigh
                exp_alerts:
                  - exp_labels: {severity: critical, environment: production, endpoint: churn,
                                 variant: candidate, project: crm, model: churn}
                    exp_annotations:
                      summary: "churn (production): server errors above 5.0%"
                      description: "candidate answers 10% of requests with a server error."
    """)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_drift_alerts_follow_the_exported_verdicts(tmp_path):
    done = promtool_test(tmp_path, prometheus.rule_groups([RULES]), """
        rule_files: [rules.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'modelgate_drift_verdict{environment="production",project="crm",endpoint="churn",variant="candidate",feature="age"}'
                values: '0 0 2 2 2 2 2 2'
              - series: 'modelgate_drift_verdict{environment="production",project="crm",endpoint="churn",variant="stable",feature="age"}'
                values: '0 1 1 1 1 1 1 1'
              - series: 'modelgate_drift_psi{environment="production",project="crm",endpoint="churn",variant="candidate",feature="age"}'
                values: '0.01 0.02 0.91 0.91 0.91 0.91 0.91 0.91'
              - series: 'modelgate_drift_psi{environment="production",project="crm",endpoint="churn",variant="stable",feature="age"}'
                values: '0.01 0.12 0.12 0.12 0.12 0.12 0.12 0.12'
              - series: 'modelgate_drift_dataset{environment="production",project="crm",endpoint="churn",variant="candidate"}'
                values: '0 0 1 1 1 1 1 1'
              - series: 'modelgate_drift_share{environment="production",project="crm",endpoint="churn",variant="candidate"}'
                values: '0 0 0.6 0.6 0.6 0.6 0.6 0.6'
            alert_rule_test:
              - eval_time: 75s
                alertname: ModelgateFeatureDriftCritical
                exp_alerts:
                  - exp_labels: {severity: critical, environment: production, endpoint: churn,
                                 variant: candidate, feature: age, project: crm, model: churn}
                    exp_annotations:
                      summary: "age drifted far on churn (production)"
                      description: "PSI of age on candidate is 0.910, above the critical threshold."
              - eval_time: 75s
                alertname: ModelgateFeatureDrift
                exp_alerts:
                  - exp_labels: {severity: warning, environment: production, endpoint: churn,
                                 variant: stable, feature: age, project: crm, model: churn}
                    exp_annotations:
                      summary: "age drifted on churn (production)"
                      description: "PSI of age on stable is 0.120, above the warning threshold."
              - eval_time: 75s
                alertname: ModelgateDatasetDrift
                exp_alerts:
                  - exp_labels: {severity: critical, environment: production, endpoint: churn,
                                 variant: candidate, project: crm, model: churn}
                    exp_annotations:
                      summary: "churn (production): inputs drifted"
                      description: "candidate: 60% of the features drifted."
    """)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_no_traffic_fires_only_for_a_variant_meant_to_get_traffic(tmp_path):
    done = promtool_test(tmp_path, prometheus.rule_groups([RULES]), """
        rule_files: [rules.yml]
        evaluation_interval: 1m
        tests:
          - interval: 1m
            input_series:
              - series: 'modelgate_requests_total{environment="production",project="crm",endpoint="churn",variant="stable",status="2xx"}'
                values: '5x30'
              - series: 'modelgate_variant_weight{environment="production",project="crm",endpoint="churn",variant="stable"}'
                values: '1x30'
              - series: 'modelgate_requests_total{environment="production",project="crm",endpoint="churn",variant="shadow",status="2xx"}'
                values: '5x30'
              - series: 'modelgate_variant_weight{environment="production",project="crm",endpoint="churn",variant="shadow"}'
                values: '0x30'
            alert_rule_test:
              - eval_time: 20m
                alertname: ModelgateNoTraffic
                exp_alerts:
                  - exp_labels: {severity: warning, environment: production, endpoint: churn,
                                 variant: stable, project: crm, model: churn}
                    exp_annotations:
                      summary: "churn (production): no requests for 5 minutes"
                      description: "stable is meant to get traffic and got none; no drift verdict is possible without it."
    """)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_server_down_fires_from_up_which_carries_only_the_targets_labels(tmp_path):
    # ``up`` has the labels of the target the portal writes (environment, project, model)
    # and Prometheus's own, never the server's ``endpoint`` (the rule sets it, so the
    # endpoint's page lists the alert); another model's server down is not this endpoint's.
    labels = dict(Target("127.0.0.1:9201", "production", "crm", "churn").labels)
    churn = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    done = promtool_test(tmp_path, prometheus.rule_groups([RULES]), f"""
        rule_files: [rules.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'up{{{churn},instance="127.0.0.1:9201",job="modelgate-models"}}'
                values: '1 1 0x20'
              - series: 'up{{environment="production",project="crm",model="fraud",instance="127.0.0.1:9202",job="modelgate-models"}}'
                values: '0x20'
            alert_rule_test:
              - eval_time: 30s
                alertname: ModelgateServerDown
                exp_alerts: []
              - eval_time: 3m
                alertname: ModelgateServerDown
                exp_alerts:
                  - exp_labels: {{severity: critical, environment: production, project: crm,
                                 endpoint: churn, model: churn, instance: "127.0.0.1:9201",
                                 job: modelgate-models}}
                    exp_annotations:
                      summary: "churn (production): model server not answering scrapes"
                      description: "127.0.0.1:9201 has not answered Prometheus."
    """)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_a_rule_file_promtool_rejects_never_replaces_the_good_one(tmp_path, monkeypatch):
    assert prometheus.write_rules(tmp_path, [RULES]) is True
    good = (tmp_path / prometheus.RULES_FILE).read_text()
    assert prometheus.write_rules(tmp_path, [RULES]) is False  # unchanged: no reload needed
    monkeypatch.setattr(prometheus, "rule_groups", lambda endpoints: {"groups": [
        {"name": "broken", "rules": [{"alert": "X", "expr": "rate(up[5m]"}]}]})
    with pytest.raises(PrometheusConfigError, match="promtool check rules rejected"):
        prometheus.write_rules(tmp_path, [RULES])
    assert (tmp_path / prometheus.RULES_FILE).read_text() == good


@needs_promtool
def test_main_config_passes_promtool_and_points_at_targets_rules_and_the_portal(tmp_path):
    prometheus.write_main_config(tmp_path, scrape_interval="1s", evaluation_interval="1s",
                                 portal="127.0.0.1:8000", alertmanagers=["127.0.0.1:9093"])
    config = yaml.safe_load((tmp_path / "prometheus.yml").read_text())
    assert config["rule_files"] == [str(tmp_path / "rules" / "*.yml")]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["modelgate-portal"]["honor_labels"] is True
    assert jobs["modelgate-models"]["file_sd_configs"][0]["files"] == [
        str(tmp_path / "targets" / "*.json")]


def test_targets_carry_the_labels_that_place_a_series(tmp_path):
    changed = prometheus.write_targets(tmp_path, [
        Target("127.0.0.1:9201", "production", "crm", "churn"),
        Target("127.0.0.1:9101", "staging", "crm", "churn")])
    assert changed
    written = json.loads((tmp_path / prometheus.TARGETS_FILE).read_text())
    assert written == [
        {"targets": ["127.0.0.1:9201"],
         "labels": {"environment": "production", "project": "crm", "model": "churn"}},
        {"targets": ["127.0.0.1:9101"],
         "labels": {"environment": "staging", "project": "crm", "model": "churn"}}]


@pytest.mark.parametrize("bad", [
    {"max_error_rate": 0}, {"max_error_rate": 1.5}, {"max_p99_latency_seconds": -1},
    {"no_traffic_minutes": 0}, {"for_seconds": -5}, {"endpoint": 'a"b'},
])
def test_invalid_alert_thresholds_are_refused(bad):
    fields = {"environment": "e", "endpoint": "x", "project": "p", "model": "m", **bad}
    with pytest.raises(ValueError, match="invalid alert thresholds"):
        EndpointRules(**fields)


def test_reload_of_an_unreachable_server_says_so():
    with pytest.raises(PrometheusUnavailable, match="cannot reach Prometheus"):
        prometheus.reload("http://127.0.0.1:9", timeout=1)


@needs_promtool
def test_the_grafana_dashboard_queries_are_valid_promql():
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" /
                            "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert len(exprs) >= 7
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{i}", "expr": e.replace("$environment", ".*")
         .replace("$endpoint", ".*").replace("$project", ".*")} for i, e in enumerate(exprs)]}]}
    prometheus.check_rules_text(prometheus.dump(rules))
    used = " ".join(exprs)
    for series in ("modelgate_requests_total", "modelgate_request_duration_seconds_bucket",
                   "modelgate_predictions_total", "modelgate_drift_psi", "modelgate_drift_share"):
        assert series in used


def test_the_grafana_dashboard_keeps_projects_apart_and_shows_refusals():
    """Two projects may each have a production serving a churn (decision 23): every panel
    selects the project as well, "All" also matches series with no project label (a
    Prometheus labelling the environment only), and the error panel shows the 4xx refusals
    a rollout is judged on beside the 5xx."""
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" /
                            "grafana-dashboard.json").read_text())
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert list(variables) == ["project", "environment", "endpoint"]
    assert all(v["allValue"] == ".*" for v in variables.values())
    assert 'project=~"$project"' in variables["environment"]["query"]["query"]
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    assert all('project=~"$project",environment=~"$environment"' in e for e in exprs), exprs
    (errors,) = [p for p in dashboard["panels"] if "5xx" in p["title"]]
    assert {'status="5xx"', 'status="4xx"'} <= {s for t in errors["targets"]
                                                 for s in ('status="5xx"', 'status="4xx"')
                                                 if s in t["expr"]}
