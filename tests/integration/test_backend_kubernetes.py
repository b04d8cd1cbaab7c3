"""The Kubernetes backend against a stateful Kubernetes API emulator over HTTP (kmock).

The emulator runs no controllers, so objects never get a status: these tests check what
the backend asks the cluster for (objects, weights, generations) and how it reads status
when a controller has written one.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import replace

import jsonschema
import kmock
import kubernetes
import kubernetes_validate
import pytest
import urllib3

from ops.backends import get_backend
from ops.backends.base import BackendError, BackendUnavailable, StalePlan
from ops.backends.kubernetes import (
    KubernetesBackend,
    dns_label,
    inference_service_schema,
    resource_name,
    split_replicas,
    validate_inference_service,
)
from ops.plan import ServingPlan, Variant
from ops.serving.ids import KEY_ENV
from tests.integration.kube_fixtures import KSERVE_CRD, TEST_IMAGE, closed_port_url

ENDPOINT = "fraud-model"
STABLE = Variant("stable", 1, "s3://models/fraud/1/model.skops", "a" * 64, 1.0, replicas=2)
CANDIDATE = Variant("candidate", 2, "s3://models/fraud/2/model.skops", "b" * 64, 0.0,
                    replicas=2)


def stable_only(generation: int, variant: Variant = STABLE) -> ServingPlan:
    return ServingPlan(ENDPOINT, (replace(variant, weight=1.0),), generation=generation)


def canary(generation: int, weight: float) -> ServingPlan:
    return ServingPlan(ENDPOINT, (replace(STABLE, weight=round(1 - weight, 6)),
                                  replace(CANDIDATE, weight=weight)), generation=generation)


def promoted(generation: int) -> ServingPlan:
    return ServingPlan(ENDPOINT, (replace(CANDIDATE, weight=1.0),), generation=generation)


def predictor(cluster, name: str = ENDPOINT) -> dict:
    return cluster.get("InferenceService", name)["spec"]["predictor"]


def mounted_plan(cluster, config_map: str) -> ServingPlan:
    return ServingPlan.from_json(cluster.get("ConfigMap", config_map)["data"]["plan.json"])


def predictor_config_map(cluster) -> str:
    return predictor(cluster)["volumes"][0]["configMap"]["name"]


PREDICTION_KEY = "e1m2:" + "ab" * 16
KEY_SECRET = "fraud-model-prediction-key"


def read_secret(cluster, name: str) -> dict | None:
    """A Secret as any client reads it from the API server; None when there is none."""
    core = kubernetes.client.CoreV1Api(
        kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url)))
    try:
        answer = core.read_namespaced_secret(name, cluster.namespace, _preload_content=False)
    except kubernetes.client.exceptions.ApiException as e:
        if e.status == 404:
            return None
        raise
    return json.loads(answer.data)


def model_server_containers(cluster, mode: str) -> list[dict]:
    """The model-server containers of every pod spec the endpoint runs."""
    if mode == "kserve":
        return predictor(cluster)["containers"]
    return [container for name in sorted(cluster.names("Deployment"))
            for container in cluster.get("Deployment", name)["spec"]["template"]["spec"][
                "containers"]]


# -- kserve mode ------------------------------------------------------------------------------


def test_stable_only_plan_creates_an_inference_service_running_the_model_server(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")

    observed = backend.apply(stable_only(1))

    isvc = kube_cluster.get("InferenceService", ENDPOINT)
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert isvc["metadata"]["annotations"]["modelgate.io/generation"] == "1"
    spec = isvc["spec"]["predictor"]
    assert "canaryTrafficPercent" not in spec
    assert spec["minReplicas"] == 2
    (container,) = spec["containers"]
    assert container["image"] == TEST_IMAGE
    assert container["command"] == ["python", "-m", "ops.serving"]
    assert container["args"] == ["--plan", "/etc/modelgate/plan.json", "--host", "0.0.0.0",
                                 "--port", "8080"]
    assert container["volumeMounts"] == [
        {"name": "plan", "mountPath": "/etc/modelgate", "readOnly": True}]
    assert spec["volumes"] == [{"name": "plan", "configMap": {"name": "fraud-model-plan-1"}}]
    served = mounted_plan(kube_cluster, "fraud-model-plan-1")
    assert served.endpoint == ENDPOINT and served.generation == 1
    assert served.variants == (STABLE,)  # one variant per revision: KServe splits traffic
    assert observed.exists and observed.generation == 1
    assert observed.weights() == {"stable": 1.0}


def test_canary_plan_splits_traffic_with_canary_traffic_percent(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))

    observed = backend.apply(canary(2, 0.1))

    isvc = kube_cluster.get("InferenceService", ENDPOINT)
    assert isvc["metadata"]["annotations"]["modelgate.io/generation"] == "2"
    assert isvc["spec"]["predictor"]["canaryTrafficPercent"] == 10
    # The predictor runs the candidate from a new ConfigMap (so a new revision); the stable
    # revision keeps its own ConfigMap and serves the other 90 %.
    assert predictor_config_map(kube_cluster) == "fraud-model-plan-2"
    assert mounted_plan(kube_cluster, "fraud-model-plan-2").variants == (
        replace(CANDIDATE, weight=1.0),)
    assert mounted_plan(kube_cluster, "fraud-model-plan-1").variants == (STABLE,)
    assert kube_cluster.names("ConfigMap") == {"fraud-model-plan-1", "fraud-model-plan-2"}
    assert observed.generation == 2
    assert observed.weights() == {"stable": 0.9, "candidate": 0.1}


def test_weight_change_keeps_the_candidate_revision(kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.1))
    containers_before = predictor(kube_cluster)["containers"]

    observed = backend.apply(canary(3, 0.5))

    assert predictor(kube_cluster)["canaryTrafficPercent"] == 50
    assert predictor_config_map(kube_cluster) == "fraud-model-plan-2"
    assert predictor(kube_cluster)["containers"] == containers_before
    assert mounted_plan(kube_cluster, "fraud-model-plan-2").generation == 3
    assert observed.generation == 3 and observed.weights() == {"stable": 0.5, "candidate": 0.5}


def test_promote_sends_all_traffic_to_the_candidate_without_a_new_revision(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.1))

    observed = backend.apply(promoted(3))

    spec = predictor(kube_cluster)
    assert "canaryTrafficPercent" not in spec
    assert predictor_config_map(kube_cluster) == "fraud-model-plan-2"
    assert kube_cluster.names("ConfigMap") == {"fraud-model-plan-2"}  # stable's is gone
    assert observed.generation == 3 and observed.weights() == {"candidate": 1.0}


def test_rollback_restores_the_stable_alone(kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.1))

    observed = backend.apply(stable_only(3))

    spec = predictor(kube_cluster)
    assert "canaryTrafficPercent" not in spec
    assert predictor_config_map(kube_cluster) == "fraud-model-plan-1"
    assert mounted_plan(kube_cluster, "fraud-model-plan-1").variants == (STABLE,)
    assert kube_cluster.names("ConfigMap") == {"fraud-model-plan-1"}
    assert observed.generation == 3 and observed.weights() == {"stable": 1.0}
    annotations = kube_cluster.get("InferenceService", ENDPOINT)["metadata"]["annotations"]
    (entry,) = json.loads(annotations["modelgate.io/variants"])
    assert entry["name"] == "stable" and entry["version_id"] == 1


def test_blue_green_check_deploys_the_candidate_without_traffic(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))

    observed = backend.apply(canary(2, 0.0))

    assert predictor(kube_cluster)["canaryTrafficPercent"] == 0
    assert predictor_config_map(kube_cluster) == "fraud-model-plan-2"
    assert observed.weights() == {"stable": 1.0, "candidate": 0.0}


def test_observe_reports_weights_and_generation_but_not_ready_without_status(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.25))

    observed = kubernetes_backend_factory("kserve").observe(ENDPOINT)  # a fresh process

    assert observed.exists and observed.generation == 2
    assert observed.weights() == {"stable": 0.75, "candidate": 0.25}
    assert [v.version_id for v in observed.variants] == [1, 2]
    assert not observed.ready and not any(v.ready for v in observed.variants)
    assert "status" in observed.detail
    assert observed.extra["canary_traffic_percent"] == 25


def test_observe_reads_readiness_from_the_ready_condition(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))
    isvc = kube_cluster.emulator.objects[
        "serving.kserve.io/v1beta1/inferenceservices", kube_cluster.namespace, ENDPOINT]
    # What KServe's controller would write once the revision serves.
    isvc.patch({"status": {
        "observedGeneration": 1, "url": "http://fraud-model.modelgate-test.example.com",
        "conditions": [{"type": "Ready", "status": "True"}],
        "components": {"predictor": {"latestCreatedRevision": "fraud-model-predictor-00001",
                                     "latestReadyRevision": "fraud-model-predictor-00001"}}}})

    observed = backend.observe(ENDPOINT)
    assert observed.ready and all(v.ready for v in observed.variants)
    assert observed.url == "http://fraud-model.modelgate-test.example.com"

    backend.apply(canary(2, 0.1))  # the controller has not seen generation 2 yet
    assert not backend.observe(ENDPOINT).ready


def test_observe_of_an_unknown_endpoint_reports_nothing(kubernetes_backend_factory):
    for mode in ("kserve", "deployments"):
        observed = kubernetes_backend_factory(mode).observe("never-deployed")
        assert not observed.exists and observed.variants == ()


def test_more_than_two_live_variants_are_refused_in_kserve_mode(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))
    third = Variant("challenger", 3, "s3://models/fraud/3/model.skops", "c" * 64, 0.2)
    plan = ServingPlan(ENDPOINT, (replace(STABLE, weight=0.6), replace(CANDIDATE, weight=0.2),
                                  third), generation=2)
    writes = len(kube_cluster.writes())

    with pytest.raises(BackendError, match="3 live variants"):
        backend.apply(plan)
    assert len(kube_cluster.writes()) == writes


def test_shadow_plans_are_refused_in_kserve_mode(kubernetes_backend_factory):
    plan = ServingPlan(ENDPOINT, (STABLE, CANDIDATE), generation=1, shadow="candidate")
    with pytest.raises(BackendError, match="shadow"):
        kubernetes_backend_factory("kserve").apply(plan)


def test_a_canary_needs_the_stable_already_served(kube_cluster, kubernetes_backend_factory):
    with pytest.raises(BackendError, match="stable variant alone first"):
        kubernetes_backend_factory("kserve").apply(canary(1, 0.1))
    assert kube_cluster.writes() == []


def test_a_revision_from_a_plan_without_version_numbers_still_serves_as_the_stable(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))  # as applied before plans carried version numbers
    numbered = ServingPlan(ENDPOINT, (replace(STABLE, weight=0.9, version_number=1),
                                      replace(CANDIDATE, weight=0.1, version_number=2)),
                           generation=2)

    observed = backend.apply(numbered)

    assert predictor(kube_cluster)["canaryTrafficPercent"] == 10
    # The stable keeps its revision; its mounted plan now tells the server the number.
    assert mounted_plan(kube_cluster, "fraud-model-plan-1").variants[0].version_number == 1
    assert mounted_plan(kube_cluster, "fraud-model-plan-2").variants[0].version_number == 2
    assert observed.weights() == {"stable": 0.9, "candidate": 0.1}


# -- both modes -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_applying_the_same_plan_twice_writes_nothing(mode, kube_cluster,
                                                     kubernetes_backend_factory):
    backend = kubernetes_backend_factory(mode)
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.1))
    writes = len(kube_cluster.writes())
    versions = {(kind, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
                for kind, o in kube_cluster.versions()}

    first = backend.observe(ENDPOINT)
    again = kubernetes_backend_factory(mode).apply(canary(2, 0.1))

    assert kube_cluster.writes()[writes:] == []
    assert {(kind, o["metadata"]["name"]): o["metadata"]["resourceVersion"]
            for kind, o in kube_cluster.versions()} == versions
    assert again == first


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_delete_removes_everything_and_twice_is_harmless(mode, kube_cluster,
                                                         kubernetes_backend_factory):
    backend = kubernetes_backend_factory(mode)
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.1))

    backend.delete(ENDPOINT)
    backend.delete(ENDPOINT)

    for kind in ("InferenceService", "Deployment", "Service", "ConfigMap"):
        assert kube_cluster.names(kind) == set(), kind
    assert not backend.observe(ENDPOINT).exists


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_the_prediction_key_reaches_the_pods_through_a_secret(mode, kube_cluster,
                                                              kubernetes_backend_factory):
    backend = kubernetes_backend_factory(mode, prediction_key=PREDICTION_KEY)
    backend.apply(stable_only(1))

    backend.apply(canary(2, 0.1))

    secret = read_secret(kube_cluster, KEY_SECRET)
    assert secret is not None and secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["key"]).decode() == PREDICTION_KEY
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "modelgate",
                                            "modelgate.io/endpoint": ENDPOINT}
    containers = model_server_containers(kube_cluster, mode)
    assert len(containers) == (1 if mode == "kserve" else 2)
    for container in containers:
        assert [e for e in container["env"] if e["name"] == KEY_ENV] == [
            {"name": KEY_ENV, "valueFrom": {"secretKeyRef": {"name": KEY_SECRET, "key": "key"}}}]
    # The key is in the Secret only: no other object sent or stored holds it, in any form.
    forms = (PREDICTION_KEY, "ab" * 16, base64.b64encode(PREDICTION_KEY.encode()).decode())
    others = [r.data for r in kube_cluster.writes()
              if r.resource is not None and r.resource.plural != "secrets"]
    others += [o for _, o in kube_cluster.versions() if o.get("kind") != "Secret"]
    assert others
    for manifest in others:
        assert not any(form in json.dumps(manifest) for form in forms), manifest["kind"]

    writes = len(kube_cluster.writes())
    backend.apply(canary(2, 0.1))
    assert kube_cluster.writes()[writes:] == []  # the Secret is not rewritten either


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_delete_removes_the_prediction_key_secret(mode, kube_cluster,
                                                  kubernetes_backend_factory):
    backend = kubernetes_backend_factory(mode, prediction_key=PREDICTION_KEY)
    backend.apply(stable_only(1))
    assert read_secret(kube_cluster, KEY_SECRET) is not None

    backend.delete(ENDPOINT)

    assert read_secret(kube_cluster, KEY_SECRET) is None


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_without_a_prediction_key_there_is_no_secret_and_no_key_variable(
        mode, kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory(mode)

    backend.apply(stable_only(1))

    assert read_secret(kube_cluster, KEY_SECRET) is None
    assert not [r for r in kube_cluster.writes()
                if r.resource is not None and r.resource.plural == "secrets"]
    for container in model_server_containers(kube_cluster, mode):
        assert KEY_ENV not in {e["name"] for e in container["env"]}


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_every_manifest_sent_is_valid(mode, kube_cluster, kubernetes_backend_factory,
                                      kserve_crd_path):
    """Core objects pass kubernetes-validate (strict, 1.30); InferenceServices pass the
    CRD's openAPIV3Schema, both as sent (create bodies) and as stored after each patch."""
    backend = kubernetes_backend_factory(mode, resources={
        "requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}},
        service_account="model-server", env={"MODELGATE_THREADS": "4"})
    for plan in (stable_only(1), canary(2, 0.1), canary(3, 0.5), promoted(4),
                 stable_only(5, replace(CANDIDATE, name="stable"))):
        backend.apply(plan)
    if mode == "deployments":
        backend.apply(ServingPlan(ENDPOINT, (replace(STABLE, weight=1.0), CANDIDATE),
                                  generation=6, shadow="candidate"))

    isvc_schema = jsonschema.Draft4Validator(  # the CRD as written, parsed once per run
        inference_service_schema(str(kserve_crd_path.resolve())))
    sent = [r.data for r in kube_cluster.writes() if r.method == kmock.method.POST]
    stored = [o for _, o in kube_cluster.versions()]
    assert sent and len(stored) > len(sent)
    kinds = set()
    for manifest in sent + stored:
        kinds.add(manifest["kind"])
        if manifest["kind"] == "InferenceService":
            isvc_schema.validate(manifest)
            validate_inference_service(manifest, kserve_crd_path)  # strict: no unknown fields
        else:
            kubernetes_validate.validate(manifest, "1.30", strict=True)
    assert kinds == ({"InferenceService", "ConfigMap"} if mode == "kserve"
                     else {"Deployment", "Service", "ConfigMap"})


def test_an_invalid_manifest_is_refused_before_anything_is_sent(
        kube_cluster, kubernetes_backend_factory, kserve_crd_path):
    bad = {"limits": {"memory": "1Gi"}, "limitz": {"cpu": "1"}}  # a typo in a setting
    for mode in ("kserve", "deployments"):
        with pytest.raises(BackendError, match="limitz"):
            kubernetes_backend_factory(mode, resources=bad).apply(stable_only(1))
    assert kube_cluster.writes() == []


# -- fenced by generation --------------------------------------------------------------------

MAIN_KIND = {"kserve": "InferenceService", "deployments": "Service"}


def touch(cluster, kind: str, name: str = ENDPOINT) -> None:
    """Write to an object as someone else would (a controller, another worker)."""
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=cluster.url))
    body = {"metadata": {"annotations": {"example.com/touched": str(time.time())}}}
    if kind == "InferenceService":
        kubernetes.client.CustomObjectsApi(api).patch_namespaced_custom_object(
            "serving.kserve.io", "v1beta1", cluster.namespace, "inferenceservices", name, body)
    else:
        kubernetes.client.CoreV1Api(api).patch_namespaced_service(name, cluster.namespace, body)


