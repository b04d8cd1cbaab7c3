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
