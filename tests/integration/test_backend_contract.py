"""One contract, every backend: the same plans applied to the local backend (real model
servers), Kubernetes (a stateful API emulator over HTTP) and SageMaker (moto over HTTP).

What the contract promises (DESIGN.md §5): a backend converges to a declarative plan;
applying the same plan twice changes nothing; every apply is fenced by generation (an older
plan is refused with ``StalePlan``, another plan claiming a recorded generation with
``PlanConflict``, and of two applies racing the newer one stands); ``apply(wait=False)``
returns at once; observe reports the generation and the weights it serves; a plan the
platform will not serve (its model does not load) is reported ``refused`` while the plan
before keeps serving; rollback is applying the stable-only plan; delete is idempotent; and
the portal rolls a release out and promotes it through any backend.
Readiness is checked only after ``Platform.reconcile``: the emulators run no controllers of
their own.

Each property is one test, run on every kind in ``ops.backends.REGISTRY``: a backend kind
``<kind>`` brings one fixture, ``<kind>_platform``, saying how its platform is reached
(a backend on it, and an operator's target for the portal). A registered backend without
that fixture fails here.
"""

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pytest

from ops.backends import REGISTRY, Backend, PlanConflict, StalePlan, get_backend
from tests.integration.kube_fixtures import (  # noqa: F401
    KSERVE_CRD,
    TEST_IMAGE,
    kube_cluster,
    kubernetes_backend_factory,
)
from tests.integration.local_fixtures import free_port, plan
from tests.integration.sagemaker_fixtures import (  # noqa: F401
    HostingEmulation,
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
    # Why two applies racing each other may end with the older plan here; None: they never do.
    racing_caveat: str | None = None
    # What the platform's own controllers do once the workloads have started (the emulators
    # run none): every endpoint ready at its latest spec, or refused where its model does
    # not load (as the platform says it).
    reconcile: Callable[[], None] = lambda: None


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
                        "crd_schema": str(KSERVE_CRD) if KSERVE_CRD.is_file() else None},
        reconcile=kube_cluster.reconcile)


@pytest.fixture
def sagemaker_platform(moto_server, sagemaker_backend_factory) -> Platform:  # noqa: F811
    """A moto server, reset, with the artifact bucket (``sagemaker_backend_factory``); its
    hosting (a model failing to load, an update rolled back) emulated by ``reconcile``."""
    return Platform(
        "sagemaker",
        backend=sagemaker_backend_factory,
        target=lambda: sagemaker_settings(moto_server.url),
        reconcile=HostingEmulation(moto_server),
        racing_caveat="SageMaker has no compare-and-set: two applies can both pass the "
                      "generation check (on AWS the later update is refused while the first "
                      "is in progress; moto does not emulate that)")


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
    before = backend.observe(ENDPOINT)

    again = backend.apply(canary)

    after = backend.observe(ENDPOINT)
    assert again.generation == after.generation == 2
    assert (after.weights(), after.variants) == (before.weights(), before.variants)


def test_an_older_plan_after_a_newer_one_is_refused_and_the_newer_one_stands(
        backend, stable, canary):
    backend.apply(plan(ENDPOINT, 1, stable))
    backend.apply(canary)

    with pytest.raises(StalePlan, match="generation 1 .* generation 2"):
        backend.apply(plan(ENDPOINT, 1, stable))

    observed = backend.observe(ENDPOINT)
    assert observed.generation == 2
    assert observed.weights() == pytest.approx({"stable": 0.9, "candidate": 0.1})


def test_another_plan_under_a_generation_already_applied_is_refused(backend, stable, canary):
    backend.apply(plan(ENDPOINT, 1, stable))
    backend.apply(canary)

    with pytest.raises(PlanConflict, match="new generation"):
        backend.apply(replace(canary, variants=(replace(canary.variants[0], weight=0.5),
                                                replace(canary.variants[1], weight=0.5))))

    observed = backend.observe(ENDPOINT)
    assert observed.generation == 2
    assert observed.weights() == pytest.approx({"stable": 0.9, "candidate": 0.1})


def test_apply_without_waiting_returns_at_once_and_the_plan_is_served_later(
        platform, backend, stable):
    started = time.monotonic()
    backend.apply(plan(ENDPOINT, 1, stable), wait=False)
    took = time.monotonic() - started

    if platform.kind == "local":  # a model server starts meanwhile (it takes seconds)
        assert took < 1.0
    assert eventually(lambda: serves(backend, 1, {"stable": 1.0}))