def meanwhile(monkeypatch, backend, action) -> list:
    """Run ``action`` once, after ``backend``'s apply has read the main object and before it
    writes anything; returns the list of the plans it converged (one per attempt)."""
    mode = type(backend._mode)
    converge, attempts = mode.converge, []

    def interrupted(self, plan, current):
        if self is backend._mode:
            attempts.append(plan.generation)
            if len(attempts) == 1:
                action()
        return converge(self, plan, current)

    monkeypatch.setattr(mode, "converge", interrupted)
    return attempts


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_an_older_plan_is_refused_before_anything_is_written(mode, kube_cluster,
                                                             kubernetes_backend_factory):
    backend = kubernetes_backend_factory(mode)
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.1))
    writes = len(kube_cluster.writes())

    with pytest.raises(StalePlan, match="older than generation 2"):
        kubernetes_backend_factory(mode).apply(stable_only(1))

    assert kube_cluster.writes()[writes:] == []


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_a_write_racing_another_is_judged_again_on_what_it_wrote(
        mode, kube_cluster, kubernetes_backend_factory, monkeypatch):
    backend = kubernetes_backend_factory(mode)
    backend.apply(stable_only(1))
    attempts = meanwhile(monkeypatch, backend, lambda: touch(kube_cluster, MAIN_KIND[mode]))

    observed = backend.apply(canary(2, 0.1))

    assert attempts == [2, 2]  # the guarded write answered 409; read again, then written
    assert observed.generation == 2 and observed.weights() == {"stable": 0.9,
                                                              "candidate": 0.1}


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_an_older_plan_losing_a_race_to_a_newer_one_is_refused(
        mode, kube_cluster, kubernetes_backend_factory, monkeypatch):
    backend, other = kubernetes_backend_factory(mode), kubernetes_backend_factory(mode)
    backend.apply(stable_only(1))
    attempts = meanwhile(monkeypatch, backend, lambda: other.apply(canary(3, 0.5)))

    with pytest.raises(StalePlan, match="generation 2 .* older than generation 3"):
        backend.apply(canary(2, 0.1))

    assert attempts == [2]
    observed = backend.observe(ENDPOINT)
    assert observed.generation == 3 and observed.weights() == {"stable": 0.5,
                                                              "candidate": 0.5}


