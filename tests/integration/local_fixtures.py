"""Fixtures for backend tests: real skops artifacts and variants pointing at them."""

import hashlib
import socket

import pytest

from ops.plan import ServingPlan, Variant
from tests.portal_fixtures import FEATURES, random_classifier_bytes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