def test_of_two_applies_racing_each_other_the_newer_plan_stands(
        platform, backend, stable, canary):
    if platform.racing_caveat:
        pytest.skip(platform.racing_caveat)
    backend.apply(plan(ENDPOINT, 1, stable))
    backend.apply(canary)  # KServe splits only beside a stable it already serves
    stable_now, candidate = canary.variants
    for older in (3, 5, 7, 9):
        plans = [plan(ENDPOINT, generation, replace(stable_now, weight=1 - share),
                      replace(candidate, weight=share))
                 for generation, share in ((older, 0.2), (older + 1, 0.5))]
        refused = race(platform, plans)

        assert older + 1 not in refused, refused[older + 1]
        assert all(isinstance(e, StalePlan) for e in refused.values()), refused
        assert eventually(lambda g=older + 1: serves(backend, g, {"stable": 0.5,
                                                                   "candidate": 0.5}))


@pytest.fixture
def unloadable(tmp_path, artifact_variant):
    """Version 2 as a candidate whose artifact is not a model: its checksum is right, so
    every backend takes the plan, and only the platform, starting it, finds out."""
    path = tmp_path / "not-a-model.skops"
    path.write_bytes(b"not a model at all")
    return replace(artifact_variant("candidate", 2), artifact_uri=f"file://{path}",
                   sha256=hashlib.sha256(path.read_bytes()).hexdigest())


def test_a_plan_the_platform_refuses_is_reported_as_refused_while_the_older_plan_keeps_serving(
        platform, backend, stable, unloadable):
    backend.apply(plan(ENDPOINT, 1, stable))
    assert eventually(lambda: reconciled(platform, backend).ready)

    backend.apply(plan(ENDPOINT, 2, replace(stable, weight=0.9),
                       replace(unloadable, weight=0.1)), wait=False)

    assert eventually(lambda: reconciled(platform, backend).refused)
    observed = backend.observe(ENDPOINT)
    assert "plan 2" in observed.refused and "candidate" in observed.refused
    assert "neither a skops archive" in observed.refused  # the platform's own reason
    # Not reported as served: the portal takes a refusal of the plan it applied only then.
    assert observed.generation != 2
    assert [v.ready for v in observed.variants if v.name == "stable"] == [True]

    backend.apply(plan(ENDPOINT, 3, stable), wait=False)  # what the portal does next
    assert eventually(lambda: serves(backend, 3, {"stable": 1.0})
                      and reconciled(platform, backend).ready)
    assert backend.observe(ENDPOINT).refused == ""


def reconciled(platform: Platform, backend: Backend):
    """What the backend observes once the platform's controllers have acted."""
    platform.reconcile()
    return backend.observe(ENDPOINT)


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


def eventually(check: Callable[[], bool], timeout: float = 60.0) -> bool:
    """Whether ``check`` holds within ``timeout`` seconds (a local server loads a plan)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def serves(backend: Backend, generation: int, weights: dict[str, float]) -> bool:
    observed = backend.observe(ENDPOINT)
    return observed.generation == generation and observed.weights() == pytest.approx(weights)


def race(platform: Platform, plans: list) -> dict[int, Exception]:
    """Apply ``plans`` at once, each from its own thread and backend (as two workers
    would); the errors raised, by generation."""
    start = threading.Barrier(len(plans))
    errors: dict[int, Exception] = {}

    def apply(backend: Backend, serving_plan) -> None:
        start.wait()
        try:
            backend.apply(serving_plan, wait=False)
        except Exception as e:  # noqa: BLE001 - reported by the test
            errors[serving_plan.generation] = e

    threads = [threading.Thread(target=apply, args=(platform.backend(), p)) for p in plans]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return errors


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
    from tests.portal_fixtures import metadata, random_classifier_bytes, settled

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

    def served(deployment):  # what the rollout worker waits for: the platform serving it
        platform.reconcile()
        return settled(deployment)

    first = served(release(1, "canary"))
    assert first.status == "succeeded" and first.strategy == "direct"
    backend = deployments.backend_for(first)
    assert backend.observe(first.endpoint).weights() == pytest.approx({"candidate": 1.0})

    canary = served(release(2, "canary"))
    assert canary.status == "progressing"
    assert backend.observe(canary.endpoint).weights() == pytest.approx(
        {"stable": 0.9, "candidate": 0.1})
    deployments.command(users["approver"], canary, "promote")
    canary.refresh_from_db()
    assert canary.status == "promoting"  # succeeded once the platform serves it
    canary = served(canary)
    assert canary.status == "succeeded"
    observed = backend.observe(canary.endpoint)
    assert observed.weights() == pytest.approx({"candidate": 1.0})
    assert {v.version_id for v in observed.variants} == {canary.candidate_id}
    backend.delete(canary.endpoint)
