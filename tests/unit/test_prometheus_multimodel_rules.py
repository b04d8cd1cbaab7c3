"""The rules and targets the portal writes for a multi-model endpoint (decision 68), run by
the real promtool on synthetic series: a member model's drift alert names the model and the
endpoint, an error alert names the model from ``variant``, ``__other__`` places nothing, and
no model is expected to get a share of the traffic."""

import json

from ops import prometheus
from ops.prometheus import EndpointRules, Target
from tests.unit.test_prometheus_rules import RULES, needs_promtool, promtool_test

TENANTS = EndpointRules(environment="production", endpoint="mme-tenants-env-3", project="crm",
                        model="", multimodel="tenants", max_error_rate=0.05,
                        max_p99_latency_seconds=0.5, for_seconds=60, drift_for_seconds=30)
WHERE = 'environment="production",project="crm",endpoint="mme-tenants-env-3"'


@needs_promtool
def test_promtool_accepts_multimodel_rules_beside_plan_rules():
    prometheus.check_rules_text(prometheus.dump(prometheus.rule_groups([RULES, TENANTS])))


def test_a_multimodel_endpoint_has_no_no_traffic_alert():
    group = prometheus.rule_groups([TENANTS])["groups"][0]
    names = [rule.get("alert") for rule in group["rules"] if "alert" in rule]
    assert "ModelgateNoTraffic" not in names
    assert {"ModelgateFeatureDriftCritical", "ModelgateErrorRateHigh",
            "ModelgateServerDown"} <= set(names)


@needs_promtool
def test_a_member_models_drift_alert_names_the_model_and_the_endpoint(tmp_path):
    done = promtool_test(tmp_path, prometheus.rule_groups([TENANTS]), f"""
        rule_files: [rules.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'modelgate_drift_verdict{{{WHERE},variant="shop-7",model="shop-7",feature="age"}}'
                values: '0 0 2 2 2 2 2 2'
              - series: 'modelgate_drift_psi{{{WHERE},variant="shop-7",model="shop-7",feature="age"}}'
                values: '0.01 0.02 0.91 0.91 0.91 0.91 0.91 0.91'
              - series: 'modelgate_drift_verdict{{{WHERE},variant="shop-8",model="shop-8",feature="age"}}'
                values: '0 0 0 0 0 0 0 0'
              - series: 'modelgate_drift_psi{{{WHERE},variant="shop-8",model="shop-8",feature="age"}}'
                values: '0.01 0.01 0.01 0.01 0.01 0.01 0.01 0.01'
            alert_rule_test:
              - eval_time: 75s
                alertname: ModelgateFeatureDriftCritical
                exp_alerts:
                  - exp_labels: {{severity: critical, environment: production,
                                 endpoint: mme-tenants-env-3, variant: shop-7, model: shop-7,
                                 feature: age, project: crm, multimodel_endpoint: tenants}}
                    exp_annotations:
                      summary: "age of shop-7 drifted far on tenants (production)"
                      description: "PSI of age on shop-7 is 0.910, above the critical threshold."
    """)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_error_alerts_take_the_model_from_the_variant_and_the_server_down_alert_fires(
        tmp_path):
    done = promtool_test(tmp_path, prometheus.rule_groups([TENANTS]), f"""
        rule_files: [rules.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'modelgate_requests_total{{{WHERE},variant="shop-7",status="2xx"}}'
                values: '0+90x20'
              - series: 'modelgate_requests_total{{{WHERE},variant="shop-7",status="5xx"}}'
                values: '0+10x20'
              - series: 'modelgate_requests_total{{{WHERE},variant="__other__",status="5xx"}}'
                values: '0+10x20'
              - series: 'up{{environment="production",project="crm",multimodel_endpoint="tenants",instance="a:1"}}'
                values: '0x20'
            alert_rule_test:
              - eval_time: 3m
                alertname: ModelgateErrorRateHigh
                exp_alerts:
                  - exp_labels: {{severity: critical, environment: production,
                                 endpoint: mme-tenants-env-3, variant: shop-7, model: shop-7,
                                 project: crm, multimodel_endpoint: tenants}}
                    exp_annotations:
                      summary: "shop-7 on tenants (production): server errors above 5.0%"
                      description: "shop-7 answers 10% of requests with a server error."
                  - exp_labels: {{severity: critical, environment: production,
                                 endpoint: mme-tenants-env-3, variant: __other__,
                                 model: __other__, project: crm, multimodel_endpoint: tenants}}
                    exp_annotations:
                      summary: "__other__ on tenants (production): server errors above 5.0%"
                      description: "__other__ answers 100% of requests with a server error."
              - eval_time: 3m
                alertname: ModelgateServerDown
                exp_alerts:
                  - exp_labels: {{severity: critical, environment: production,
                                 endpoint: mme-tenants-env-3, multimodel_endpoint: tenants,
                                 instance: "a:1", project: crm}}
                    exp_annotations:
                      summary: "tenants (production): model server not answering scrapes"
                      description: "a:1 has not answered Prometheus."
    """)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_multimodel_server_is_a_target_labelled_with_its_endpoint(tmp_path):
    prometheus.write_targets(tmp_path, [
        Target("127.0.0.1:9201", "production", "crm", "churn"),
        Target("127.0.0.1:9301", "production", "crm", multimodel_endpoint="tenants")])
    written = json.loads((tmp_path / prometheus.TARGETS_FILE).read_text())
    assert written == [
        {"targets": ["127.0.0.1:9201"],
         "labels": {"environment": "production", "project": "crm", "model": "churn"}},
        {"targets": ["127.0.0.1:9301"],
         "labels": {"environment": "production", "project": "crm",
                    "multimodel_endpoint": "tenants"}}]
