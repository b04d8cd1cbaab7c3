"""Artifact validation through a real Celery worker process and a real broker.

The broker is the test Redis (its own database number and key prefix) when one is
reachable, otherwise the embedded filesystem transport.
"""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from django.conf import settings

from portal.celery import app
from portal.registry.models import ModelVersion
from tests.portal_fixtures import local_target, metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _reconnect():
    """Drop pooled broker connections and the cached queues and routes, so the next publish
    uses the current configuration."""
    from kombu import pools

    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None
    for cached in ("queues", "router", "default_queue"):
        app.amqp.__dict__.pop(cached, None)
    app.amqp._rtable = None


BROKER_CONF = ("broker_url", "broker_transport_options", "task_always_eager",
               "task_default_queue", "task_routes", "task_queues")


def queues_named(queue: str) -> dict:
    """The configuration of a worker given MODELGATE_CELERY_QUEUE=queue (its rollout queue is
    ``<queue>-rollouts``), for this process to send where that worker listens."""
    from kombu import Exchange, Queue

    rollouts = f"{queue}-rollouts"
    return {"task_default_queue": queue,
            "task_routes": {name: {"queue": rollouts} for name in settings.ROLLOUT_TASKS},
            "task_queues": [Queue(name, Exchange(name), routing_key=name)
                            for name in (queue, rollouts)]}


@pytest.fixture
def broker(tmp_path, settings):
    # This process queues through the broker too, not in-process as the test settings say.
    settings.MODELGATE_TASK_QUEUE = "portal.queue.CeleryQueue"
    redis_url = os.environ.get("MODELGATE_TEST_REDIS_URL")
    queue = f"modelgate-test-{os.getpid()}"
    if redis_url:
        url, options = redis_url, dict(settings.CELERY_BROKER_TRANSPORT_OPTIONS)
        options.setdefault("global_keyprefix", f"modelgate-test-{os.getpid()}:")
    else:
        # Mirror what settings derive from MODELGATE_DATA_DIR, which the worker is given.
        data_dir = tmp_path / "fsbroker"
        folders = {name: data_dir / "broker" / name for name in ("queue", "processed", "control")}
        for folder in folders.values():
            folder.mkdir(parents=True)
        url = "filesystem://"
        options = {"data_folder_in": str(folders["queue"]), "data_folder_out": str(folders["queue"]),
                   "processed_folder": str(folders["processed"]),
                   "control_folder": str(folders["control"]), "polling_interval": 0.1}
    saved = {k: app.conf[k] for k in BROKER_CONF}
    app.conf.update(broker_url=url, broker_transport_options=options, task_always_eager=False,
                    **queues_named(queue))
    _reconnect()
    yield {"url": url, "options": options, "queue": queue}
    app.conf.update(saved)
    _reconnect()


@pytest.fixture
def start_worker(broker, artifact_root, settings, tmp_path):
    """``start(**env)`` → a real Celery worker process on the test database and broker."""
    processes = []

    def start(*, pool: str = "solo", concurrency: int = 1, queues: str | None = None,
              **extra_env) -> subprocess.Popen:
        """``queues``: "rollouts" or "work" for a worker consuming only that queue (-Q), as
        the demo and the manifests run them; None for both."""
        env = dict(os.environ, DATABASE_URL=_database_url(), CELERY_TASK_ALWAYS_EAGER="false",
                   MODELGATE_ARTIFACT_ROOT=str(artifact_root),
                   MODELGATE_SERVING_DIR=str(settings.MODELGATE_SERVING_DIR),
                   MODELGATE_CELERY_QUEUE=broker["queue"], CELERY_BROKER_URL=broker["url"],
                   MODELGATE_DATA_DIR=str(tmp_path / "worker"))
        env.update(extra_env)  # may replace any of the above (DATABASE_URL, say)
        if broker["url"] == "filesystem://":
            env["MODELGATE_DATA_DIR"] = str(Path(broker["options"]["data_folder_in"]).parents[1])
        log = open(tmp_path / "worker.log", "a")
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "portal", "worker", "-P", pool,
             "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel", "INFO", *_only(queues, broker["queue"])],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def _only(queues: str | None, queue: str) -> list[str]:
    if queues is None:
        return []
    return ["-Q", {"rollouts": f"{queue}-rollouts", "work": queue}[queues]]


