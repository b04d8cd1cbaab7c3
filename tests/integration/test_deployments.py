"""Rollouts end to end on the local backend: real model-server processes, a real Prometheus
scraping them, the rollout engine deciding from what Prometheus measured.

The tests call ``deployments.advance`` themselves (Celery runs eagerly here and ignores
countdowns); the real-worker path is covered in test_worker.py.
"""

import io
import pickle
import threading
import time
from pathlib import Path

import pytest
import requests

from portal.registry import services as registry
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.integration.local_fixtures import free_port
from tests.integration.misbehaving_models import (
    FailingClassifier,
    NonFiniteClassifier,
    SlowClassifier,
)
from tests.portal_fixtures import (
    FEATURES,
    allow_unsafe,
    local_target,
    metadata,
    random_classifier_bytes,
    settled,
)

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

FAST_CANARY = {
    "steps": [{"weight": 0.5, "bake_seconds": 3}, {"weight": 1.0, "bake_seconds": 1}],
    # p99 of a few dozen requests is close to their maximum: a generous ratio keeps a cold
    # first request from failing a good candidate, and a 10x slower one still fails.
    "thresholds": {"min_requests": 10, "max_error_rate": 0.05, "max_p99_ratio": 8.0},
    "check_interval_seconds": 1, "max_inconclusive_checks": 60,
}


@pytest.fixture
def world(users, project, clf, settings, prometheus):
    """A production environment on a free port, with v1 serving there (released directly)."""
    allow_unsafe(settings, users["staff"], project,
                 trusted=("tests.integration.misbehaving_models.FailingClassifier",
                          "tests.integration.misbehaving_models.NonFiniteClassifier",
                          "tests.integration.misbehaving_models.SlowClassifier"))
    port = free_port()
    settings.MODELGATE_PROMETHEUS_URL = prometheus([f"127.0.0.1:{port}"])
    local_target(settings, port)
    production = releases.create_environment(users["owner"], project, name="production")
    v1 = _version(users, clf, random_classifier_bytes(1))
    first = _release(users, v1, production, "canary")
    assert first.status == "succeeded" and first.strategy == "direct"
    return {"users": users, "model": clf, "env": production,
            "url": f"http://127.0.0.1:{port}", "v1": v1}


def _version(users, model, artifact: bytes):
    version = registry.register_version(users["contributor"], model, io.BytesIO(artifact),
                                        metadata())
    return registry.validate_version(version.pk)


def _release(users, version, environment, strategy, params=None) -> Deployment:
    request = releases.request_approval(users["contributor"], version, environment,
                                        strategy=strategy, strategy_params=params or {})
    releases.review(users["approver"], request, "approve", "ok")
    return settled(Deployment.objects.get(request=request))


class Traffic:
    """Steady single-row requests from a thread; counts answers by status."""

    def __init__(self, url: str):
        self.url, self.stop, self.statuses = url, threading.Event(), []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        session = requests.Session()
        body = {"instances": [[14.0, 19.0, 90.0, 650.0, 0.1]]}
        while not self.stop.is_set():
            try:
                answer = session.post(f"{self.url}/v2/models/tumor-classifier/infer",
                                      json={"inputs": [{"name": "input-0", "shape": [1, 5],
                                                        "datatype": "FP64",
                                                        "data": body["instances"]}]},
                                      timeout=5)
                self.statuses.append((answer.status_code,
                                      answer.headers.get("X-Variant", "")))
            except requests.RequestException as e:
                self.statuses.append((0, str(e)))
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


def drive(deployment: Deployment, timeout: float = 90) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = deployments.advance(deployment.pk) or deployment
        deployment.refresh_from_db()
        if deployment.status not in deployments.ACTIVE:
            return deployment
        time.sleep(1)
    raise AssertionError(f"rollout still {deployment.status} after {timeout}s: "
                         + "; ".join(e.reason for e in deployment.events.all()))


