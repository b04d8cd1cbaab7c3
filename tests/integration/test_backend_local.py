"""The local backend with real model-server processes."""

import contextlib
import json
import os
import signal
import threading
import time
import urllib.request
from dataclasses import replace

import pytest

from ops.backends import get_backend
from ops.backends.base import BackendError
from ops.plan import ServingPlan
from ops.serving.ids import KEY_ENV, KEY_FILE_ENV, parse_prediction_id, verify
from tests.integration.local_fixtures import free_port, plan
from tests.portal_fixtures import FEATURES

pytestmark = pytest.mark.integration


@pytest.fixture
def backend(tmp_path):
    backend = get_backend("local", {"state_dir": str(tmp_path / "serving"), "port": free_port(),
                                    "ready_timeout": 60})
    yield backend
    backend.delete("tumor")


PREDICTION_KEY = "e1m2:" + "ab" * 16


@pytest.fixture
def signing_backend(tmp_path):
    """A backend given the key its servers sign prediction ids with, as the portal does."""
    backend = get_backend("local", {"state_dir": str(tmp_path / "signing"), "port": free_port(),
                                    "ready_timeout": 60, "prediction_key": PREDICTION_KEY})
    yield backend
    backend.delete("tumor")


def infer(url: str, endpoint: str = "tumor") -> dict:
    body = json.dumps({"inputs": [{"name": "input-0", "shape": [1, len(FEATURES)],
                                   "datatype": "FP64", "data": [[14.0, 19.0, 90.0, 650.0, 0.1]]}]})
    request = urllib.request.Request(f"{url}/v2/models/{endpoint}/infer", data=body.encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as answer:
        return json.loads(answer.read())


def test_apply_starts_a_server_and_moves_traffic(backend, artifact_variant):
    stable = artifact_variant("stable", 1)
    observed = backend.apply(plan("tumor", 1, stable))
    assert observed.ready and observed.generation == 1
    assert observed.weights() == {"stable": 1.0}
    assert infer(observed.url)["parameters"]["variant"] == "stable"

    canary = plan("tumor", 2, replace(stable, weight=0.9),
                  artifact_variant("candidate", 2, weight=0.1))
    observed = backend.apply(canary)
    assert observed.generation == 2
    assert observed.weights() == pytest.approx({"stable": 0.9, "candidate": 0.1})
    seen = {infer(observed.url)["parameters"]["variant"] for _ in range(200)}
    assert seen == {"stable", "candidate"}

    again = backend.apply(canary)  # the same plan twice changes nothing
    assert again.generation == 2

    rollback = backend.apply(plan("tumor", 3, stable))
    assert rollback.weights() == {"stable": 1.0}
    assert {infer(rollback.url)["parameters"]["variant"] for _ in range(50)} == {"stable"}


def test_a_refused_plan_keeps_the_old_one_serving(backend, artifact_variant):
    backend.apply(plan("tumor", 1, artifact_variant("stable", 1)))
    broken = artifact_variant("candidate", 2, weight=0.5, sha256="0" * 64)
    with pytest.raises(BackendError, match="refused plan 2"):
        backend.apply(plan("tumor", 2, artifact_variant("stable", 1, weight=0.5), broken))
    observed = backend.observe("tumor")
    assert observed.generation == 1 and observed.ready
    assert infer(observed.url)["parameters"]["variant"] == "stable"


def test_a_plan_that_only_gained_version_numbers_is_a_re_apply(backend, artifact_variant):
    """Plans from before version numbers were carried are re-applied with them (the portal
    re-applies the current plan before every decision): the same plan, not a conflict."""
    stable = artifact_variant("stable", 1)
    backend.apply(plan("tumor", 1, stable))

    observed = backend.apply(plan("tumor", 1, replace(stable, version_number=3)))

    assert observed.ready and observed.generation == 1
    recorded = ServingPlan.from_json((backend.state_dir / "tumor" / "plan.json").read_text())
    assert recorded.variants[0].version_number == 3


def test_waiting_for_a_plan_ends_once_a_newer_plan_replaced_it(tmp_path, artifact_variant):
    """A rollout's last step applied (and waited for) while the next rollout's plan already
    replaced it: its generation will never be served, so apply returns instead of holding
    its worker for the whole timeout."""
    backend = get_backend("local", {"state_dir": str(tmp_path / "serving"),
                                    "port": free_port(), "ready_timeout": 30})
    stable = artifact_variant("stable", 1)
    backend.apply(plan("tumor", 1, stable))
    # Generation 2's artifact is a pipe nobody writes to: the server's loader waits on it,
    # and generation 1 keeps serving.
    pipe = tmp_path / "slow.skops"
    os.mkfifo(pipe)
    slow = replace(artifact_variant("candidate", 2, weight=0.5), artifact_uri=f"file://{pipe}")
    returned: dict = {}

    def apply_and_wait():
        returned["observed"] = backend.apply(plan("tumor", 2, replace(stable, weight=0.5), slow))
        returned["at"] = time.monotonic()

    waiting = threading.Thread(target=apply_and_wait)
    waiting.start()
    try:
        time.sleep(1.0)
        replaced_at = time.monotonic()
        backend.apply(plan("tumor", 3, stable), wait=False)
        waiting.join(10)

        assert not waiting.is_alive(), "apply kept waiting for a generation already replaced"
        assert returned["at"] - replaced_at < 2.0
        assert returned["observed"].generation == 1  # what served meanwhile
    finally:
        with contextlib.suppress(OSError):  # let the loader read an empty file and give up
            os.close(os.open(pipe, os.O_WRONLY | os.O_NONBLOCK))
        waiting.join()
        backend.delete("tumor")


def test_a_crashed_server_is_restarted_by_the_next_apply(backend, artifact_variant):
    first = plan("tumor", 1, artifact_variant("stable", 1))
    backend.apply(first)
    pid = int((backend.state_dir / "tumor" / "server.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    assert not backend.observe("tumor").ready
    observed = backend.apply(first)
    assert observed.ready and int((backend.state_dir / "tumor" / "server.pid").read_text()) != pid


def test_delete_twice_and_observe_nothing(backend, artifact_variant):
    backend.apply(plan("tumor", 1, artifact_variant("stable", 1)))
    assert backend.restore("tumor") is False  # serving: nothing to start
    backend.delete("tumor")
    backend.delete("tumor")
    assert backend.observe("tumor").exists is False
    assert backend.restore("tumor") is False  # a deleted endpoint stays deleted


def test_a_server_given_the_key_signs_prediction_ids(signing_backend, artifact_variant):
    observed = signing_backend.apply(plan("tumor", 1, artifact_variant("stable", 1)))

    answer = infer(observed.url)

    [row_id] = answer["parameters"]["prediction_ids"]
    assert "~e1m2~" in row_id and answer["id"] == row_id
    pid = parse_prediction_id(row_id)
    assert (pid.variant, pid.generation, pid.kid) == ("stable", 1, "e1m2")
    assert verify(pid, bytes.fromhex("ab" * 16))
    assert not verify(pid, bytes.fromhex("cd" * 16))


def test_a_server_without_a_key_issues_unsigned_ids(backend, artifact_variant, monkeypatch,
                                                    tmp_path):
    # A key the worker's own environment happens to hold never reaches the server.
    monkeypatch.setenv(KEY_ENV, "stray:" + "cd" * 16)
    (tmp_path / "stray.key").write_text("stray:" + "cd" * 16)
    monkeypatch.setenv(KEY_FILE_ENV, str(tmp_path / "stray.key"))
    observed = backend.apply(plan("tumor", 1, artifact_variant("stable", 1)))

    answer = infer(observed.url)

    [row_id] = answer["parameters"]["prediction_ids"]
    assert "~" not in row_id and answer["id"] == row_id
    pid = parse_prediction_id(row_id)
    assert not pid.signed and (pid.variant, pid.generation) == ("stable", 1)


def test_a_server_started_without_the_key_is_restarted_with_it(tmp_path, artifact_variant):
    """An endpoint that served before keys existed (or under another key) signs after the
    next apply: its server is restarted with the key rather than left issuing old ids."""
    port, state = free_port(), str(tmp_path / "upgrade")
    keyless = get_backend("local", {"state_dir": state, "port": port, "ready_timeout": 60})
    observed = keyless.apply(plan("tumor", 1, artifact_variant("stable", 1)))
    assert "~" not in infer(observed.url)["parameters"]["prediction_ids"][0]
    signing = get_backend("local", {"state_dir": state, "port": port, "ready_timeout": 60,
                                    "prediction_key": PREDICTION_KEY})
    try:
        observed = signing.apply(plan("tumor", 2, artifact_variant("stable", 1)))
        [row_id] = infer(observed.url)["parameters"]["prediction_ids"]
        assert verify(parse_prediction_id(row_id), bytes.fromhex("ab" * 16))
        assert "ab" * 16 not in (tmp_path / "upgrade" / "tumor" / "key.mark").read_text()
    finally:
        signing.delete("tumor")



def test_a_server_just_started_is_known_as_this_endpoints_server():
    """Right after exec, /proc/<pid>/cmdline reads empty for a moment; the backend waits it
    out, or it takes its own new server for a stranger and starts a second one on the same
    port (seen in CI: "address already in use", "the model server exited")."""
    import subprocess

    from ops.backends.local import _serves_plan, _wait_for_exec

    for _ in range(200):
        child = subprocess.Popen(["sh", "-c", "sleep 5; :", "ops.serving", "/plan.json"],
                                 start_new_session=True)
        try:
            _wait_for_exec(child.pid)
            assert _serves_plan(child.pid, "/plan.json")
        finally:
            child.kill()
            child.wait()
