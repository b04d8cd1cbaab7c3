"""Rollouts on the SageMaker backend, measured from CloudWatch, against a moto server.

SageMaker containers are not scraped by the portal's Prometheus: the candidate's health
comes from the per-variant metrics SageMaker publishes to CloudWatch (``Invocations``,
``Invocation5XXErrors``, ``ModelLatency``) and from CloudWatch alarms on the candidate.
moto runs no container, so the tests publish those metrics themselves (what SageMaker would
publish) with ``PutMetricData``. moto has no percentile statistics, so the environment's
``latency_stat`` is ``Maximum`` here; on AWS it is ``p99``.
"""

import datetime as dt
import io

import pytest

from ops.analysis import CloudWatchAnalyzer
from portal.registry import services as registry
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.integration.sagemaker_fixtures import BUCKET, sagemaker_settings
from tests.portal_fixtures import metadata, random_classifier_bytes, settled

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CANARY = {
    "steps": [{"weight": 0.25, "bake_seconds": 1}, {"weight": 1.0, "bake_seconds": 1}],
    "thresholds": {"min_requests": 50, "max_error_rate": 0.05, "max_p99_ratio": 3.0},
    "check_interval_seconds": 1, "max_inconclusive_checks": 3,
}


@pytest.fixture
def world(users, project, clf, moto_server, settings):
    moto_server.reset()
    moto_server.client("s3").create_bucket(Bucket=BUCKET)
    # The operator's target: the account, role, image, bucket (and here, the emulator).
    settings.MODELGATE_TARGETS = {"aws": {"backend": "sagemaker",
                                          **sagemaker_settings(moto_server.url)}}
    environment = releases.create_environment(
        users["owner"], project, name="sagemaker-prod", backend="sagemaker",
        settings={"latency_stat": "Maximum"})
    v1 = _version(users, clf, 1)
    first = _release(users, v1, environment, "canary")
    assert first.status == "succeeded", [e.reason for e in first.events.all()]
    return {"users": users, "model": clf, "env": environment, "moto": moto_server}


def _version(users, model, seed: int):
    version = registry.register_version(users["contributor"], model,
                                        io.BytesIO(random_classifier_bytes(seed)), metadata())
    return registry.validate_version(version.pk)


def _release(users, version, environment, strategy, params=None) -> Deployment:
    request = releases.request_approval(users["contributor"], version, environment,
                                        strategy=strategy, strategy_params=params or {})
    releases.review(users["approver"], request, "approve", "ok")
    return settled(Deployment.objects.get(request=request))


