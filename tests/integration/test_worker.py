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
from django.conf import settings

from portal.registry.models import ModelVersion
from tests.portal_fixtures import metadata, random_classifier_bytes
from workers.celery import app

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


def _database_url() -> str:
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    return f"postgres://{user}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/{db['NAME']}"


def _reconnect():
    """Drop pooled broker connections so the next publish uses the current configuration."""
    from kombu import pools

    pools.reset()
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker(tmp_path):
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
    saved = {k: app.conf[k] for k in ("broker_url", "broker_transport_options",
                                      "task_always_eager", "task_default_queue")}
    app.conf.update(broker_url=url, broker_transport_options=options, task_always_eager=False,
                    task_default_queue=queue)
    _reconnect()
    yield {"url": url, "options": options, "queue": queue}
    app.conf.update(saved)
    _reconnect()


@pytest.fixture
def worker(broker, artifact_root, tmp_path):
    env = dict(os.environ, DATABASE_URL=_database_url(), CELERY_TASK_ALWAYS_EAGER="false",
               MODELGATE_ARTIFACT_ROOT=str(artifact_root), MODELGATE_CELERY_QUEUE=broker["queue"],
               CELERY_BROKER_URL=broker["url"], MODELGATE_DATA_DIR=str(tmp_path / "worker"))
    if broker["url"] == "filesystem://":
        env["MODELGATE_DATA_DIR"] = str(Path(broker["options"]["data_folder_in"]).parents[1])
    log = open(tmp_path / "worker.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "workers", "worker", "-P", "solo",
         "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    yield process
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()


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
