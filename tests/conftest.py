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
  (``matrix_world``) or once per module with each test rolled back (``shared_matrix_world``).

Parallel runs (pytest-xdist; scripts/test.sh runs two workers): each worker is a test run of
its own, as if it had been started by scripts/test.sh alone. pytest-django gives it its own
test database (``MODELGATE_TEST_DATABASE`` + ``_gw0``, ``_gw1``...), and
``pytest_xdist_setupnodes`` below gives it its own Redis key prefix and data folder before
its process starts (Django reads both from the environment when it loads the settings, and
the workers, servers and gunicorns the tests start inherit them). Ports come from the
kernel (port 0) or from ``free_port``, which hands each worker ports no other worker gets.
A test that loads the whole machine, or whose assertions measure time on it, is marked
``exclusive``: it runs while no other test runs (``machine_share`` below; the other worker
waits for it, and it waits for the other worker's current test to end).
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

import pytest

# Every prepared query (portal/prepared.py) is compared with Django's own SQL on every call,
# in this process and in the servers and workers it starts; a difference fails the test.
os.environ.setdefault("MODELGATE_PREPARED", "strict")

pytest_plugins = [
    "tests.portal_fixtures",
    "tests.integration.local_fixtures",
    "tests.integration.prometheus_fixtures",
    "tests.integration.kube_fixtures",
    "tests.integration.sagemaker_fixtures",
    "tests.integration.monitoring_fixtures",
    "tests.integration.matrix_fixtures",
    "tests.integration.mlflow_fixtures",
]


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_setupnodes(config, specs):
    """Before the workers start: a Redis key prefix, a data folder and a range of local
    model-server ports per worker, and the folder of the lock ``machine_share`` takes."""
    from django.conf import settings

    prefix = os.environ.get("MODELGATE_REDIS_PREFIX") or f"modelgate-test-{os.getpid()}:"
    locks = Path(settings.DATA_DIR) / "xdist-locks"
    locks.mkdir(mode=0o700, exist_ok=True)
    for index, spec in enumerate(specs):
        data_dir = Path(settings.DATA_DIR) / f"xdist-{spec.id}"
        data_dir.mkdir(mode=0o700, exist_ok=True)
        # Each worker's database allocates local model-server ports from the start of the
        # default target's range: without a range of its own, both workers' first endpoints
        # would ask for port 9100 at once, and one server would not start.
        low = 9100 + index * 400
        local = {"local": {"backend": "local", "ports": f"{low}-{low + 399}"}}
        spec.env.update({"MODELGATE_REDIS_PREFIX": f"{prefix}{spec.id}:",
                         "MODELGATE_DATA_DIR": str(data_dir),
                         "MODELGATE_TEST_LOCKS": str(locks),
                         "MODELGATE_TARGETS": json.dumps(local)})


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """``--dist loadgroup`` with pytest 9: pytest-xdist 3.8 marks a grouped test by setting
    ``item._nodeid``, which pytest 9 no longer reads (the id is ``item._id``), so every
    ``xdist_group`` was ignored and its tests spread over both workers. The same suffix,
    where pytest 9 reads it; nothing is done once xdist does it itself."""
    if not getattr(config.option, "loadgroup", False):
        return
    from _pytest.nodeid import coerce_node_id

    for item in items:
        names = sorted({str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
                        for mark in item.iter_markers("xdist_group")})
        if names and "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


@pytest.fixture(autouse=True)
def machine_share(request):
    """Under pytest-xdist, a test marked ``exclusive`` runs alone; every other test shares
    the machine with the other workers' tests.

    A readers-writer lock on two files (flock, released by the kernel if a worker dies):
    every test holds ``main`` shared; an exclusive test holds it exclusively. Taking
    ``gate`` first (a shared test only for a moment) keeps shared tests from starving an
    exclusive one that waits: once it has the gate, no new test starts."""
    folder = os.environ.get("MODELGATE_TEST_LOCKS")
    if not folder:  # one process: nothing else runs anyway
        yield
        return
    exclusive = request.node.get_closest_marker("exclusive") is not None
    with open(Path(folder) / "gate", "a") as gate, open(Path(folder) / "main", "a") as main:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fcntl.flock(main, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        finally:
            if not exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(main, fcntl.LOCK_UN)
            if exclusive:
                fcntl.flock(gate, fcntl.LOCK_UN)

