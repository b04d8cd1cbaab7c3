"""Integration tests: real PostgreSQL, Redis, worker processes, model servers, Prometheus.
Their fixtures come from the plugins tests/conftest.py registers."""

import pytest


@pytest.fixture(autouse=True)
def _artifacts_per_test(artifact_root):
    """Each test stores artifacts and runs model servers in its own folder (portal_fixtures)."""
