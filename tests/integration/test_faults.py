"""Faults in the middle of the work: the broker (Redis) dies and comes back during a
rollout, PostgreSQL goes away for the worker during a rollout, and a worker is SIGKILLed
while it computes a SHAP explanation.

The broker here is a private redis-server on a free port, so killing it touches nothing
else; like a Redis without persistence it comes back empty, losing every queued and
scheduled task. What must hold afterwards: the rollout reaches its terminal state, no plan
is applied twice, traffic never failed, and the explanation is computed once the task is
delivered again.
"""

from __future__ import annotations

import io
import shutil
import socket
import subprocess
import threading
import time

import pytest
import requests

from portal.celery import app
from portal.registry import services as registry
from portal.registry.models import Explanation
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.integration.local_fixtures import free_port
from tests.integration.test_deployments import FAST_CANARY, Traffic, _version
from tests.integration.test_worker import (  # noqa: F401 - fixtures
    BROKER_CONF,
    _reconnect,
    _wait_for_rollout,
    _wait_until,
    queues_named,
    start_worker,
)
from tests.portal_fixtures import local_target, metadata, random_classifier_bytes

# Each kills or stops a real process (worker, PostgreSQL connection, Redis) mid-rollout and
# waits for the recovery within a deadline. They share the machine with the other pytest
# worker's tests (they once ran alone, holding that worker idle for 1.5 minutes): the
# deadlines (60-120 s) are many times what a recovery takes, the canary's latency gate is a
# ratio of candidate to stable (both slowed alike), and all four passed at a load average of
# 9 (other agents' test suites beside them).
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
def broker(private_redis, settings):
    """The broker of ``start_worker`` and of this process: the private Redis."""
    settings.MODELGATE_TASK_QUEUE = "portal.queue.CeleryQueue"  # not in-process
    queue = "modelgate-faults"
    # The worker reads the same prefix from MODELGATE_REDIS_PREFIX in its environment.
    options = {**settings.CELERY_BROKER_TRANSPORT_OPTIONS, "visibility_timeout": 5}
    saved = {k: app.conf[k] for k in BROKER_CONF}
    app.conf.update(broker_url=private_redis.url, broker_transport_options=options,
                    task_always_eager=False, **queues_named(queue))
    _reconnect()
    yield {"url": private_redis.url, "options": options, "queue": queue}
    app.conf.update(saved)
    _reconnect()


def _serving_v1(users, project, clf, settings, prometheus, start_worker,  # noqa: F811
                tmp_path, **extra_env):
    """Production serving v1 of the classifier, released through a real worker started with
    ``extra_env``: (environment, port, worker, the worker's environment)."""
    port = free_port()
    settings.MODELGATE_RECONCILE_GRACE_SECONDS = 3
    settings.MODELGATE_PROMETHEUS_URL = prometheus([f"127.0.0.1:{port}"])
    env = {"MODELGATE_PROMETHEUS_URL": settings.MODELGATE_PROMETHEUS_URL,
           "MODELGATE_TASK_REDELIVERY_SECONDS": "5", **local_target(settings, port),
           **extra_env}
    production = releases.create_environment(users["owner"], project, name="production")
    worker = start_worker(**env)
    v1 = _version(users, clf, random_classifier_bytes(1))
    request = releases.request_approval(users["contributor"], v1, production)
    releases.review(users["approver"], request, "approve", "first release")
    _wait_for_rollout(lambda: Deployment.objects.filter(request=request).first(), {"succeeded"},
                      worker, tmp_path)
    # The decision is recorded before the worker applies it: wait for v1 to answer.
    _wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/v2/health/ready",
                                     timeout=1).status_code == 200)
    return production, port, worker, env


def _canary_of_v2(users, clf, production, bake_seconds=4):
    v2 = _version(users, clf, random_classifier_bytes(2))
    return releases.request_approval(users["contributor"], v2, production,
                                     strategy_params={**FAST_CANARY, "steps": [
                                         {"weight": 0.5, "bake_seconds": bake_seconds},
                                         {"weight": 1.0, "bake_seconds": 2}]})


def _until_ended(request, worker, start_worker, env):  # noqa: F811
    """Run beat's reconcile until the request's rollout ends; a worker that died is replaced,
    as Kubernetes restarts the container. (the rollout, the replacement or None)"""
    deadline = time.monotonic() + 120
    replaced = deployment = None
    while time.monotonic() < deadline:
        deployment = Deployment.objects.filter(request=request).first()
        if deployment is not None and deployment.status not in deployments.ACTIVE:
            break
        if worker.poll() is not None and replaced is None:
            replaced = start_worker(**env)
        deployments.reconcile()  # what beat does every 30 s
        time.sleep(2)
    return deployment, replaced


def _assert_succeeded_once(deployment, traffic, tmp_path):
    """Succeeded, each plan applied once, no request failed."""
    assert deployment is not None and deployment.status == "succeeded", (
        deployment and [e.reason for e in deployment.events.all()],
        (tmp_path / "worker.log").read_text()[-6000:])
    generations = [e.generation for e in deployment.events.all() if e.generation]
    assert generations == sorted(set(generations)), generations
    failed = [(code, detail) for code, detail in traffic.statuses if code != 200]
    assert failed == [], failed[:5]