def test_canary_of_a_good_version_promotes_with_no_failed_request(world):
    v2 = _version(world["users"], world["model"], random_classifier_bytes(2))
    with Traffic(world["url"]) as traffic:
        deployment = drive(_release(world["users"], v2, world["env"], "canary", FAST_CANARY))
    assert deployment.status == "succeeded", [e.reason for e in deployment.events.all()]
    assert all(status == 200 for status, _ in traffic.statuses), traffic.statuses[-5:]
    assert {variant for _, variant in traffic.statuses} >= {"stable", "candidate"}
    passed = [e for e in deployment.events.all() if e.verdict == "pass"]
    assert passed and passed[0].measurements and passed[0].queries
    assert deployments.serving_version(world["env"], world["model"]).pk == v2.pk


def test_the_model_server_reports_the_version_number_not_the_database_id(world):
    v1 = world["v1"]
    assert deployments.variant_of(v1, "stable").version_number == v1.number
    answer = requests.post(f"{world['url']}/v2/models/tumor-classifier/infer",
                           json={"instances": [[14.0, 19.0, 90.0, 650.0, 0.1]]}, timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Version"] == answer.json()["model_version"] == str(v1.number)


def _pickled(model) -> bytes:
    return pickle.dumps(model, protocol=4)


@pytest.mark.parametrize("bad_model, why", [
    (FailingClassifier(len(FEATURES), share=0.2), "error_rate"),
    # NaN answers are server errors too: the canary's 5xx share rolls it back.
    (NonFiniteClassifier(len(FEATURES), share=0.2), "error_rate"),
    (SlowClassifier(len(FEATURES), seconds=0.25), "p99"),
])
def test_canary_of_a_bad_version_rolls_back_on_its_own(world, bad_model, why):
    bad = _version(world["users"], world["model"], _pickled(bad_model))
    with Traffic(world["url"]) as traffic:
        deployment = drive(_release(world["users"], bad, world["env"], "canary", FAST_CANARY))
    assert deployment.status == "rolled_back"
    failed = [e for e in deployment.events.all() if e.verdict == "fail"]
    assert failed and any(why in m["metric"] and m["verdict"] == "fail"
                          for m in failed[0].measurements), failed[0].measurements
    # After the rollback every answer comes from the stable version again.
    traffic_after = requests.post(f"{world['url']}/v2/models/tumor-classifier/infer", json={
        "inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64",
                    "data": [[14.0, 19.0, 90.0, 650.0, 0.1]]}]}, timeout=5)
    assert traffic_after.headers["X-Variant"] == "stable"
    assert deployments.serving_version(world["env"], world["model"]).pk == world["v1"].pk
    assert traffic.statuses
    from django.test import Client

    page = Client()
    page.force_login(world["users"]["viewer"])
    html = page.get(deployment.get_absolute_url()).content.decode()
    assert 'data-chart="measurements-chart"' in html and "Rolled back" in html


def test_manual_rollback_and_recovery_from_recorded_state(world):
    v2 = _version(world["users"], world["model"], random_classifier_bytes(3))
    deployment = _release(world["users"], v2, world["env"], "canary",
                          {**FAST_CANARY, "steps": [{"weight": 0.25, "bake_seconds": 600},
                                                    {"weight": 1.0, "bake_seconds": 1}]})
    assert deployment.status == "progressing"
    # A worker that died after saving a decision but before applying it: the next advance
    # converges the endpoint to the recorded state's plan.
    (deployments.settings.MODELGATE_SERVING_DIR / f"env-{world['env'].pk}" /
     "tumor-classifier" / "plan.json").unlink()
    deployments.advance(deployment.pk)
    settled(deployment)
    served = requests.get(f"{world['url']}/v2/models/tumor-classifier", timeout=5).json()
    assert {v["name"] for v in served["parameters"]["variants"]} == {"stable", "candidate"}

    deployments.command(world["users"]["contributor"], deployment, "rollback")
    deployment.refresh_from_db()
    assert deployment.status == "rolled_back"
    settled(deployment)
    served = requests.get(f"{world['url']}/v2/models/tumor-classifier", timeout=5).json()
    assert [v["name"] for v in served["parameters"]["variants"]] == ["stable"]
    with pytest.raises(Exception, match="rolled_back|ended"):
        deployments.command(world["users"]["approver"], deployment, "promote")


