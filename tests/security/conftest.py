"""The hostile owner of another project: each attack of issue 18, asserted refused, with
real PostgreSQL, a real worker and real model servers where the attack needs them. Their
fixtures come from the plugins tests/conftest.py registers."""

import pytest


@pytest.fixture(autouse=True)
def _artifacts_per_test(artifact_root):
    """Each test stores artifacts and runs model servers in its own folder (portal_fixtures)."""
