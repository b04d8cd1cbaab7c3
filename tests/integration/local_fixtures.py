"""Fixtures for backend tests: real skops artifacts and variants pointing at them."""

import hashlib
import os
import socket

import pytest

from ops.plan import ServingPlan, Variant
from tests.portal_fixtures import FEATURES, random_classifier_bytes


def free_port() -> int:
    """A loopback port nothing listens on now, for a server a test starts next.

    Under pytest-xdist each worker only gets ports whose ``port // 2`` is its own number
    modulo the number of workers (the kernel hands out odd ports for binding, so the plain
    parity would not do), so a port one worker has picked and not yet bound is never picked
    by another worker in the meantime."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(worker[2:]) if worker.startswith("gw") and count > 1 else 0
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if count <= 1 or (port // 2) % count == index:
            return port
    raise AssertionError(f"no free port for xdist worker {worker} in 200 tries")


@pytest.fixture
def artifact_variant(tmp_path):
    """``make(name, seed, weight)`` → a Variant whose artifact is a real skops file."""
    def make(name: str, seed: int, weight: float = 1.0, version_id: int | None = None,
             sha256: str | None = None) -> Variant:
        data = random_classifier_bytes(seed)
        path = tmp_path / f"model-{seed}.skops"
        path.write_bytes(data)
        return Variant(name=name, version_id=version_id or seed, artifact_uri=f"file://{path}",
                       sha256=sha256 or hashlib.sha256(data).hexdigest(), weight=weight,
                       input_schema=[{"name": f, "type": "double"} for f in FEATURES],
                       task="classification")
    return make


def plan(endpoint: str, generation: int, *variants: Variant, **extra) -> ServingPlan:
    return ServingPlan(endpoint=endpoint, variants=tuple(variants), generation=generation,
                       **extra)
