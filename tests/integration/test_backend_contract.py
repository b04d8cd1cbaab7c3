"""One contract, every backend: the same plans applied to the local backend (real model
servers), Kubernetes (a stateful API emulator over HTTP) and SageMaker (moto over HTTP).

What the contract promises (DESIGN.md §5): a backend converges to a declarative plan;
applying the same plan twice changes nothing; observe reports the generation and the
weights it serves; rollback is applying the stable-only plan; delete is idempotent.
Readiness is not part of the contract here: the emulators run no controllers.
"""

from dataclasses import replace

import pytest

from ops.backends import get_backend
from tests.integration.kube_fixtures import kube_cluster, kubernetes_backend_factory  # noqa: F401
from tests.integration.local_fixtures import free_port, plan
from tests.integration.sagemaker_fixtures import (  # noqa: F401
    moto_server,
    sagemaker_backend_factory,
)

pytestmark = pytest.mark.integration
ENDPOINT = "contract"


@pytest.fixture(params=["local", "kubernetes", "sagemaker"])
def backend(request, tmp_path):
    if request.param == "local":
        backend = get_backend("local", {"state_dir": str(tmp_path / "serving"),
                                        "port": free_port(), "ready_timeout": 60})
    elif request.param == "kubernetes":
        backend = request.getfixturevalue("kubernetes_backend_factory")("kserve")
    else:
        backend = request.getfixturevalue("sagemaker_backend_factory")()
    yield backend
    backend.delete(ENDPOINT)


def test_plans_are_applied_observed_and_idempotent(backend, artifact_variant):
    stable = artifact_variant("stable", 1)
    candidate = artifact_variant("candidate", 2)
    assert backend.observe(ENDPOINT).exists is False

    first = backend.apply(plan(ENDPOINT, 1, stable))
    assert first.generation == 1
    assert backend.observe(ENDPOINT).weights() == pytest.approx({"stable": 1.0})

    canary = plan(ENDPOINT, 2, replace(stable, weight=0.9), replace(candidate, weight=0.1))
    backend.apply(canary)
    observed = backend.observe(ENDPOINT)
    assert observed.generation == 2
    assert observed.weights() == pytest.approx({"stable": 0.9, "candidate": 0.1})
    assert {v.version_id for v in observed.variants} == {1, 2}

    backend.apply(canary)  # the same plan twice changes nothing
    assert backend.observe(ENDPOINT).generation == 2

    backend.apply(plan(ENDPOINT, 3, stable))  # rollback: the stable-only plan
    observed = backend.observe(ENDPOINT)
    assert observed.generation == 3 and observed.weights() == pytest.approx({"stable": 1.0})

    backend.delete(ENDPOINT)
    backend.delete(ENDPOINT)
    assert backend.observe(ENDPOINT).exists is False


@pytest.fixture(params=["kubernetes", "sagemaker"])
def cloud_environment_settings(request):
    """An environment's settings aimed at the emulated platform (its backend kind, settings)."""
    if request.param == "kubernetes":
        from tests.integration.kube_fixtures import KSERVE_CRD, TEST_IMAGE

        cluster = request.getfixturevalue("kube_cluster")
        return "kubernetes", {"namespace": cluster.namespace, "image": TEST_IMAGE,
                              "mode": "kserve", "host": cluster.url, "timeout": 5,
                              "validate": True,
                              "crd_schema": str(KSERVE_CRD) if KSERVE_CRD.is_file() else None}
    from tests.integration.sagemaker_fixtures import BUCKET, sagemaker_settings

    server = request.getfixturevalue("moto_server")
    server.reset()
    server.client("s3").create_bucket(Bucket=BUCKET)
    return "sagemaker", sagemaker_settings(server.url)


@pytest.mark.django_db
def test_the_portal_rolls_out_and_promotes_on_emulated_clouds(
        users, project, clf, cloud_environment_settings, django_capture_on_commit_callbacks,
        settings):
    """The same orchestration as on the local backend, through the other platforms: a first
    release goes out directly, a canary splits the traffic, a person promotes it."""
    import io

    from portal.registry import services as registry
    from portal.releases import deployments
    from portal.releases import services as releases
    from portal.releases.models import Deployment
    from tests.portal_fixtures import metadata, random_classifier_bytes

    kind, target = cloud_environment_settings
    # The platform connection is the operator's target; the environment only chooses it.
    settings.MODELGATE_TARGETS = {"platform": {"backend": kind, **target}}
    environment = releases.create_environment(users["owner"], project, name="production",
                                              target="platform")

    def release(seed, strategy):
        version = registry.register_version(users["contributor"], clf,
                                            io.BytesIO(random_classifier_bytes(seed)), metadata())
        version = registry.validate_version(version.pk)
        request = releases.request_approval(users["contributor"], version, environment,
                                            strategy=strategy)
        with django_capture_on_commit_callbacks(execute=True):  # approval queues the start
            releases.review(users["approver"], request, "approve", "ok")
        return Deployment.objects.get(request=request)

    first = release(1, "canary")
    assert first.status == "succeeded" and first.strategy == "direct"
    backend = deployments.backend_for(first)
    assert backend.observe(first.endpoint).weights() == pytest.approx({"candidate": 1.0})

    canary = release(2, "canary")
    assert canary.status == "progressing"
    assert backend.observe(canary.endpoint).weights() == pytest.approx(
        {"stable": 0.9, "candidate": 0.1})
    deployments.command(users["approver"], canary, "promote")
    canary.refresh_from_db()
    assert canary.status == "succeeded"
    observed = backend.observe(canary.endpoint)
    assert observed.weights() == pytest.approx({"candidate": 1.0})
    assert {v.version_id for v in observed.variants} == {canary.candidate_id}
    backend.delete(canary.endpoint)