@pytest.fixture
def worker(start_worker):
    return start_worker()


def wait_for_status(version_id, wanted, timeout=60, worker=None, log=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = ModelVersion.objects.get(pk=version_id).status
        if status in wanted:
            return status
        if worker is not None and worker.poll() is not None:
            raise AssertionError("the worker died:\n" + (log.read_text() if log else ""))
        time.sleep(0.2)
    raise AssertionError(f"version {version_id} still {status} after {timeout}s\n"
                         + (log.read_text() if log else ""))


def test_a_real_worker_validates_an_uploaded_artifact(api, clf, worker, tmp_path):
    response = api("contributor").upload(clf.pk, random_classifier_bytes(1), metadata())
    assert response.status_code == 201
    # The web process only queued the work: the version is pending until the worker answers.
    assert response.json()["status"] == "pending"
    status = wait_for_status(response.json()["id"], {"ready", "invalid"}, worker=worker,
                             log=tmp_path / "worker.log")
    version = ModelVersion.objects.get(pk=response.json()["id"])
    assert status == "ready", version.status_reason
    assert version.validated_at is not None


def test_upload_while_the_broker_is_down_is_kept_and_requeued_later(api, clf, broker, worker,
                                                                   tmp_path):
    from workers.registry import requeue_stuck_work

    good = dict(url=app.conf.broker_url, options=app.conf.broker_transport_options)
    app.conf.update(broker_url="redis://127.0.0.1:1/0", broker_transport_options={
        "socket_connect_timeout": 0.5, "max_retries": 0})
    _reconnect()
    started = time.monotonic()
    response = api("contributor").upload(clf.pk, random_classifier_bytes(2), metadata())
    elapsed = time.monotonic() - started
    assert response.status_code == 201 and response.json()["status"] == "pending"
    assert elapsed < 10, f"a dead broker stalled the upload for {elapsed:.1f}s"

    app.conf.update(broker_url=good["url"], broker_transport_options=good["options"])
    _reconnect()
    assert requeue_stuck_work(older_than_seconds=0) == 1
    assert wait_for_status(response.json()["id"], {"ready"}, worker=worker,
                           log=tmp_path / "worker.log") == "ready"


def test_a_worker_killed_mid_rollout_is_replaced_and_the_rollout_completes_once(
        users, project, clf, settings, prometheus, start_worker, tmp_path):
    """SIGKILL the worker while a canary bakes; another worker, prompted by the reconcile
    that beat runs, resumes from the recorded state: the rollout succeeds and no step is
    applied twice."""
    from portal.releases import deployments
    from portal.releases import services as releases
    from portal.releases.models import Deployment
    from tests.integration.local_fixtures import free_port
    from tests.integration.test_deployments import FAST_CANARY, Traffic, _version

    port = free_port()
    settings.MODELGATE_RECONCILE_GRACE_SECONDS = 3
    settings.MODELGATE_PROMETHEUS_URL = prometheus([f"127.0.0.1:{port}"])
    env = {"MODELGATE_PROMETHEUS_URL": settings.MODELGATE_PROMETHEUS_URL,
           **local_target(settings, port)}
    production = releases.create_environment(users["owner"], project, name="production")
    first = start_worker(**env)
    v1 = _version(users, clf, random_classifier_bytes(1))
    request = releases.request_approval(users["contributor"], v1, production)
    releases.review(users["approver"], request, "approve", "first release")
    _wait_for_rollout(lambda: Deployment.objects.filter(request=request).first(), {"succeeded"},
                      first, tmp_path)
    # The decision is recorded before the worker applies it: wait for v1 to answer.
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
                          {"progressing"}, first, tmp_path)
        first.kill()  # SIGKILL: no warm shutdown, the scheduled decision is lost with it
        first.wait(timeout=10)
        second = start_worker(**env)
        deployment = Deployment.objects.get(request=request)
        deadline = time.monotonic() + 120
        while deployment.status in deployments.ACTIVE and time.monotonic() < deadline:
            deployments.reconcile()  # what beat does every 30 s
            time.sleep(2)
            deployment.refresh_from_db()
    assert deployment.status == "succeeded", (
        [e.reason for e in deployment.events.all()], (tmp_path / "worker.log").read_text()[-3000:])
    generations = [e.generation for e in deployment.events.all() if e.generation]
    assert generations == sorted(set(generations)), generations  # each plan applied once
    failed = [(code, detail) for code, detail in traffic.statuses if code != 200]
    assert failed == [], failed[:5]
    assert second.poll() is None