def test_ab_split_is_sticky_and_waits_for_a_decision(world):
    v2 = _version(world["users"], world["model"], random_classifier_bytes(4))
    deployment = _release(world["users"], v2, world["env"], "ab", {
        **FAST_CANARY, "split": 0.5, "duration_seconds": 4})
    url = f"{world['url']}/v2/models/tumor-classifier/infer"
    body = {"inputs": [{"name": "input-0", "shape": [1, 5], "datatype": "FP64",
                        "data": [[14.0, 19.0, 90.0, 650.0, 0.1]]}]}
    seen = {}
    for unit in ("u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8") * 5:
        answer = requests.post(url, json=body, headers={"X-Unit-Id": unit}, timeout=5)
        seen.setdefault(unit, set()).add(answer.headers["X-Variant"])
    assert all(len(variants) == 1 for variants in seen.values()), seen  # sticky per unit
    assert set().union(*seen.values()) == {"stable", "candidate"}
    with Traffic(world["url"]):
        deployment = drive_until(deployment, {"awaiting_decision"})
    deployments.command(world["users"]["approver"], deployment, "promote")
    deployment.refresh_from_db()
    assert deployment.status == "promoting"  # succeeded once the server serves the plan
    assert settled(deployment).status == "succeeded"
    assert deployments.serving_version(world["env"], world["model"]).pk == v2.pk


def test_shadow_compares_without_serving_and_a_person_keeps_the_stable(world):
    v2 = _version(world["users"], world["model"], random_classifier_bytes(5))
    deployment = _release(world["users"], v2, world["env"], "shadow", {
        **FAST_CANARY, "duration_seconds": 4,
        "thresholds": {**FAST_CANARY["thresholds"], "max_disagreement": 1.0}})
    with Traffic(world["url"]) as traffic:
        deployment = drive_until(deployment, {"awaiting_decision"})
    assert {variant for _, variant in traffic.statuses} == {"stable"}  # shadow never answers
    measured = {m["metric"] for e in deployment.events.all() for m in e.measurements}
    assert "disagreement_rate" in measured
    deployments.command(world["users"]["approver"], deployment, "keep")
    deployment.refresh_from_db()
    assert deployment.status == "kept_stable"
    assert deployments.serving_version(world["env"], world["model"]).pk == world["v1"].pk


def drive_until(deployment: Deployment, wanted: set, timeout: float = 90) -> Deployment:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployments.advance(deployment.pk)
        deployment.refresh_from_db()
        if deployment.status in wanted:
            return deployment
        assert deployment.status in deployments.ACTIVE, [e.reason for e in
                                                         deployment.events.all()]
        time.sleep(1)
    raise AssertionError(f"rollout still {deployment.status}: "
                         + "; ".join(e.reason for e in deployment.events.all()))


def test_blue_green_checks_the_idle_candidate_then_switches_at_once(world):
    """The candidate runs beside the stable with no live traffic; the rollout's own smoke
    check (requests addressed to the candidate) gives the analysis its sample."""
    v2 = _version(world["users"], world["model"], random_classifier_bytes(6))
    deployment = _release(world["users"], v2, world["env"], "bluegreen", {
        **FAST_CANARY, "check_seconds": 3, "warm_seconds": 2})
    with Traffic(world["url"]) as live:
        deployment = drive(deployment)
    assert {variant for _, variant in live.statuses} >= {"stable", "candidate"}
    assert deployment.status == "succeeded", [e.reason for e in deployment.events.all()]
    weights = [e.weights for e in deployment.events.all() if e.weights]
    assert weights[0] == {"stable": 1.0, "candidate": 0.0}  # the check: no live traffic
    assert weights[1:] == [{"stable": 0.0, "candidate": 1.0},  # the switch, stable warm
                           {"candidate": 1.0}]  # then the candidate alone
    assert all(code == 200 for code, _ in live.statuses)