# -- deployments mode -------------------------------------------------------------------------


def test_deployments_get_replicas_in_proportion_to_weights(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments", total_replicas=10)

    observed = backend.apply(canary(1, 0.1))

    stable = kube_cluster.get("Deployment", "fraud-model-stable")
    candidate = kube_cluster.get("Deployment", "fraud-model-candidate")
    assert stable["spec"]["replicas"] == 9 and candidate["spec"]["replicas"] == 1
    for deployment, variant in ((stable, "stable"), (candidate, "candidate")):
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert labels["app"] == ENDPOINT and labels["modelgate.io/variant"] == variant
        assert deployment["spec"]["selector"]["matchLabels"] == {
            "app": ENDPOINT, "modelgate.io/variant": variant}
        pod = deployment["spec"]["template"]["spec"]
        assert pod["containers"][0]["image"] == TEST_IMAGE
        assert pod["volumes"] == [{"name": "plan", "configMap": {
            "name": "fraud-model-plan",
            "items": [{"key": f"{variant}.json", "path": "plan.json"}]}}]
    service = kube_cluster.get("Service", ENDPOINT)
    assert service["spec"]["selector"] == {"app": ENDPOINT}
    data = kube_cluster.get("ConfigMap", "fraud-model-plan")["data"]
    assert ServingPlan.from_json(data["candidate.json"]).variants == (
        replace(CANDIDATE, weight=1.0),)
    assert ServingPlan.from_json(data["plan.json"]) == canary(1, 0.1)
    assert observed.weights() == {"stable": 0.9, "candidate": 0.1}
    assert {v.name: v.replicas for v in observed.variants} == {"stable": 9, "candidate": 1}
    assert not observed.ready and "waiting" in observed.detail  # no controller here


def test_deployment_replicas_default_to_the_weighted_mean_of_the_variants(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")

    backend.apply(canary(1, 0.1))  # both variants ask for 2 replicas

    assert kube_cluster.get("Deployment", "fraud-model-stable")["spec"]["replicas"] == 2
    assert kube_cluster.get("Deployment", "fraud-model-candidate")["spec"]["replicas"] == 1


def test_split_replicas_rounding():
    assert split_replicas({"a": 0.9, "b": 0.1}, 10) == {"a": 9, "b": 1}
    assert split_replicas({"a": 0.9, "b": 0.1}, 4) == {"a": 4, "b": 1}  # at least one each
    assert split_replicas({"a": 0.5, "b": 0.5}, 3) == {"a": 2, "b": 1}  # ties: earlier
    assert split_replicas({"a": 1.0, "b": 0.0}, 3) == {"a": 3, "b": 0}
    assert split_replicas({"a": 0.34, "b": 0.33, "c": 0.33}, 5) == {"a": 2, "b": 2, "c": 1}


def test_variants_leaving_the_plan_lose_their_deployment(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")
    backend.apply(canary(1, 0.5))
    assert kube_cluster.names("Deployment") == {"fraud-model-stable", "fraud-model-candidate"}

    observed = backend.apply(promoted(2))

    assert kube_cluster.names("Deployment") == {"fraud-model-candidate"}
    assert kube_cluster.get("Deployment", "fraud-model-candidate")["spec"]["replicas"] == 2
    assert set(kube_cluster.get("ConfigMap", "fraud-model-plan")["data"]) == {
        "plan.json", "candidate.json"}
    assert observed.weights() == {"candidate": 1.0}


def test_a_shadow_rides_along_in_every_live_pod(kube_cluster, kubernetes_backend_factory):
    plan = ServingPlan(ENDPOINT, (STABLE, CANDIDATE), generation=1, shadow="candidate")

    observed = kubernetes_backend_factory("deployments").apply(plan)

    assert kube_cluster.names("Deployment") == {"fraud-model-stable"}
    served = ServingPlan.from_json(
        kube_cluster.get("ConfigMap", "fraud-model-plan")["data"]["stable.json"])
    assert served.shadow == "candidate" and [v.name for v in served.variants] == [
        "stable", "candidate"]
    assert observed.weights() == {"stable": 1.0, "candidate": 0.0}


def test_deployment_readiness_comes_from_its_status(kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")
    backend.apply(stable_only(1))
    deployment = kube_cluster.emulator.objects[
        "apps/v1/deployments", kube_cluster.namespace, "fraud-model-stable"]

    deployment.patch({"status": {"observedGeneration": 1, "replicas": 2, "readyReplicas": 1,
                                 "updatedReplicas": 2}})
    assert not backend.observe(ENDPOINT).ready
    deployment.patch({"status": {"readyReplicas": 2}})
    observed = backend.observe(ENDPOINT)
    assert observed.ready and observed.variants[0].ready
    assert observed.url == "http://fraud-model.modelgate-test.svc"


# -- names, settings, errors ------------------------------------------------------------------


def test_endpoint_names_become_dns_labels():
    assert resource_name("fraud-model") == "fraud-model"
    odd = resource_name("Fraud_Model v2")
    assert odd.startswith("fraud-model-v2-") and odd != resource_name("fraud-model-v2")
    long = resource_name("a" * 80)
    assert len(long) <= 45 and long != resource_name("a" * 81)
    assert resource_name("2nd-model").startswith("mg-2nd-model-")
    assert dns_label("stable", 16) == "stable" and len(dns_label("Stable_Variant!", 16)) <= 16


def test_an_endpoint_name_kubernetes_refuses_is_sanitised(kube_cluster,
                                                          kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(ServingPlan("Fraud_Model v2", (STABLE,)))

    name = resource_name("Fraud_Model v2")
    assert kube_cluster.names("InferenceService") == {name}
    isvc = kube_cluster.get("InferenceService", name)
    assert isvc["metadata"]["annotations"]["modelgate.io/endpoint-name"] == "Fraud_Model v2"
    assert backend.observe("Fraud_Model v2").exists


def test_settings_are_checked_when_the_backend_is_built(tmp_path):
    with pytest.raises(BackendError, match="valid modes"):
        KubernetesBackend(image=TEST_IMAGE, mode="knative", host="http://127.0.0.1:1")
    with pytest.raises(BackendError, match="image"):
        KubernetesBackend(host="http://127.0.0.1:1")
    with pytest.raises(BackendError, match="configure"):
        KubernetesBackend(image=TEST_IMAGE, kubeconfig=str(tmp_path / "missing"))
    backend = get_backend("kubernetes", {"image": TEST_IMAGE, "host": "http://127.0.0.1:1",
                                         "mode": "deployments", "unrelated": 1})
    assert isinstance(backend, KubernetesBackend) and backend.extra == {"unrelated": 1}


def test_an_unreachable_api_server_is_transient(kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve", host=closed_port_url())
    started = time.monotonic()
    with pytest.raises(BackendUnavailable):
        backend.apply(stable_only(1))
    with pytest.raises(BackendUnavailable):
        backend.observe(ENDPOINT)
    with pytest.raises(BackendUnavailable):
        backend.delete(ENDPOINT)
    assert time.monotonic() - started < 10

    running = kubernetes_backend_factory("deployments")
    running.apply(stable_only(1))
    kube_cluster.stop_server()  # the API server goes away mid-life
    with pytest.raises(BackendUnavailable) as caught:
        running.observe(ENDPOINT)
    assert isinstance(caught.value.__cause__, urllib3.exceptions.HTTPError)


@pytest.mark.parametrize(("status", "error"), [
    (500, BackendUnavailable), (503, BackendUnavailable), (429, BackendUnavailable),
    (400, BackendError), (403, BackendError), (422, BackendError),
])
def test_api_errors_are_wrapped_by_kind(status, error, kube_cluster, kubernetes_backend_factory):
    kube_cluster.emulator[kmock.method.POST, kmock.resource("v1/configmaps")] << status << {
        "kind": "Status", "code": status, "message": f"refused with {status}"}
    with pytest.raises(error, match=str(status)) as caught:
        kubernetes_backend_factory("kserve").apply(stable_only(1))
    assert isinstance(caught.value.__cause__, kubernetes.client.exceptions.ApiException)


def test_the_emulator_refuses_a_patch_of_a_version_it_no_longer_has(kube_cluster):
    core = kubernetes.client.CoreV1Api(
        kubernetes.client.ApiClient(kubernetes.client.Configuration(host=kube_cluster.url)))
    core.create_namespaced_config_map(kube_cluster.namespace,
                                      {"metadata": {"name": "probe"}, "data": {"a": "b"}})
    read = kube_cluster.get("ConfigMap", "probe")["metadata"]["resourceVersion"]
    core.patch_namespaced_config_map("probe", kube_cluster.namespace,
                                     {"metadata": {"resourceVersion": read}, "data": {"a": "c"}})

    with pytest.raises(kubernetes.client.exceptions.ApiException) as stale:
        core.patch_namespaced_config_map("probe", kube_cluster.namespace,
                                         {"metadata": {"resourceVersion": read},
                                          "data": {"a": "d"}})

    assert stale.value.status == 409
    assert kube_cluster.get("ConfigMap", "probe")["data"] == {"a": "c"}


def test_the_emulator_answers_like_an_api_server(kube_cluster):
    api = kubernetes.client.ApiClient(kubernetes.client.Configuration(host=kube_cluster.url))
    assert kubernetes.client.VersionApi(api).get_code().major == "1"  # GET /version/
    _, status, _ = kubernetes.client.CoreV1Api(api).create_namespaced_config_map_with_http_info(
        kube_cluster.namespace, {"metadata": {"name": "probe"}, "data": {"a": "b"}})
    assert status == 201
    meta = kube_cluster.get("ConfigMap", "probe")["metadata"]
    assert meta["uid"] and meta["resourceVersion"] and meta["creationTimestamp"]
    assert KSERVE_CRD.name.endswith(".yaml")


# -- blue/green: an idle variant stays warm and is reachable for its check ----------------


def test_an_idle_candidate_runs_at_capacity_and_the_service_selects_the_stable_only(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")

    backend.apply(canary(1, 0.0))  # blue/green's check: candidate up, no traffic

    assert kube_cluster.get("Deployment", "fraud-model-candidate")["spec"]["replicas"] == 2
    assert kube_cluster.get("Service", ENDPOINT)["spec"]["selector"] == {
        "app": ENDPOINT, "modelgate.io/variant": "stable"}

    backend.apply(canary(2, 1.0))  # switched; the stable kept warm

    assert kube_cluster.get("Deployment", "fraud-model-stable")["spec"]["replicas"] == 2
    assert kube_cluster.get("Service", ENDPOINT)["spec"]["selector"] == {
        "app": ENDPOINT, "modelgate.io/variant": "candidate"}

    backend.apply(canary(3, 0.5))  # traffic on both: the narrowing is removed

    assert kube_cluster.get("Service", ENDPOINT)["spec"]["selector"] == {"app": ENDPOINT}


def test_smoke_reaches_the_ready_pods_of_one_variant_through_the_pod_proxy(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")
    backend.apply(canary(1, 0.0))
    labels = {"app": ENDPOINT, "modelgate.io/variant": "candidate"}
    kube_cluster.add_pod("fraud-model-candidate-a", labels)
    kube_cluster.add_pod("fraud-model-candidate-b", labels, ready=False)
    kube_cluster.add_pod("fraud-model-stable-a", {**labels, "modelgate.io/variant": "stable"})
    received = kube_cluster.answer_proxy("fraud-model-candidate-a",
                                         f"/v2/models/{ENDPOINT}/infer")

    assert backend.smoke(ENDPOINT, "candidate", [[1.0, 2.0]], 3) == 3

    assert received == [{"instances": [[1.0, 2.0]]}] * 3  # the ready candidate pod only


def test_smoke_with_no_ready_pod_or_a_failing_pod_counts_no_success(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")
    backend.apply(canary(1, 0.0))
    assert backend.smoke(ENDPOINT, "candidate", [[1.0]], 2) == 0  # no pod at all

    kube_cluster.add_pod("fraud-model-candidate-a",
                         {"app": ENDPOINT, "modelgate.io/variant": "candidate"})
    kube_cluster.answer_proxy("fraud-model-candidate-a", f"/v2/models/{ENDPOINT}/infer",
                              status=500)
    assert backend.smoke(ENDPOINT, "candidate", [[1.0]], 2) == 0


def test_kserve_smoke_finds_the_candidate_by_its_knative_revision(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    backend.apply(stable_only(1))
    backend.apply(canary(2, 0.0))
    assert backend.smoke(ENDPOINT, "candidate", [[1.0]], 1) == 0  # no status: no revision

    key = kube_cluster._key("InferenceService", ENDPOINT)
    isvc = dict(kube_cluster.get("InferenceService", ENDPOINT))
    isvc["status"] = {"components": {"predictor": {
        "latestCreatedRevision": "fraud-model-predictor-00002",
        "latestRolledoutRevision": "fraud-model-predictor-00001"}}}
    kube_cluster.emulator.objects[key] = isvc
    kube_cluster.add_pod("rev2-pod", {"serving.knative.dev/revision":
                                      "fraud-model-predictor-00002"})
    kube_cluster.add_pod("rev1-pod", {"serving.knative.dev/revision":
                                      "fraud-model-predictor-00001"})
    to_candidate = kube_cluster.answer_proxy("rev2-pod", f"/v2/models/{ENDPOINT}/infer")
    to_stable = kube_cluster.answer_proxy("rev1-pod", f"/v2/models/{ENDPOINT}/infer")

    assert backend.smoke(ENDPOINT, "candidate", [[1.0]], 2) == 2
    assert backend.smoke(ENDPOINT, "stable", [[1.0]], 1) == 1
    assert len(to_candidate) == 2 and len(to_stable) == 1


@pytest.mark.parametrize("mode", ["kserve", "deployments"])
def test_two_environments_endpoints_of_one_name_are_apart_and_never_touch(
        mode, kube_cluster, kubernetes_backend_factory):
    """Two projects' environments in one namespace, one model name: each gets its own
    objects (the owner is in their names); an object that still carries another owner's
    label (a name collision, objects from before owners) is neither replaced, deleted nor
    reported as this environment's."""
    victim = kubernetes_backend_factory(mode, owner="env-1", prediction_key=PREDICTION_KEY)
    victim.apply(stable_only(1))
    before = victim.observe(ENDPOINT)
    other = kubernetes_backend_factory(mode, owner="env-2", prediction_key="e9m9:" + "cd" * 16)
    assert other._name(ENDPOINT) != victim._name(ENDPOINT)
    other.apply(stable_only(1))
    other.delete(ENDPOINT)
    after = victim.observe(ENDPOINT)
    assert after.generation == before.generation and after.weights() == before.weights()

    intruder = kubernetes_backend_factory(mode, owner="env-2", prediction_key="e9m9:" + "cd" * 16)
    intruder._name = victim._name  # the same names, another owner
    with pytest.raises(BackendError, match="belongs to another environment"):
        intruder.apply(canary(2, 0.5))
    with pytest.raises(BackendError, match="belongs to another environment"):
        intruder.delete(ENDPOINT)
    seen = intruder.observe(ENDPOINT)
    assert not seen.ready and "another environment" in seen.detail
    after = victim.observe(ENDPOINT)
    assert after.generation == before.generation and after.weights() == before.weights()
    assert kube_cluster_secret_exists(kube_cluster, victim._key_secret_name(ENDPOINT))


def kube_cluster_secret_exists(kube_cluster, name: str) -> bool:
    return read_secret(kube_cluster, name) is not None


# -- refusals: the cluster saying the latest plan will never serve ----------------------------


def stored(cluster, kind: str, name: str):
    """The emulator's record of an object, to write the status a controller would."""
    plural = {"InferenceService": "serving.kserve.io/v1beta1/inferenceservices",
              "Deployment": "apps/v1/deployments"}[kind]
    return cluster.emulator.objects[plural, cluster.namespace, name]


def kserve_canary_on_a_served_stable(cluster, backend):
    """Generation 1 served (the controller reconciled it), then a canary as generation 2."""
    backend.apply(stable_only(1))
    cluster.reconcile()
    backend.apply(canary(2, 0.1))
    return stored(cluster, "InferenceService", ENDPOINT)


def revision_status(isvc, condition: dict, generation: int | None = None) -> dict:
    """KServe's status for generation ``generation`` (the spec's by default): the latest
    revision (2) in ``condition``, revision 1 still the last ready one."""
    return {"status": {
        "observedGeneration": generation or isvc.raw["metadata"]["generation"],
        "conditions": [{"type": "PredictorReady", **condition}, {"type": "Ready", **condition}],
        "components": {"predictor": {"latestCreatedRevision": "fraud-model-predictor-00002",
                                     "latestReadyRevision": "fraud-model-predictor-00001"}}}}


FAILED_REVISION = {"status": "False", "reason": "RevisionFailed",
                   "message": 'Revision "fraud-model-predictor-00002" failed with message: '
                              "Container failed with: model.skops: no such file."}


def test_kserve_reports_a_failed_revision_as_refused_while_the_stable_serves(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    isvc = kserve_canary_on_a_served_stable(kube_cluster, backend)

    isvc.patch(revision_status(isvc, FAILED_REVISION))

    observed = backend.observe(ENDPOINT)
    assert observed.refused.startswith(
        "KServe refused plan 2: variant candidate (version 2) does not serve, "
        "PredictorReady is False, RevisionFailed: Revision")
    assert "Container failed with: model.skops: no such file" in observed.refused
    assert observed.detail == observed.refused
    assert observed.generation is None and not observed.ready  # plan 2 does not serve
    assert {v.name: v.ready for v in observed.variants} == {"stable": True, "candidate": False}


def test_kserve_reports_a_model_that_fails_to_load_as_refused(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    isvc = kserve_canary_on_a_served_stable(kube_cluster, backend)

    isvc.patch(revision_status(isvc, {"status": "Unknown", "reason": "RevisionMissing"}))
    isvc.patch({"status": {"modelStatus": {
        "transitionStatus": "BlockedByFailedLoad",
        "states": {"activeModelState": "Loaded", "targetModelState": "FailedToLoad"},
        "lastFailureInfo": {"reason": "ModelLoadFailed", "exitCode": 1,
                            "message": "the file is not a skops archive"}}}})

    refused = backend.observe(ENDPOINT).refused
    assert refused == ("KServe refused plan 2: variant candidate (version 2) does not serve, "
                       "BlockedByFailedLoad, ModelLoadFailed: the file is not a skops archive")


@pytest.mark.parametrize("condition", [
    {"status": "Unknown", "reason": "RevisionMissing",
     "message": 'Configuration "fraud-model-predictor" is waiting for a Revision to become '
                "ready."},
    {"status": "False"},  # no reason yet
    {"status": "False", "reason": "MinimumReplicasUnavailable",
     "message": "Deployment does not have minimum availability."},  # raw mode, starting
    {"status": "False", "reason": "IngressNotConfigured"},  # the cluster's, not the plan's
], ids=["unknown", "no-reason", "starting", "ingress"])
def test_kserve_a_revision_still_rolling_out_is_not_refused(
        condition, kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    isvc = kserve_canary_on_a_served_stable(kube_cluster, backend)

    isvc.patch(revision_status(isvc, condition))

    observed = backend.observe(ENDPOINT)
    assert observed.refused == "" and observed.generation == 2 and not observed.ready


def test_kserve_a_failure_reported_for_an_older_spec_refuses_nothing(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("kserve")
    isvc = kserve_canary_on_a_served_stable(kube_cluster, backend)
    isvc.patch(revision_status(isvc, FAILED_REVISION))
    assert backend.observe(ENDPOINT).refused

    backend.apply(stable_only(3))  # the portal's rollback: KServe has not seen it yet

    observed = backend.observe(ENDPOINT)
    assert observed.refused == "" and observed.generation == 3
    kube_cluster.reconcile()
    observed = backend.observe(ENDPOINT)
    assert observed.ready and observed.refused == "" and observed.generation == 3


def deployments_canary_on_a_served_stable(cluster, backend) -> dict:
    """Deployments mode: generation 1 ready, then a canary as generation 2; the candidate's
    Deployment as stored."""
    backend.apply(stable_only(1))
    cluster.reconcile()
    backend.apply(canary(2, 0.5))
    stored(cluster, "Deployment", "fraud-model-stable").patch(
        {"status": {"observedGeneration": cluster.get(
            "Deployment", "fraud-model-stable")["metadata"]["generation"]}})
    return cluster.get("Deployment", "fraud-model-candidate")


def test_deployments_past_their_progress_deadline_refuse_the_plan(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")
    candidate = deployments_canary_on_a_served_stable(kube_cluster, backend)
    assert backend.observe(ENDPOINT).refused == ""  # rolling out: no status yet

    stored(kube_cluster, "Deployment", "fraud-model-candidate").patch({"status": {
        "observedGeneration": candidate["metadata"]["generation"],
        "conditions": [{"type": "Progressing", "status": "False",
                        "reason": "ProgressDeadlineExceeded",
                        "message": 'ReplicaSet "fraud-model-candidate-7c9" has timed out '
                                   "progressing."}]}})

    observed = backend.observe(ENDPOINT)
    assert observed.refused == (
        "Kubernetes refused plan 2: variant candidate (version 2) does not run, Deployment "
        "fraud-model-candidate is not progressing, ProgressDeadlineExceeded: ReplicaSet "
        '"fraud-model-candidate-7c9" has timed out progressing.')
    assert observed.generation is None and not observed.ready
    assert {v.name: v.ready for v in observed.variants} == {"stable": True, "candidate": False}


def candidate_pod(cluster, name: str, checksum: str, waiting: dict, **last) -> None:
    cluster.add_pod(name, {"app": ENDPOINT, "modelgate.io/variant": "candidate"}, ready=False,
                    annotations={"modelgate.io/plan-checksum": checksum},
                    containers=[{"name": "model-server", "ready": False,
                                 "state": {"waiting": waiting},
                                 "lastState": {"terminated": last} if last else {}}])


def test_deployments_a_crash_looping_pod_refuses_the_plan_before_any_deadline(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")
    candidate = deployments_canary_on_a_served_stable(kube_cluster, backend)
    checksum = candidate["spec"]["template"]["metadata"]["annotations"][
        "modelgate.io/plan-checksum"]

    candidate_pod(kube_cluster, "fraud-model-candidate-7c9-x1", checksum,
                  {"reason": "CrashLoopBackOff",
                   "message": "back-off 40s restarting failed container=model-server"},
                  exitCode=1, reason="Error", message="cannot read the prediction-id key")

    assert backend.observe(ENDPOINT).refused == (
        "Kubernetes refused plan 2: variant candidate (version 2) does not run, pod "
        "fraud-model-candidate-7c9-x1 cannot run container model-server, CrashLoopBackOff: "
        "back-off 40s restarting failed container=model-server (it last exited with code 1, "
        "Error: cannot read the prediction-id key)")


def test_deployments_pods_still_starting_or_of_an_older_template_refuse_nothing(
        kube_cluster, kubernetes_backend_factory):
    backend = kubernetes_backend_factory("deployments")
    candidate = deployments_canary_on_a_served_stable(kube_cluster, backend)
    checksum = candidate["spec"]["template"]["metadata"]["annotations"][
        "modelgate.io/plan-checksum"]

    candidate_pod(kube_cluster, "fraud-model-candidate-7c9-x1", checksum,
                  {"reason": "ContainerCreating"})
    candidate_pod(kube_cluster, "fraud-model-candidate-5b1-x2", "an-older-template",
                  {"reason": "ImagePullBackOff", "message": "Back-off pulling image"})

    observed = backend.observe(ENDPOINT)
    assert observed.refused == "" and observed.generation == 2


def test_deployments_a_model_that_does_not_load_is_refused_and_a_rollback_clears_it(
        kube_cluster, kubernetes_backend_factory, artifact_variant, tmp_path):
    """The emulated controller: the model server of the candidate's pods cannot load its
    model, so the Deployment passes its progress deadline."""
    backend = kubernetes_backend_factory("deployments")
    stable = artifact_variant("stable", 1)
    broken = tmp_path / "broken.skops"
    broken.write_bytes(b"not a model")
    candidate = replace(artifact_variant("candidate", 2, weight=0.5),
                        artifact_uri=f"file://{broken}",
                        sha256=hashlib.sha256(b"not a model").hexdigest())
    backend.apply(ServingPlan(ENDPOINT, (stable,), generation=1))
    backend.apply(ServingPlan(ENDPOINT, (replace(stable, weight=0.5), candidate),
                              generation=2))
    kube_cluster.reconcile()

    observed = backend.observe(ENDPOINT)
    assert observed.refused.startswith("Kubernetes refused plan 2: variant candidate")
    assert "ProgressDeadlineExceeded" in observed.refused

    backend.apply(ServingPlan(ENDPOINT, (stable,), generation=3))
    kube_cluster.reconcile()
    observed = backend.observe(ENDPOINT)
    assert observed.ready and observed.refused == "" and observed.generation == 3
