"""Review of 0776c4d/02c4635: multi-model rules against their own targets' labels, and plan
endpoints of two projects with the same environment and model names."""

import pytest

from ops import prometheus
from ops.prometheus import EndpointRules, PrometheusConfigError, Target
from tests.unit.test_prometheus_rules import RULES, needs_promtool, promtool_test

# Two projects, each with an environment called production and a multi-model endpoint
# called tenants (names are per environment; environments per project).
CRM = EndpointRules(environment="production", endpoint="mme-tenants-env-3", project="crm",
                    model="", multimodel="tenants", for_seconds=60, drift_for_seconds=30)
OPS = EndpointRules(environment="production", endpoint="mme-tenants-env-9", project="ops",
                    model="", multimodel="tenants", for_seconds=60, drift_for_seconds=30)


def _series(target: Target) -> str:
    labels = {**target.labels, "instance": target.address, "job": "modelgate-models"}
    return ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))


@needs_promtool
def test_multimodel_server_down_is_not_raised_for_another_projects_same_named_endpoint(
        tmp_path):
    crm = Target("127.0.0.1:9301", "production", "crm", multimodel_endpoint="tenants")
    ops = Target("127.0.0.1:9302", "production", "ops", multimodel_endpoint="tenants")
    done = promtool_test(tmp_path, prometheus.rule_groups([CRM, OPS]), f"""
        rule_files: [rules.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'up{{{_series(crm)}}}'
                values: '1x20'
              - series: 'up{{{_series(ops)}}}'
                values: '0x20'
            alert_rule_test:
              - eval_time: 3m
                alertname: ModelgateServerDown
                exp_alerts:
                  - exp_labels: {{severity: critical, environment: production, project: ops,
                                 endpoint: mme-tenants-env-9, multimodel_endpoint: tenants,
                                 instance: "127.0.0.1:9302", job: modelgate-models}}
                    exp_annotations:
                      summary: "tenants (production): model server not answering scrapes"
                      description: "127.0.0.1:9302 has not answered Prometheus."
    """)
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
def test_a_model_named_like_a_multimodel_endpoint_does_not_break_every_rule():
    # name_validator accepts "mme-tenants-env-3" as a model name; its plan endpoint is named
    # after it, exactly the multi-model endpoint's backend name in the same environment.
    plan = EndpointRules(environment="production", endpoint="mme-tenants-env-3",
                         project="crm", model="mme-tenants-env-3")
    try:
        prometheus.check_rules_text(prometheus.dump(prometheus.rule_groups([RULES, plan, CRM])))
    except PrometheusConfigError as e:
        pytest.fail(f"one model's name made promtool refuse the whole rule file: {e}")


# Two projects, each with an environment called production and a model called churn: its
# plan endpoint is named after the model in both.
CRM_CHURN = EndpointRules(environment="production", endpoint="churn", project="crm",
                          model="churn", for_seconds=60, drift_for_seconds=30)
OPS_CHURN = EndpointRules(environment="production", endpoint="churn", project="ops",
                          model="churn", for_seconds=60, drift_for_seconds=30)


@needs_promtool
def test_two_projects_same_named_plan_endpoints_do_not_break_every_rule():
    try:
        prometheus.check_rules_text(prometheus.dump(prometheus.rule_groups(
            [CRM_CHURN, OPS_CHURN])))
    except PrometheusConfigError as e:
        pytest.fail(f"two projects' churn in production made promtool refuse every rule: {e}")


@needs_promtool
def test_a_plan_endpoints_alerts_judge_its_own_projects_series_only(tmp_path):
    """crm's churn answers half its requests with errors, ops's churn (same environment
    name, same model name) a hundred times as many, all fine, and drifted: crm's rules see
    crm's series only, so its error alert fires undiluted and ops's drift is not crm's."""
    ops, crm = ('environment="production",project="ops",endpoint="churn",model="churn"',
                'environment="production",project="crm",endpoint="churn",model="churn"')
    done = promtool_test(tmp_path, prometheus.rule_groups([CRM_CHURN]), f"""
        rule_files: [rules.yml]
        evaluation_interval: 15s
        tests:
          - interval: 15s
            input_series:
              - series: 'modelgate_requests_total{{{crm},variant="stable",status="2xx"}}'
                values: '0+10x20'
              - series: 'modelgate_requests_total{{{crm},variant="stable",status="5xx"}}'
                values: '0+10x20'
              - series: 'modelgate_requests_total{{{ops},variant="stable",status="2xx"}}'
                values: '0+2000x20'
              - series: 'modelgate_drift_verdict{{{ops},variant="stable",feature="age"}}'
                values: '2x20'
              - series: 'modelgate_drift_psi{{{ops},variant="stable",feature="age"}}'
                values: '0.9x20'
              - series: 'modelgate_drift_verdict{{{crm},variant="stable",feature="age"}}'
                values: '0x20'
              - series: 'modelgate_drift_psi{{{crm},variant="stable",feature="age"}}'
                values: '0.01x20'
            alert_rule_test:
              - eval_time: 3m
                alertname: ModelgateErrorRateHigh
                exp_alerts:
                  - exp_labels: {{severity: critical, environment: production, project: crm,
                                 endpoint: churn, variant: stable, model: churn}}
                    exp_annotations:
                      summary: "churn (production): server errors above 5.0%"
                      description: "stable answers 50% of requests with a server error."
              - eval_time: 3m
                alertname: ModelgateFeatureDriftCritical
                exp_alerts: []
    """)
    assert done.returncode == 0, done.stdout + done.stderr