def test_a_rollback_decided_while_the_backend_is_away_is_applied_when_it_returns(
        world, monkeypatch):
    from ops.backends.base import BackendUnavailable
    from ops.backends.local import LocalBackend

    v2 = _version(world["users"], world["model"], random_classifier_bytes(7))
    deployment = _release(world["users"], v2, world["env"], "canary", {
        **FAST_CANARY, "steps": [{"weight": 0.5, "bake_seconds": 600},
                                 {"weight": 1.0, "bake_seconds": 1}]})
    real_apply = LocalBackend.apply

    def unreachable(self, plan, **kwargs):
        raise BackendUnavailable("connection refused (simulated outage)")

    monkeypatch.setattr(LocalBackend, "apply", unreachable)
    deployments.command(world["users"]["contributor"], deployment, "rollback")
    deployment.refresh_from_db()
    assert deployment.status == "rolled_back"  # decided, recorded...
    assert deployment.events.order_by("-pk").first().event == "apply_delayed"
    served = requests.get(f"{world['url']}/v2/models/tumor-classifier", timeout=5).json()
    assert len(served["parameters"]["variants"]) == 2  # ...but not applied yet

    monkeypatch.setattr(LocalBackend, "apply", real_apply)  # the platform is back
    deployments.advance(deployment.pk)
    settled(deployment)
    served = requests.get(f"{world['url']}/v2/models/tumor-classifier", timeout=5).json()
    assert [v["name"] for v in served["parameters"]["variants"]] == ["stable"]
    deployment.refresh_from_db()
    assert deployment.events.order_by("-pk").first().event == "applied"
    assert deployment.next_check_at is None


def test_a_candidate_the_model_server_cannot_load_is_rolled_back_without_waiting(world):
    """Plans are applied without waiting for the server (no worker held); a plan the server
    refuses (here the artifact is gone from the store after validation) is seen by the next
    decision and the rollout rolls back, the stable serving throughout."""
    from urllib.parse import urlsplit

    v2 = _version(world["users"], world["model"], random_classifier_bytes(11))
    Path(urlsplit(v2.loadable_uri).path).unlink()
    request = releases.request_approval(world["users"]["contributor"], v2, world["env"],
                                        strategy="canary", strategy_params=FAST_CANARY)
    started = time.monotonic()
    releases.review(world["users"]["approver"], request, "approve", "ok")
    assert time.monotonic() - started < 10  # nothing waited for the server
    deployment = Deployment.objects.get(request=request)
    with Traffic(world["url"]) as traffic:
        deployment = drive(deployment, timeout=60)
    # The first plan refused: "could not start", the stable restored (failed, not rolled back).
    assert deployment.status == "failed", [e.reason for e in deployment.events.all()]
    assert any("refused plan" in e.reason for e in deployment.events.all())
    settled(deployment)
    assert {code for code, _ in traffic.statuses} == {200}
    served = requests.get(f"{world['url']}/v2/models/tumor-classifier", timeout=5).json()
    assert [v["name"] for v in served["parameters"]["variants"]] == ["stable"]