def test_rollouts_run_on_their_own_queue_whatever_waits_on_the_other(
        api, users, project, clf, settings, start_worker, tmp_path):
    """With only a rollout worker (-Q <queue>-rollouts, as the demo and the manifests run
    one), an approved release goes through while a validation waits for a worker of the
    other queue; one of those then takes it."""
    from portal.releases import services as releases
    from portal.releases.models import Deployment
    from tests.integration.local_fixtures import free_port
    from tests.integration.test_deployments import _version

    env = local_target(settings, free_port())
    production = releases.create_environment(users["owner"], project, name="production")
    rollouts = start_worker(queues="rollouts", **env)
    waiting = api("contributor").upload(clf.pk, random_classifier_bytes(5), metadata())
    v1 = _version(users, clf, random_classifier_bytes(1))  # validated in this process
    request = releases.request_approval(users["contributor"], v1, production)
    releases.review(users["approver"], request, "approve", "first release")
    _wait_for_rollout(lambda: Deployment.objects.filter(request=request).first(), {"succeeded"},
                      rollouts, tmp_path)
    assert ModelVersion.objects.get(pk=waiting.json()["id"]).status == "pending"
    work = start_worker(queues="work", **env)
    assert wait_for_status(waiting.json()["id"], {"ready"}, worker=work,
                           log=tmp_path / "worker.log") == "ready"
    log = (tmp_path / "worker.log").read_text()
    assert "workers.releases.start_deployment" in log and "workers.registry.validate_version" in log


def _wait_for_rollout(load, wanted, worker, log_dir, timeout=90):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        deployment = load()
        if deployment is not None and deployment.status in wanted:
            return deployment
        if worker.poll() is not None:
            raise AssertionError("the worker died:\n" + (log_dir / "worker.log").read_text())
        time.sleep(0.3)
    raise AssertionError(f"rollout not {wanted} after {timeout}s: "
                         + (log_dir / "worker.log").read_text()[-3000:])


def _wait_until(check, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError("condition not met in time")


def test_a_prefork_worker_serves_the_metrics_of_all_its_processes_summed(start_worker,
                                                                        tmp_path):
    """Two prefork children each time their own tasks into the multiprocess directory; the
    worker's metrics port answers one series per task, summed over the children."""
    import re

    from tests.integration.local_fixtures import free_port
    from workers.releases import expire_requests

    port = free_port()
    folder = tmp_path / "metrics"
    folder.mkdir()
    worker = start_worker(pool="prefork", concurrency=2, PROMETHEUS_MULTIPROC_DIR=str(folder),
                          MODELGATE_WORKER_METRICS_PORT=str(port),
                          MODELGATE_WORKER_METRICS_ADDR="127.0.0.1")
    def writers():
        return {f.name.split("_")[-1] for f in folder.glob("*.db")}

    # Tasks this short can all land on one child (the pool hands each to whichever child is
    # idle first), so batches are sent until both children have written, at most five.
    sent = 0
    while sent < 100 and (sent == 0 or len(writers()) < 2):
        results = [expire_requests.delay() for _ in range(20)]
        for result in results:
            result.get(timeout=120)
        sent += len(results)

    def scraped():
        try:
            return requests.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
        except requests.RequestException:
            return ""

    pattern = (r'modelgate_task_duration_seconds_count\{[^}]*'
               r'task="workers.releases.expire_requests"[^}]*\} (\S+)')

    def counted():
        found = re.search(pattern, scraped())
        return float(found[1]) if found else 0.0

    # Celery stores a result before task_postrun, where the duration is observed: the last
    # ones may land a moment after every result is readable.
    deadline = time.monotonic() + 30
    while counted() < sent and time.monotonic() < deadline:
        time.sleep(0.5)
    text = scraped()
    assert counted() == sent, (sorted(f.name for f in folder.iterdir()), text[-1500:])
    assert not re.findall(r'pid="\d+"', text)  # summed, not one series per process
    assert len(writers()) >= 2, (writers(), (tmp_path / "worker.log").read_text()[-2000:])
    assert worker.poll() is None