def publish(moto, deployment, variant: str, invocations: int, errors: int,
            latency_us: float, refused: int = 0) -> None:
    """What SageMaker publishes for a variant over the last minute (``refused``: 4xx)."""
    name = deployments.backend_for(deployment).endpoint_name(deployment.endpoint)
    dims = [{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": variant}]
    now = dt.datetime.now(dt.UTC)
    moto.client("cloudwatch").put_metric_data(Namespace="AWS/SageMaker", MetricData=[
        {"MetricName": "Invocations", "Dimensions": dims, "Value": invocations,
         "Timestamp": now},
        {"MetricName": "Invocation5XXErrors", "Dimensions": dims, "Value": errors,
         "Timestamp": now},
        {"MetricName": "Invocation4XXErrors", "Dimensions": dims, "Value": refused,
         "Timestamp": now},
        {"MetricName": "ModelLatency", "Dimensions": dims, "Value": latency_us,
         "Timestamp": now, "Unit": "Microseconds"},
    ])


def advance(deployment: Deployment) -> Deployment:
    deployments.advance(deployment.pk)
    deployment.refresh_from_db()
    return deployment


def test_sagemaker_rollouts_are_measured_from_cloudwatch(world):
    deployment = _release(world["users"], _version(world["users"], world["model"], 2),
                          world["env"], "canary", CANARY)
    assert isinstance(deployments.analyzer(deployment), CloudWatchAnalyzer)


def test_a_healthy_canary_promotes_on_cloudwatch_metrics(world):
    moto = world["moto"]
    deployment = _release(world["users"], _version(world["users"], world["model"], 2),
                          world["env"], "canary", CANARY)
    for _ in range(6):
        publish(moto, deployment, "candidate", 200, 1, 8000)
        publish(moto, deployment, "stable", 600, 0, 6000)
        deployment = advance(deployment)
        if deployment.status not in deployments.ACTIVE:
            break
    assert deployment.status == "succeeded", [e.reason for e in deployment.events.all()]
    measured = [e for e in deployment.events.all() if e.measurements]
    assert measured, "no measurement was recorded"
    values = {m["metric"]: m for m in measured[0].measurements}
    assert values["requests"]["value"] >= 200
    assert "Invocations Sum" in measured[0].queries["requests"]
    endpoint = deployments.backend_for(deployment).observe(deployment.endpoint)
    assert endpoint.weights() == {"candidate": 1.0}


def test_a_failing_canary_rolls_back_on_cloudwatch_errors(world):
    moto = world["moto"]
    deployment = _release(world["users"], _version(world["users"], world["model"], 3),
                          world["env"], "canary", CANARY)
    for _ in range(6):
        publish(moto, deployment, "candidate", 200, 60, 8000)  # 30% server errors
        publish(moto, deployment, "stable", 600, 0, 6000)
        deployment = advance(deployment)
        if deployment.status not in deployments.ACTIVE:
            break
    assert deployment.status == "rolled_back", [e.reason for e in deployment.events.all()]
    assert any("error_rate: 0.3 > 0.05" in e.reason for e in deployment.events.all())
    endpoint = deployments.backend_for(deployment).observe(deployment.endpoint)
    assert endpoint.weights() == {"stable": 1.0}


def test_a_canary_refusing_callers_rolls_back_on_cloudwatch_4xx(world):
    """All 4xx and no 5xx (another interface): SageMaker's Invocation4XXErrors tells."""
    moto = world["moto"]
    deployment = _release(world["users"], _version(world["users"], world["model"], 7),
                          world["env"], "canary", CANARY)
    for _ in range(6):
        publish(moto, deployment, "candidate", 200, 0, 8000, refused=200)
        publish(moto, deployment, "stable", 600, 0, 6000, refused=6)
        deployment = advance(deployment)
        if deployment.status not in deployments.ACTIVE:
            break
    assert deployment.status == "rolled_back", [e.reason for e in deployment.events.all()]
    assert any("client_error_excess" in e.reason and "the stable refused 1.0%" in e.reason
               for e in deployment.events.all())


def test_a_critical_cloudwatch_alarm_on_the_candidate_rolls_back(world):
    moto = world["moto"]
    deployment = _release(world["users"], _version(world["users"], world["model"], 4),
                          world["env"], "canary", CANARY)
    deployment = advance(deployment)  # the canary step is applied
    name = deployments.backend_for(deployment).endpoint_name(deployment.endpoint)
    cloudwatch = moto.client("cloudwatch")
    for variant, severity in (("stable", "critical"), ("candidate", "critical")):
        alarm = f"{name}-{variant}-latency"
        cloudwatch.put_metric_alarm(
            AlarmName=alarm, AlarmDescription=f"severity={severity}", MetricName="ModelLatency",
            Namespace="AWS/SageMaker", Statistic="Maximum", Period=60, EvaluationPeriods=1,
            Threshold=100000, ComparisonOperator="GreaterThanThreshold",
            Dimensions=[{"Name": "EndpointName", "Value": name},
                        {"Name": "VariantName", "Value": variant}])
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="ALARM",
                                   StateReason="latency above 100 ms")
    publish(moto, deployment, "candidate", 200, 0, 8000)
    publish(moto, deployment, "stable", 600, 0, 6000)
    for _ in range(3):
        deployment = advance(deployment)
        if deployment.status not in deployments.ACTIVE:
            break
    assert deployment.status == "rolled_back"
    reasons = " ".join(e.reason for e in deployment.events.all())
    assert f"{name}-candidate-latency" in reasons
    assert f"{name}-stable-latency" not in reasons


def test_no_cloudwatch_data_is_inconclusive_and_pauses(world):
    deployment = _release(world["users"], _version(world["users"], world["model"], 5),
                          world["env"], "canary", CANARY)
    for _ in range(8):
        deployment = advance(deployment)
        if deployment.status != "progressing":
            break
    assert deployment.status == "paused", [e.reason for e in deployment.events.all()]
    assert deployment.status != "succeeded"


def test_cloudwatch_unreachable_is_inconclusive_and_says_why(world, moto_server):
    settings = sagemaker_settings("http://127.0.0.1:9", latency_stat="Maximum")
    from ops.backends import get_backend

    analyzer = get_backend("sagemaker", settings).analyzer()
    measured = analyzer.measure("anything", 60)
    assert measured.analysis.requests is None
    assert measured.error.startswith("CloudWatch unavailable")


def test_smoke_invokes_one_variant_directly(world):
    deployment = _release(world["users"], _version(world["users"], world["model"], 6),
                          world["env"], "bluegreen", {"check_interval_seconds": 1})
    backend = deployments.backend_for(deployment)
    deployments.advance(deployment.pk)
    assert backend.smoke(deployment.endpoint, "candidate", [[0.0] * 5], 3) == 3
    # A stopped runtime is no success, and no exception either.
    dead = type(backend)(**sagemaker_settings("http://127.0.0.1:9"))
    assert dead.smoke(deployment.endpoint, "candidate", [[0.0] * 5], 2) == 0