def test_a_finished_rollout_never_puts_its_plan_back_over_a_newer_one(world, monkeypatch):
    """Review: a finished rollout whose final apply was delayed re-applied its old plan over
    the newer A/B test's, and traffic went back to the old version for 19–27 s."""
    from ops.backends.base import BackendUnavailable
    from ops.backends.local import LocalBackend

    v2 = _version(world["users"], world["model"], random_classifier_bytes(8))
    old = _release(world["users"], v2, world["env"], "canary", {
        **FAST_CANARY, "steps": [{"weight": 0.5, "bake_seconds": 600},
                                 {"weight": 1.0, "bake_seconds": 1}]})
    real_apply = LocalBackend.apply
    monkeypatch.setattr(LocalBackend, "apply", lambda self, plan, **kw: (_ for _ in ()).throw(
        BackendUnavailable("connection refused (simulated outage)")))
    deployments.command(world["users"]["contributor"], old, "rollback")
    old.refresh_from_db()
    assert old.status == "rolled_back" and old.next_check_at is not None
    monkeypatch.setattr(LocalBackend, "apply", real_apply)

    v3 = _version(world["users"], world["model"], random_classifier_bytes(9))
    newer = _release(world["users"], v3, world["env"], "ab", {**FAST_CANARY,
                                                              "duration_seconds": 600})
    newer.refresh_from_db()
    assert newer.status == "progressing"
    settled(newer)
    serving = requests.get(f"{world['url']}/v2/models/tumor-classifier", timeout=5).json()
    generation = serving["parameters"]["generation"]

    deployments.advance(old.pk)  # what reconcile does with the delayed apply
    time.sleep(2)  # (a server given a plan takes a moment to switch)
    after = requests.get(f"{world['url']}/v2/models/tumor-classifier", timeout=5).json()
    assert after["parameters"]["generation"] == generation
    assert {v["name"] for v in after["parameters"]["variants"]} == {"stable", "candidate"}
    old.refresh_from_db()
    assert old.events.order_by("-pk").first().event == "superseded"
    assert old.next_check_at is None


def test_model_servers_stopped_with_the_machine_start_again_on_what_they_served(world):
    """The demo (and a restarted machine) stops the local backend's model servers; on start
    the portal starts each endpoint's server again on its latest plan."""
    import os
    import signal

    from django.conf import settings

    assert deployments.restore_local_servers() == []  # serving: nothing to do
    pidfile = (settings.MODELGATE_SERVING_DIR / f"env-{world['env'].pk}" / "tumor-classifier"
               / "server.pid")
    os.killpg(int(pidfile.read_text()), signal.SIGTERM)
    restored, deadline = [], time.monotonic() + 15
    while not restored and time.monotonic() < deadline:  # [] while it is still stopping
        restored = deployments.restore_local_servers()
        time.sleep(0.1)
    assert restored == ["production/tumor-classifier"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{world['url']}/v2/health/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.2)
    with Traffic(world["url"]) as traffic:
        time.sleep(1)
    assert traffic.statuses and all(status == 200 for status, _ in traffic.statuses)
    assert {variant for _, variant in traffic.statuses} == {"candidate"}


def test_an_operator_lists_stops_and_starts_the_model_servers(world):
    """``manage.py model_servers``: the servers outlive the portal, so an operator sees
    them, stops them (the plan is kept) and starts them again on what they served."""
    from io import StringIO

    from django.core.management import CommandError, call_command

    def run(*args) -> str:
        out = StringIO()
        call_command("model_servers", *args, stdout=out)
        return out.getvalue()

    listed = run("list")
    assert "production/tumor-classifier\trunning (pid " in listed
    assert f"{world['url']}\tplan " in listed and "v1 100%" in listed
    with pytest.raises(CommandError, match="no local endpoint named staging/x"):
        run("stop", "staging/x")
    assert run("stop", "production/tumor-classifier").strip() == (
        "stopped: production/tumor-classifier")
    assert "production/tumor-classifier\tstopped" in run("list")
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{world['url']}/v2/health/ready", timeout=2)
    assert run("stop").strip() == "stopped: none was running"
    assert run("start").strip() == "started: production/tumor-classifier"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{world['url']}/v2/health/ready", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            time.sleep(0.2)
    assert "running (pid " in run("list")
