"""One contract, every backend: the same plans applied to the local backend (real model
servers), Kubernetes (a stateful API emulator over HTTP) and SageMaker (moto over HTTP).

What the contract promises (DESIGN.md §5): a backend converges to a declarative plan;
applying the same plan twice changes nothing; observe reports the generation and the
weights it serves; rollback is applying the stable-only plan; delete is idempotent; and the
portal rolls a release out and promotes it through any backend.
Readiness is not part of the contract here: the emulators run no controllers.

Each property is one test, run on every kind in ``ops.backends.REGISTRY``: a backend kind
``<kind>`` brings one fixture, ``<kind>_platform``, saying how its platform is reached
(a backend on it, and an operator's target for the portal). A registered backend without
that fixture fails here.
"""

from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from ops.backends import REGISTRY, Backend, get_backend
from tests.integration.kube_fixtures import (  # noqa: F401
    KSERVE_CRD,
    TEST_IMAGE,
    kube_cluster,
    kubernetes_backend_factory,
)
from tests.integration.local_fixtures import free_port, plan
from tests.integration.sagemaker_fixtures import (  # noqa: F401
    moto_server,
    sagemaker_backend_factory,
    sagemaker_settings,
)

pytestmark = pytest.mark.integration
ENDPOINT = "contract"


@dataclass(frozen=True)
class Platform:
    """How the contract reaches one backend's platform."""

    kind: str
    backend: Callable[[], Backend]  # a backend on the platform
    target: Callable[[], dict]  # an operator's target on it (MODELGATE_TARGETS), sans kind


# -- one fixture per backend kind ---------------------------------------------------------


@pytest.fixture
def local_platform(tmp_path) -> Platform:
    """Real model-server processes on this machine, the endpoint on a free port."""
    port = free_port()
    return Platform(
        "local",
        backend=lambda: get_backend("local", {"state_dir": str(tmp_path / "serving"),
                                              "port": port, "ready_timeout": 60}),
        target=lambda: {"ports": f"{port}-{port}"})


@pytest.fixture
def kubernetes_platform(kube_cluster, kubernetes_backend_factory) -> Platform:  # noqa: F811
    """KServe mode on the emulated cluster (no controllers: nothing becomes ready)."""
    return Platform(
        "kubernetes",
        backend=lambda: kubernetes_backend_factory("kserve"),
        target=lambda: {"namespace": kube_cluster.namespace, "image": TEST_IMAGE,
                        "mode": "kserve", "host": kube_cluster.url, "timeout": 5,
                        "validate": True,
                        "crd_schema": str(KSERVE_CRD) if KSERVE_CRD.is_file() else None})


@pytest.fixture
def sagemaker_platform(moto_server, sagemaker_backend_factory) -> Platform:  # noqa: F811
    """A moto server, reset, with the artifact bucket (``sagemaker_backend_factory``)."""
    return Platform(
        "sagemaker",
        backend=sagemaker_backend_factory,
        target=lambda: sagemaker_settings(moto_server.url))


@pytest.fixture(params=list(REGISTRY))
def platform(request) -> Platform:
    """Every registered backend kind, through its ``<kind>_platform`` fixture."""
    return request.getfixturevalue(f"{request.param}_platform")


@pytest.fixture
def backend(platform):
    backend = platform.backend()
    yield backend
    backend.delete(ENDPOINT)


@pytest.fixture
def stable(artifact_variant):
    return artifact_variant("stable", 1)


@pytest.fixture
def canary(stable, artifact_variant):
    """Generation 2: 10% of the traffic to version 2."""
    candidate = artifact_variant("candidate", 2)
    return plan(ENDPOINT, 2, replace(stable, weight=0.9), replace(candidate, weight=0.1))


# -- the backend's contract ---------------------------------------------------------------


def test_an_endpoint_never_applied_does_not_exist(backend):
    assert backend.observe(ENDPOINT).exists is False


def test_applying_a_plan_serves_it_and_observe_reports_its_generation(backend, stable):
    first = backend.apply(plan(ENDPOINT, 1, stable))
    assert first.generation == 1
    assert backend.observe(ENDPOINT).weights() == pytest.approx({"stable": 1.0})


def test_a_canary_plan_splits_the_traffic_between_two_versions(backend, stable, canary):
    backend.apply(plan(ENDPOINT, 1, stable))
    backend.apply(canary)
    observed = backend.observe(ENDPOINT)
    assert observed.generation == 2
    assert observed.weights() == pytest.approx({"stable": 0.9, "candidate": 0.1})
    assert {v.version_id for v in observed.variants} == {1, 2}


def test_applying_the_same_plan_twice_changes_nothing(backend, stable, canary):
    backend.apply(plan(ENDPOINT, 1, stable))
    backend.apply(canary)
    backend.apply(canary)
    assert backend.observe(ENDPOINT).generation == 2


def test_rollback_is_applying_the_stable_only_plan(backend, stable, canary):
    backend.apply(plan(ENDPOINT, 1, stable))
    backend.apply(canary)
    backend.apply(plan(ENDPOINT, 3, stable))
    observed = backend.observe(ENDPOINT)
    assert observed.generation == 3 and observed.weights() == pytest.approx({"stable": 1.0})


def test_delete_removes_the_endpoint_and_deleting_twice_is_harmless(backend, stable):
    backend.apply(plan(ENDPOINT, 1, stable))
    backend.delete(ENDPOINT)
    backend.delete(ENDPOINT)
    assert backend.observe(ENDPOINT).exists is False


# -- through the portal -------------------------------------------------------------------


@pytest.mark.django_db
def test_the_portal_rolls_out_and_promotes_on_every_backend(
        users, project, clf, platform, django_capture_on_commit_callbacks, settings):
    """The same orchestration on every platform: a first release goes out directly, a
    canary splits the traffic, a person promotes it."""
    import io

    from portal.registry import services as registry
    from portal.releases import deployments
    from portal.releases import services as releases
    from portal.releases.models import Deployment
    from tests.portal_fixtures import metadata, random_classifier_bytes

    # The platform connection is the operator's target; the environment only chooses it.
    settings.MODELGATE_TARGETS = {"platform": {"backend": platform.kind, **platform.target()}}
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
