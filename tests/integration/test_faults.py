"""Faults in the middle of the work: the broker (Redis) dies and comes back during a
rollout, and a worker is SIGKILLed while it computes a SHAP explanation.

The broker here is a private redis-server on a free port, so killing it touches nothing
else; like a Redis without persistence it comes back empty, losing every queued and
scheduled task. What must hold afterwards: the rollout reaches its terminal state, no plan
is applied twice, traffic never failed, and the explanation is computed once the task is
delivered again.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import time

import pytest
import requests

from portal.registry import services as registry
from portal.registry.models import Explanation
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.integration.local_fixtures import free_port
from tests.integration.test_deployments import FAST_CANARY, Traffic, _version
from tests.integration.test_worker import (  # noqa: F401 - fixtures
    _reconnect,
    _wait_for_rollout,
    _wait_until,
    start_worker,
)
from tests.portal_fixtures import metadata, random_classifier_bytes
from workers.celery import app

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
REDIS = shutil.which("redis-server")


class PrivateRedis:
    def __init__(self, port: int, folder):
        self.port, self.folder, self.process = port, folder, None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_until(lambda: self._ping(), timeout=20)

    def _ping(self) -> bool:
        import redis

        return bool(redis.Redis(port=self.port, socket_connect_timeout=0.5).ping())

    def kill(self):
        self.process.kill()
        self.process.wait(timeout=10)


@pytest.fixture
def private_redis(tmp_path):
    if REDIS is None:
        pytest.skip("redis-server is not installed")
    server = PrivateRedis(free_port(), tmp_path)
    server.start()
    yield server
    if server.process.poll() is None:
        server.kill()


@pytest.fixture
def broker(private_redis):
    """The broker of ``start_worker`` and of this process: the private Redis."""
    from django.conf import settings

    queue = "modelgate-faults"
    # The worker reads the same prefix from MODELGATE_REDIS_PREFIX in its environment.
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 5}
    saved = {k: app.conf[k] for k in ("broker_url", "broker_transport_options",
                                      "task_always_eager", "task_default_queue")}
    app.conf.update(broker_url=private_redis.url, broker_transport_options=options,
                    task_always_eager=False, task_default_queue=queue)
    _reconnect()
    yield {"url": private_redis.url, "options": options, "queue": queue}
    app.conf.update(saved)
    _reconnect()


def test_redis_dies_and_returns_empty_in_the_middle_of_a_canary(
        users, project, clf, settings, prometheus, start_worker, private_redis,  # noqa: F811
        tmp_path):
    port = free_port()
    settings.MODELGATE_RECONCILE_GRACE_SECONDS = 3
    settings.MODELGATE_PROMETHEUS_URL = prometheus([f"127.0.0.1:{port}"])
    env = {"MODELGATE_PROMETHEUS_URL": settings.MODELGATE_PROMETHEUS_URL,
           "MODELGATE_TASK_REDELIVERY_SECONDS": "5"}
    production = releases.create_environment(users["owner"], project, name="production",
                                             settings={"ports": {"tumor-classifier": port}})
    worker = start_worker(**env)
    v1 = _version(users, clf, random_classifier_bytes(1))
    request = releases.request_approval(users["contributor"], v1, production)
    releases.review(users["approver"], request, "approve", "first release")
    _wait_for_rollout(lambda: Deployment.objects.filter(request=request).first(), {"succeeded"},
                      worker, tmp_path)
    _wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/v2/health/ready",
                                     timeout=1).status_code == 200)

    v2 = _version(users, clf, random_classifier_bytes(2))
    request = releases.request_approval(users["contributor"], v2, production,
                                        strategy_params={**FAST_CANARY, "steps": [
                                            {"weight": 0.5, "bake_seconds": 4},
                                            {"weight": 1.0, "bake_seconds": 2}]})
    with Traffic(f"http://127.0.0.1:{port}") as traffic:
        releases.review(users["approver"], request, "approve", "canary it")
        _wait_for_rollout(lambda: Deployment.objects.filter(request=request).first(),
                          {"progressing"}, worker, tmp_path)
        private_redis.kill()  # the scheduled decision dies with it
        time.sleep(3)
        private_redis.start()  # back, and empty
        _reconnect()
        deployment = Deployment.objects.get(request=request)
        deadline = time.monotonic() + 120
        replaced = None
        while deployment.status in deployments.ACTIVE and time.monotonic() < deadline:
            if worker.poll() is not None and replaced is None:
                # kombu 5.7 can crash a worker whose broker vanished (closing the channel
                # restores unacked messages over a released connection: "'NoneType' object
                # has no attribute 'hostname'"); its supervisor starts another, as
                # Kubernetes restarts the container.
                replaced = start_worker(**env)
            deployments.reconcile()  # what beat does every 30 s
            time.sleep(2)
            deployment.refresh_from_db()
    log = (tmp_path / "worker.log").read_text()[-6000:]
    assert deployment.status == "succeeded", ([e.reason for e in deployment.events.all()], log)
    generations = [e.generation for e in deployment.events.all() if e.generation]
    assert generations == sorted(set(generations)), generations  # each plan applied once
    failed = [(code, detail) for code, detail in traffic.statuses if code != 200]
    assert failed == [], failed[:5]
    print(f"worker {'crashed and was replaced' if replaced else 'reconnected on its own'}")


def test_a_worker_killed_during_a_shap_computation_is_replaced_and_the_task_redelivered(
        users, project, clf, cancer_frame, settings, start_worker, tmp_path):  # noqa: F811
    """acks_late: the explanation task stays unacknowledged while it runs; SIGKILL the
    worker mid-computation and the next worker gets the task again (after the visibility
    timeout) and finishes it."""
    from sklearn.svm import SVC

    from ops.artifacts import dump_skops
    from tests.portal_fixtures import FEATURES

    # A model only the permutation explainer handles: seconds of work, time to kill it.
    svc = SVC(probability=True, random_state=0).fit(cancer_frame[FEATURES],
                                                    cancer_frame["target"])

    settings.MODELGATE_EXPLAIN_VERSIONS = True
    env = {"MODELGATE_EXPLAIN_VERSIONS": "true", "MODELGATE_EXPLANATION_SAMPLE_ROWS": "200",
           "MODELGATE_TASK_REDELIVERY_SECONDS": "5"}
    dataset = registry.upload_dataset(users["contributor"], project, name="train",
                                      file=io.BytesIO(cancer_frame.to_csv(index=False).encode()),
                                      filename="train.csv", target="target")
    registry.profile_dataset(dataset.pk)
    first = start_worker(**env)
    version = registry.register_version(users["contributor"], clf,
                                        io.BytesIO(dump_skops(svc)),
                                        metadata(dataset=dataset.pk))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # validated, and the explanation begun
        row = Explanation.objects.filter(version=version).first()
        if row is not None and row.status == "pending":
            break
        time.sleep(0.05)
    first.kill()
    first.wait(timeout=10)
    log = (tmp_path / "worker.log").read_text()[-3000:]
    version.refresh_from_db()
    assert Explanation.objects.filter(version=version).exists(), (version.status,
                                                                  version.status_reason, log)
    assert Explanation.objects.get(version=version).status != "ready" or pytest.skip(
        "the explanation finished before the worker could be killed")
    start_worker(**env)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        explanation = Explanation.objects.get(version=version)
        if explanation.status in ("ready", "failed"):
            break
        time.sleep(0.5)
    assert explanation.status == "ready", (explanation.reason,
                                           (tmp_path / "worker.log").read_text()[-3000:])
    assert explanation.method == "permutation" and explanation.sample_size > 0
