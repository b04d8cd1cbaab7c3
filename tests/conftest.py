"""What the whole suite shares.

Fixture modules are plugins registered here, so no test module or suite conftest imports
fixtures by name or with ``import *``:

- ``tests.portal_fixtures``: users in every role, a project, API clients, real trained
  artifacts, ``artifact_root`` (made autouse by the e2e, integration and security conftests;
  the unit tests stay free of Django's per-test settings);
- ``tests.integration.local_fixtures``: ``artifact_variant``, ``free_port``;
- ``tests.integration.prometheus_fixtures``: ``prometheus``, ``managed_prometheus``,
  ``alertmanager``;
- ``tests.integration.kube_fixtures``: ``kube_cluster`` and ``kubernetes_backend_factory``;
- ``tests.integration.sagemaker_fixtures``: ``moto_server`` and ``sagemaker_backend_factory``;
- ``tests.integration.monitoring_fixtures``: ``monitored``;
- ``tests.integration.matrix_fixtures``: the permission matrix's world, built per test
  (``build_world``) or once per module (``module_world``).

Parallel runs (pytest-xdist; scripts/test.sh runs two workers): each worker is a test run of
its own, as if it had been started by scripts/test.sh alone. pytest-django gives it its own
test database (``MODELGATE_TEST_DATABASE`` + ``_gw0``, ``_gw1``...), and
``pytest_xdist_setupnodes`` below gives it its own Redis key prefix and data folder before
its process starts (Django reads both from the environment when it loads the settings, and
the workers, servers and gunicorns the tests start inherit them). Ports come from the
kernel (port 0) or from ``free_port``, which hands each worker ports no other worker gets.
Tests that must not share the machine's two cores with another heavy test carry
``@pytest.mark.xdist_group("heavy")``: scripts/test.sh runs ``--dist loadgroup``, which
runs a group's tests one after another on one worker.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.portal_fixtures",
    "tests.integration.local_fixtures",
    "tests.integration.prometheus_fixtures",
    "tests.integration.kube_fixtures",
    "tests.integration.sagemaker_fixtures",
    "tests.integration.monitoring_fixtures",
    "tests.integration.matrix_fixtures",
]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs):
    """Before the workers start: a Redis key prefix and a data folder per worker."""
    from django.conf import settings

    prefix = os.environ.get("MODELGATE_REDIS_PREFIX") or f"modelgate-test-{os.getpid()}:"
    for spec in specs:
        data_dir = Path(settings.DATA_DIR) / f"xdist-{spec.id}"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        spec.env.update({"MODELGATE_REDIS_PREFIX": f"{prefix}{spec.id}:",
                         "MODELGATE_DATA_DIR": str(data_dir)})