def test_redis_dies_and_returns_empty_in_the_middle_of_a_canary(
        users, project, clf, settings, prometheus, start_worker, private_redis,  # noqa: F811
        tmp_path):
    production, port, worker, env = _serving_v1(users, project, clf, settings, prometheus,
                                                start_worker, tmp_path)
    request = _canary_of_v2(users, clf, production)
    with Traffic(f"http://127.0.0.1:{port}") as traffic:
        releases.review(users["approver"], request, "approve", "canary it")
        _wait_for_rollout(lambda: Deployment.objects.filter(request=request).first(),
                          {"progressing"}, worker, tmp_path)
        private_redis.kill()  # the scheduled decision dies with it
        time.sleep(3)
        private_redis.start()  # back, and empty
        _reconnect()
        # kombu 5.7 can crash a worker whose broker vanished (closing the channel restores
        # unacked messages over a released connection: "'NoneType' object has no attribute
        # 'hostname'"); _until_ended starts another.
        deployment, replaced = _until_ended(request, worker, start_worker, env)
    _assert_succeeded_once(deployment, traffic, tmp_path)
    print(f"worker {'crashed and was replaced' if replaced else 'reconnected on its own'}")


class PostgresOutage:
    """A TCP proxy in front of the PostgreSQL server. ``down()`` does to its clients what a
    restart of the server does (every connection cut, new ones refused) without touching
    the shared server the rest of the suite uses; ``up()`` accepts connections again."""

    def __init__(self, upstream: tuple[str, int]):
        self.upstream, self.port = upstream, free_port()
        self._pairs: set = set()
        self._lock = threading.Lock()
        self._listener = None

    def up(self):
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def down(self):
        self._listener.close()
        with self._lock:
            pairs, self._pairs = self._pairs, set()
        for pair in pairs:
            for end in pair:
                self._close(end)

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed by down()
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.add((client, server))
            for source, target in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source, target):
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            self._close(source)
            self._close(target)

    @staticmethod
    def _close(end):
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()


def test_postgresql_goes_away_for_the_worker_in_the_middle_of_a_canary(
        users, project, clf, settings, prometheus, start_worker, tmp_path):  # noqa: F811
    """The worker's connections are cut and refused for eight seconds while a canary bakes,
    as a PostgreSQL restart or failover does. Afterwards the rollout completes, each plan
    is applied once and traffic never failed."""
    from tests.integration.test_worker import _database_url

    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        pytest.skip("PostgreSQL only")
    outage = PostgresOutage((db.get("HOST") or "127.0.0.1", int(db.get("PORT") or 5432)))
    outage.up()
    database_url = _database_url().replace(f":{db.get('PORT') or 5432}/", f":{outage.port}/")
    production, port, worker, env = _serving_v1(users, project, clf, settings, prometheus,
                                                start_worker, tmp_path,
                                                DATABASE_URL=database_url)
    request = _canary_of_v2(users, clf, production)
    with Traffic(f"http://127.0.0.1:{port}") as traffic:
        releases.review(users["approver"], request, "approve", "canary it")
        _wait_for_rollout(lambda: Deployment.objects.filter(request=request).first(),
                          {"progressing"}, worker, tmp_path)
        outage.down()
        time.sleep(8)
        outage.up()
        deployment, replaced = _until_ended(request, worker, start_worker, env)
    log = (tmp_path / "worker.log").read_text()
    outage.down()
    _assert_succeeded_once(deployment, traffic, tmp_path)
    assert replaced is None, "the worker died of the outage"
    # The decision that met the outage was retried, not lost until reconcile found it.
    assert "advance_deployment" in log and "Retry in" in log, log[-4000:]


def test_a_worker_killed_as_it_carries_out_an_approval_is_replaced_and_it_happens_once(
        users, project, clf, settings, prometheus, start_worker, tmp_path):  # noqa: F811
    """SIGKILL the worker the moment it receives the approval's side effect (creating the
    rollout and applying its first plan). The task was not acknowledged (late acks), so it
    is delivered again to the replacement; start_deployment is idempotent: one rollout,
    each plan applied once, no failed request."""
    production, port, worker, env = _serving_v1(users, project, clf, settings, prometheus,
                                                start_worker, tmp_path)
    request = _canary_of_v2(users, clf, production, bake_seconds=2)
    log = tmp_path / "worker.log"
    seen = log.read_text().count("start_deployment")
    with Traffic(f"http://127.0.0.1:{port}") as traffic:
        releases.review(users["approver"], request, "approve", "canary it")
        _wait_until(lambda: log.read_text().count("start_deployment") > seen, timeout=30)
        worker.kill()  # SIGKILL as the task starts
        worker.wait(timeout=10)
        deployment, _ = _until_ended(request, worker, start_worker, env)
    _assert_succeeded_once(deployment, traffic, tmp_path)
    assert Deployment.objects.filter(request=request).count() == 1


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
