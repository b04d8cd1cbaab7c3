"""The portal's own metrics: request latency by route, task durations and failures, queue
depth, and gunicorn's processes summed into one /metrics."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from portal.celery import app
from tests.integration.local_fixtures import free_port

pytestmark = [pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


def samples(text: str) -> list:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels) -> float:
    return sum(s.value for s in samples(text) if s.name == name
               and all(s.labels.get(k) == v for k, v in labels.items()))


@pytest.mark.django_db
def test_requests_are_timed_by_route_not_by_path(client, users):
    client.force_login(users["viewer"])
    before = value(client.get("/metrics").content.decode(),
                   "modelgate_http_request_duration_seconds_count", route="projects/")
    for _ in range(3):
        assert client.get("/projects/").status_code == 200
    client.get("/no/such/page-1")
    client.get("/no/such/page-2")
    text = client.get("/metrics").content.decode()
    assert value(text, "modelgate_http_request_duration_seconds_count",
                 route="projects/", method="GET", status="2xx") == before + 3
    routes = {s.labels.get("route") for s in samples(text)
              if s.name == "modelgate_http_request_duration_seconds_count"}
    assert not any("page-1" in r for r in routes)  # raw paths never become labels
    assert "unmatched" in routes


@pytest.mark.django_db
def test_tasks_are_timed_and_failures_counted():
    @app.task(name="tests.observability.ok")
    def ok():
        return 1

    @app.task(name="tests.observability.boom")
    def boom():
        raise ValueError("no")

    from portal.monitoring.metrics import exposition

    ok.apply()
    result = boom.apply(throw=False)
    assert isinstance(result.result, ValueError)
    text = exposition().decode()
    assert value(text, "modelgate_task_duration_seconds_count",
                 task="tests.observability.ok", state="SUCCESS") >= 1
    assert value(text, "modelgate_task_failures_total", task="tests.observability.boom",
                 exception="ValueError") >= 1


@pytest.mark.django_db
@pytest.mark.filterwarnings("ignore::celery.exceptions.AlwaysEagerIgnored")
def test_queue_depth_is_read_from_the_broker(settings):
    if not os.environ.get("MODELGATE_TEST_REDIS_URL"):
        pytest.skip("needs the test Redis")
    from portal.monitoring.metrics import exposition
    from tests.integration.test_worker import _reconnect

    queue = f"modelgate-depth-{uuid.uuid4().hex[:8]}"
    saved = app.conf.broker_url, app.conf.broker_transport_options
    app.conf.broker_url = os.environ["MODELGATE_TEST_REDIS_URL"]
    app.conf.broker_transport_options = {"global_keyprefix": f"{queue}:"}
    _reconnect()
    try:
        settings.CELERY_TASK_DEFAULT_QUEUE = queue
        for _ in range(3):
            app.send_task("tests.nothing", queue=queue)
        text = exposition().decode()
        assert value(text, "modelgate_broker_up") == 1
        assert value(text, "modelgate_task_queue_length", queue=queue) == 3
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge(queue)
        app.conf.broker_url = "redis://127.0.0.1:1/0"  # nobody there
        _reconnect()
        assert value(exposition().decode(), "modelgate_broker_up") == 0
    finally:
        app.conf.broker_url, app.conf.broker_transport_options = saved
        _reconnect()


@pytest.mark.django_db(transaction=True)
def test_gunicorns_processes_are_summed_in_one_metrics_page(tmp_path):
    db = settings.DATABASES["default"]
    database_url = (f"sqlite:///{db['NAME']}" if db["ENGINE"].endswith("sqlite3") else
                    f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}"
                    f":{db.get('PORT') or 5432}/{db['NAME']}")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env.update(DATABASE_URL=database_url, MODELGATE_DATA_DIR=str(tmp_path),
               WEB_CONCURRENCY="3", MODELGATE_BIND=f"127.0.0.1:{port}")
    log = open(tmp_path / "gunicorn.log", "wb")  # noqa: SIM115 - closed below
    server = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c",
                               "python:portal.gunicorn_conf", "portal.wsgi"], cwd=ROOT,
                              env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/healthz", timeout=2).ok:
                    break
            except requests.RequestException:
                time.sleep(0.3)
        session = requests.Session()
        for _ in range(60):
            assert requests.get(f"{base}/healthz", timeout=5).ok  # new connections: spread
        text = session.get(f"{base}/metrics", timeout=10).text
        counted = value(text, "modelgate_http_request_duration_seconds_count", route="healthz")
        assert counted >= 60, (tmp_path / "gunicorn.log").read_text()[-2000:]
        pids = set(re.findall(r'pid="(\d+)"', text))
        assert not pids  # summed, not one series per process
    finally:
        server.terminate()
        server.wait(timeout=20)
        log.close()
