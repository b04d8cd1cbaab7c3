"""Cheap ways to starve the service (issue 18, item 5), played by a contributor of their
own project: oversized datasets, a rollout that checks a thousand times a second, slow
request bodies, and tasks that run past their time; and the worker's pool coming up on a
busy machine. Each is refused or bounded, and leaves its object with a reason.
"""

from __future__ import annotations

import io
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import requests
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from ops.profile import MAX_LABEL_CHARS
from portal.celery import app
from portal.registry import services as registry
from portal.registry.models import Dataset, ModelVersion
from tests.integration.local_fixtures import free_port
from tests.integration.test_worker import (  # noqa: F401  (fixtures)
    _database_url,
    broker,
    start_worker,
)
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def upload(api, project, name: str, data: bytes, filename: str):
    file = io.BytesIO(data)
    file.name = filename
    return api("contributor").post("/api/v1/datasets/", {
        "project": project.pk, "name": name, "file": file}, format="multipart")


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


@pytest.fixture
def reader_peaks(caplog):
    """The peak resident set of each dataset reader child (ops.bounded logs it), in MiB."""
    caplog.set_level(logging.INFO, logger="ops.bounded")

    def peaks() -> list[int]:
        return [int(m[1]) for r in caplog.records
                if (m := re.search(r"peak (\d+) MiB", r.getMessage()))]
    return peaks


def wide_csv(columns: int = 1_000_000) -> bytes:
    return (",".join(f"c{i}" for i in range(columns)) + "\n"
            + ",".join("1" for _ in range(columns)) + "\n").encode()


# -- datasets ---------------------------------------------------------------------------------

def test_a_csv_of_a_million_columns_is_refused_at_once_without_growing(api, project,
                                                                      reader_peaks):
    """Before: held the worker for over five minutes at 2.6 GB until it was killed."""
    body = wide_csv()
    resident = resident_bytes()
    started = time.monotonic()
    response = upload(api, project, "wide", body, "wide.csv")
    elapsed = time.monotonic() - started
    assert response.status_code == 201, response.json()
    dataset = api("viewer").get(f"/api/v1/datasets/{response.json()['id']}/").json()
    assert dataset["profile_status"] == "failed"
    assert dataset["profile_reason"] == ("the dataset has 1,000,000 columns; at most 2,000 "
                                         "are allowed (MODELGATE_DATASET_MAX_COLUMNS)")
    assert elapsed < 15, elapsed  # the 10 MB upload itself included
    # The reader (a child of the process that profiles) grew by the header's chunk only.
    assert reader_peaks()[-1] * MiB - resident < 100 * MiB, (reader_peaks(), resident)


@pytest.mark.parametrize(("build", "reason"), [
    (lambda: pa.table({"a": np.zeros(50_000_000, dtype=np.int8)}),
     "the dataset has 50,000,000 rows; at most 1,000,000 are allowed "
     "(MODELGATE_DATASET_MAX_ROWS)"),
    (lambda: pa.table({"s": pa.DictionaryArray.from_arrays(
        np.zeros(1_000_000, dtype=np.int32), pa.array(["x" * 2_000]))}),
     "the dataset expands to 2,008,000,000 bytes; at most 536,870,912 bytes are allowed "
     "(MODELGATE_DATASET_MAX_UNPACKED_BYTES)"),
], ids=["fifty_million_rows", "a_string_expanding_to_2_GB"])
def test_a_parquet_bomb_is_refused_before_it_expands(api, project, reader_peaks, build,
                                                     reason):
    """Before: 397 KB of Parquet expanded to 50 million rows and was accepted."""
    out = io.BytesIO()
    pq.write_table(build(), out, compression="zstd", store_schema=False)
    assert len(out.getvalue()) < 1_000_000
    resident = resident_bytes()
    response = upload(api, project, "bomb", out.getvalue(), "bomb.parquet")
    assert response.status_code == 201, response.json()
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert (dataset.profile_status, dataset.profile_reason) == ("failed", reason)
    assert reader_peaks()[-1] * MiB - resident < 100 * MiB, (reader_peaks(), resident)


@pytest.fixture(scope="module")
def hundred_megabyte_cell(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("cell") / "cell.csv"
    with open(path, "w") as f:
        f.write("x,text\n1,short\n2,")
        for _ in range(100):
            f.write("y" * MiB)
        f.write("\n")
    return path


def test_a_hundred_megabyte_value_is_refused_quickly_and_never_reaches_a_profile(
        users, project, reader_peaks, hundred_megabyte_cell):
    """Before: the value was kept in the profile, so every view of the dataset sent 100 MB."""
    resident = resident_bytes()
    started = time.monotonic()
    with open(hundred_megabyte_cell, "rb") as f:
        dataset = registry.upload_dataset(users["contributor"], project, name="cell", file=f,
                                          filename="cell.csv")
    registry.profile_dataset(dataset.pk)
    dataset.refresh_from_db()
    assert time.monotonic() - started < 30
    assert dataset.profile_status == "failed"
    assert dataset.profile_reason == (
        "a value in the file is 104,857,600 bytes long; at most 100,000 characters are "
        "allowed (MODELGATE_DATASET_MAX_CELL_CHARS)")
    assert reader_peaks()[-1] * MiB - resident < 100 * MiB, (reader_peaks(), resident)


def test_an_operator_may_allow_long_values_and_the_profile_keeps_them_cut(
        api, users, project, settings, hundred_megabyte_cell):
    settings.MODELGATE_DATASET_MAX_CELL_CHARS = 200 * MiB
    with open(hundred_megabyte_cell, "rb") as f:
        dataset = registry.upload_dataset(users["contributor"], project, name="cell", file=f,
                                          filename="cell.csv")
    registry.profile_dataset(dataset.pk)
    dataset.refresh_from_db()
    assert dataset.profile_status == "ready", dataset.profile_reason
    labels = dataset.profile["features"]["text"]["frequencies"]
    assert labels == {"short": 1, "y" * MAX_LABEL_CHARS + "…": 1}
    response = api("viewer").get(f"/api/v1/datasets/{dataset.pk}/")
    assert response.status_code == 200 and len(response.content) < 20_000


def numeric_csv(rows: int, columns: int = 10) -> bytes:
    frame = np.random.default_rng(0).normal(size=(rows, columns))
    header = ",".join(f"f{i}" for i in range(columns))
    lines = "\n".join(",".join(f"{v:.6f}" for v in row) for row in frame)
    return (header + "\n" + lines + "\n").encode()


def test_a_dataset_past_the_memory_cap_ends_failed_and_the_profiler_does_not_grow(
        api, project, settings, reader_peaks):
    """Within every limit but costlier to read than the reader may grow: the child that
    reads it runs out of memory, the process that asked carries on."""
    settings.MODELGATE_DATASET_MEMORY_MB = 16
    resident = resident_bytes()
    # Ten million integers: 21 MB of CSV, 80 MB as a frame, more while pandas parses it.
    costly = b"f0,f1,f2,f3,f4,f5,f6,f7,f8,f9\n" + b"1,2,3,4,5,6,7,8,9,10\n" * 1_000_000
    response = upload(api, project, "costly", costly, "costly.csv")
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert dataset.profile_status == "failed"
    assert dataset.profile_reason == ("reading the dataset needed more than 16 MiB of memory "
                                      "(MODELGATE_DATASET_MEMORY_MB)")
    assert resident_bytes() - resident < 64 * MiB
    settings.MODELGATE_DATASET_MEMORY_MB = 1536
    again = upload(api, project, "costly-again", costly[:-21], "again.csv")
    assert Dataset.objects.get(pk=again.json()["id"]).profile_status == "ready"


def test_a_dataset_past_the_profiling_deadline_ends_failed(api, project, settings):
    settings.MODELGATE_DATASET_PROFILE_SECONDS = 0.05
    response = upload(api, project, "slow", numeric_csv(300_000), "slow.csv")
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert dataset.profile_status == "failed"
    assert dataset.profile_reason == ("reading and profiling the dataset took longer than "
                                      "0.05 s (MODELGATE_DATASET_PROFILE_SECONDS)")


def test_a_dataset_that_failed_profiling_is_not_read_again_by_other_tasks(
        api, users, project, clf):
    response = upload(api, project, "wide", wide_csv(5_000), "wide.csv")
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert dataset.profile_status == "failed"
    version = api("contributor").upload(clf.pk, random_classifier_bytes(1),
                                        metadata(dataset=dataset.pk)).json()
    version = ModelVersion.objects.get(pk=version["id"])
    from ops.exceptions import DatasetError

    with pytest.raises(DatasetError) as info:
        registry.reference_inputs(version)
    assert info.value.code == "dataset_failed"
    assert "at most 2,000 are allowed" in info.value.detail


# -- time limits ---------------------------------------------------------------------------

OBJECT_TASKS = {"workers.registry.validate_version", "workers.registry.profile_dataset",
                "workers.registry.evaluate_version",
                "workers.registry.explain_version", "workers.registry.explain_instances",
                "workers.registry.import_mlflow_version",
                "workers.releases.compute_release_diff"}


def test_every_task_has_a_soft_and_a_hard_time_limit_under_the_redelivery_timeout(settings):
    import importlib

    for module in app.conf.imports:  # what a worker imports: every task module
        importlib.import_module(module)
    tasks = {name: task for name, task in app.tasks.items() if name.startswith("workers.")}
    assert len(tasks) == 25, sorted(tasks)
    redelivery = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 600)
    limits = {}
    for name, task in tasks.items():
        soft = task.soft_time_limit or app.conf.task_soft_time_limit
        hard = task.time_limit or app.conf.task_time_limit
        limits[name] = (soft, hard)
        assert soft and hard and soft < hard < redelivery, (name, soft, hard)
    assert limits["workers.releases.advance_deployment"][0] < app.conf.task_soft_time_limit
    assert limits["workers.registry.explain_version"][0] > app.conf.task_soft_time_limit
    assert limits["workers.releases.compute_release_diff"][0] > app.conf.task_soft_time_limit
    for name in OBJECT_TASKS:  # a task working on one object records its time running out
        assert tasks[name].on_time_limit, name


@pytest.fixture
def ready_version(api, clf):
    response = api("contributor").upload(clf.pk, random_classifier_bytes(3), metadata())
    version = ModelVersion.objects.get(pk=response.json()["id"])  # validated after commit
    assert version.status == "ready", version.status_reason
    return version


def test_a_soft_time_limit_marks_the_dataset_failed_not_pending(api, project, monkeypatch,
                                                                task_queue):
    from workers import registry as tasks

    task_queue.hold()  # no profile on upload
    response = upload(api, project, "small", b"a,b\n1,2\n", "small.csv")
    dataset_id = response.json()["id"]

    def too_slow(dataset_id):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(registry, "profile_dataset", too_slow)
    # as a worker runs it (throw=False: the test settings propagate errors of eager tasks
    # before Celery's failure handling)
    result = tasks.profile_dataset.apply(args=[dataset_id], throw=False)
    assert isinstance(result.result, SoftTimeLimitExceeded)
    dataset = Dataset.objects.get(pk=dataset_id)
    assert (dataset.profile_status, dataset.profile_reason) == (
        "failed", f"profiling took longer than {app.conf.task_soft_time_limit:g} s")


def test_time_limits_mark_validations_explanations_and_diffs_failed(
        api, clf, monkeypatch, ready_version, production, task_queue):
    """A hard limit is met in the worker's main process, a soft one in the task: both
    leave the object failed with the reason (a pending one would be requeued for ever)."""
    from portal.registry.models import Explanation
    from portal.releases.models import ApprovalRequest
    from workers import registry as tasks
    from workers import releases as release_tasks

    task_queue.hold()  # stays pending
    pending = api("contributor").upload(clf.pk, random_classifier_bytes(4), metadata()).json()
    tasks.validate_version.on_failure(TimeLimitExceeded(360), "id", (pending["id"],), {}, None)
    version = ModelVersion.objects.get(pk=pending["id"])
    assert (version.status, version.status_reason) == (
        "invalid", "timed_out: validation took longer than 360 s and was stopped")

    Explanation.objects.create(version=ready_version)
    tasks.explain_version.on_failure(SoftTimeLimitExceeded(), "id", (ready_version.pk,), {},
                                     None)
    explanation = Explanation.objects.get(version=ready_version)
    assert (explanation.status, explanation.reason) == (
        "failed", "the explanation took longer than 540 s")

    request = api("contributor").post("/api/v1/approval-requests/", {
        "version": ready_version.pk, "environment": production["id"],
        "strategy": "direct"}, format="json").json()
    release_tasks.compute_release_diff.on_failure(SoftTimeLimitExceeded(), "id",
                                                  (request["id"],), {}, None)
    assert ApprovalRequest.objects.get(pk=request["id"]).release_diff == {
        "status": "failed", "reason": "the release diff took longer than 540 s"}


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_stops_a_profile_at_its_soft_limit_and_records_it(
        users, project, start_worker, tmp_path, task_queue):  # noqa: F811
    """Prefork, as deployed: the pool signals the child at the soft limit, the child kills
    the reader it forked and marks the dataset failed; the worker goes on."""
    from workers import registry as tasks

    worker = start_worker(pool="prefork", concurrency=1)
    # task_queue comes after start_worker (its broker fixture queues through the broker):
    # the upload queues nothing, the test sends the profile itself.
    task_queue.hold()
    dataset = registry.upload_dataset(users["contributor"], project, name="slow",
                                      file=io.BytesIO(numeric_csv(1_000_000)),
                                      filename="slow.csv")
    tasks.profile_dataset.apply_async(args=[dataset.pk], soft_time_limit=0.5, time_limit=30)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        dataset.refresh_from_db()
        if dataset.profile_status != "pending":
            break
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        time.sleep(0.3)
    log = (tmp_path / "worker.log").read_text()
    assert (dataset.profile_status, dataset.profile_reason) == (
        "failed", "profiling took longer than 0.5 s"), log[-3000:]
    assert worker.poll() is None
    # the reader the child forked was killed with it, not left running
    time.sleep(0.5)
    readers = [p for p in Path("/proc").iterdir() if p.name.isdigit()
               and _parent(p.name) in _descendants(worker.pid)
               and _parent(p.name) != worker.pid]
    assert readers == [], readers


def _parent(pid: str) -> int:
    try:
        return int((Path("/proc") / pid / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def _descendants(root: int) -> set[int]:
    found, todo = set(), [root]
    pids = [p.name for p in Path("/proc").iterdir() if p.name.isdigit()]
    while todo:
        pid = todo.pop()
        found.add(pid)
        todo += [int(p) for p in pids if _parent(p) == pid and int(p) not in found]
    return found


# -- worker start-up on a busy machine ---------------------------------------------------------

@pytest.mark.exclusive  # it keeps both cores busy itself: no other test beside it
@pytest.mark.django_db(transaction=True)
def test_pool_children_come_up_within_celerys_default_limit_on_a_busy_machine(
        start_worker, tmp_path):  # noqa: F811
    """Before: children importing pandas and scikit-learn took longer than the 4 s Celery
    allows a child to come up when the machine was busy, and were killed again and again.
    Now the imports happen once in the main process before it forks; with both cores kept
    busy and Celery's own 4 s limit, both children come up and run tasks."""
    from workers.releases import expire_requests

    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        folder = tmp_path / "metrics"
        folder.mkdir()
        worker = start_worker(pool="prefork", concurrency=2, MODELGATE_WORKER_START_SECONDS="4",
                              PROMETHEUS_MULTIPROC_DIR=str(folder))
        started = time.monotonic()
        log_path = tmp_path / "worker.log"
        while "ready." not in log_path.read_text() and time.monotonic() - started < 120:
            assert worker.poll() is None, log_path.read_text()
            time.sleep(0.2)
        ready_after = time.monotonic() - started
        writers = set()
        deadline = time.monotonic() + 90
        while len(writers) < 2 and time.monotonic() < deadline:
            for result in [expire_requests.delay() for _ in range(10)]:
                result.get(timeout=60)
            writers = {f.name.split("_")[-1] for f in folder.glob("*.db")}
        time.sleep(5)  # long enough for any child killed at start-up to have been replaced
    finally:
        for process in busy:
            process.kill()
            process.wait()
    log = log_path.read_text()
    assert "Timed out waiting for UP message" not in log, log[-3000:]
    assert "Process 'ForkPoolWorker" not in log, log[-3000:]  # no child died
    assert len(writers) >= 2, (writers, ready_after, log[-2000:])
    assert worker.poll() is None


# -- rollouts ---------------------------------------------------------------------------------

@pytest.fixture
def production(api, project):
    response = api("owner").post("/api/v1/environments/", {
        "project": project.pk, "name": "production"}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


@pytest.mark.parametrize(("params", "words"), [
    ({"check_interval_seconds": 0.001},
     "check_interval_seconds must be between 5 and 300, not 0.001"),
    ({"check_interval_seconds": 1}, "check_interval_seconds must be between 5 and 300"),
    ({"steps": [{"weight": (i + 1) / 50, "bake_seconds": 60} for i in range(50)]},
     "a canary has at most 20 steps, not 50"),
    ({"steps": [{"weight": 0.5, "bake_seconds": 0.001}, {"weight": 1.0, "bake_seconds": 60}]},
     "step 1 bakes 0.001 s, less than the 30 s one analysis reads"),
    ({"check_interval_seconds": 5, "steps": [{"weight": 0.5, "bake_seconds": 0},
                                             {"weight": 1.0, "bake_seconds": 5}]},
     "step 1 bakes 0 s, less than the 30 s one analysis reads (one check interval, at least "
     "30 s)"),
    ({"max_inconclusive_checks": 10_000_000}, "max_inconclusive_checks is at most 1000"),
    ({"failure_limit": 10_000}, "failure_limit is at most 100"),
])
def test_a_rollout_that_would_check_too_often_or_too_much_is_refused_when_requested(
        api, settings, ready_version, production, params, words):
    """Before: a canary with check_interval_seconds 0.001 queued about twenty decisions a
    second until it was rolled back."""
    from portal.releases.models import ApprovalRequest

    settings.MODELGATE_ROLLOUT_MIN_CHECK_SECONDS = 5  # the production defaults
    settings.MODELGATE_ROLLOUT_MIN_BAKE_SECONDS = 30
    response = api("contributor").post("/api/v1/approval-requests/", {
        "version": ready_version.pk, "environment": production["id"], "strategy": "canary",
        "strategy_params": params}, format="json")
    assert response.status_code == 400, response.json()
    assert response.json()["field"] == "strategy_params"
    assert response.json()["code"] == "invalid_strategy_params"
    assert words in response.json()["detail"]
    assert not ApprovalRequest.objects.exists()


def test_a_rollout_within_the_limits_is_accepted(api, settings, ready_version, production,
                                                 task_queue):
    task_queue.hold("workers.releases.start_deployment")
    settings.MODELGATE_ROLLOUT_MIN_CHECK_SECONDS = 5
    settings.MODELGATE_ROLLOUT_MIN_BAKE_SECONDS = 30
    response = api("contributor").post("/api/v1/approval-requests/", {
        "version": ready_version.pk, "environment": production["id"], "strategy": "canary",
        "strategy_params": {"check_interval_seconds": 5, "steps": [
            {"weight": 0.5, "bake_seconds": 30}, {"weight": 1.0, "bake_seconds": 30}]}},
        format="json")
    assert response.status_code == 201, response.json()


# -- slow request bodies ---------------------------------------------------------------------

def slow_upload(port: int, token: str, stop: threading.Event, answers: list) -> None:
    """A dataset upload whose body trickles in, 10 bytes every 2 s."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /api/v1/datasets/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         + f"Authorization: Token {token}\r\n".encode()
                         + b"Content-Type: multipart/form-data; boundary=slow\r\n"
                         + b"Content-Length: 100000\r\n\r\n")
            sock.settimeout(0.05)
            while not stop.is_set():
                sock.sendall(b"x" * 10)
                try:
                    answer = sock.recv(100)
                except TimeoutError:
                    answer = None
                if answer is not None:
                    answers.append((time.monotonic(), answer.split(b"\r\n", 1)[0]))
                    return
                stop.wait(2)
    except OSError as e:
        answers.append((time.monotonic(), repr(e).encode()))


def start_gunicorn(tmp_path, port: int, **env) -> subprocess.Popen:
    environment = dict(os.environ, DATABASE_URL=_database_url(), DJANGO_DEBUG="false",
                       CELERY_TASK_ALWAYS_EAGER="false", MODELGATE_DATA_DIR=str(tmp_path),
                       MODELGATE_LOG_LEVEL="WARNING", **env)
    log = open(tmp_path / "gunicorn.log", "ab")  # noqa: SIM115 - closed with the process
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "gunicorn"), "-c", "python:portal.gunicorn_conf",
         "portal.wsgi", "-b", f"127.0.0.1:{port}"], cwd=ROOT, env=environment, stdout=log,
        stderr=subprocess.STDOUT)
    wait_answering(f"http://127.0.0.1:{port}", process, tmp_path / "gunicorn.log")
    return process


def wait_answering(base: str, process, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()[-3000:]
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            time.sleep(0.3)
    raise AssertionError(f"{base} did not answer: {log.read_text()[-3000:]}")


def health_probes(base: str, seconds: float) -> list[float | None]:
    """/healthz every 0.5 s, each on a new connection with a 3 s timeout (kubelet's)."""
    results = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        at = time.monotonic()
        try:
            ok = requests.get(f"{base}/healthz", timeout=3,
                              headers={"Connection": "close"}).status_code == 200
            results.append(time.monotonic() - at if ok else None)
        except requests.RequestException:
            results.append(None)
        time.sleep(max(0.0, 0.5 - (time.monotonic() - at)))
    return results


@pytest.fixture
def token(users):
    from portal.accounts.services import create_token

    return create_token(users["contributor"], "slow", scopes=["read", "write"])[1]


@pytest.mark.django_db(transaction=True)
def test_gunicorn_alone_answers_a_body_that_trickles_past_its_deadline(tmp_path, token):
    port = free_port()
    server = start_gunicorn(tmp_path, port, MODELGATE_BODY_TIMEOUT_SECONDS="3")
    stop, answers = threading.Event(), []
    try:
        started = time.monotonic()
        sender = threading.Thread(target=slow_upload, args=(port, token, stop, answers))
        sender.start()
        sender.join(timeout=20)
    finally:
        stop.set()
        server.terminate()
        server.wait(timeout=20)
    assert answers, (tmp_path / "gunicorn.log").read_text()[-3000:]
    at, status_line = answers[0]
    assert status_line.startswith(b"HTTP/1.1 400"), status_line
    assert 2.5 < at - started < 10


@pytest.mark.django_db(transaction=True)
def test_behind_the_shipped_proxy_twelve_slow_bodies_do_not_stop_healthz(tmp_path, token):
    """Before: twelve slow bodies made /healthz time out for their whole 40 s. nginx (the
    web pod's proxy, deploy/kubernetes/nginx.conf) reads bodies itself and gives gunicorn
    only whole requests: /healthz answers every probe while they trickle."""
    import shutil

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else None)
    if nginx is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light; .ci/run does)")
    upstream, port = free_port(), free_port()
    server = start_gunicorn(tmp_path, upstream, MODELGATE_BODY_TIMEOUT_SECONDS="0")
    folder = tmp_path / "nginx"
    folder.mkdir()
    tmp_path.chmod(0o755)
    folder.chmod(0o755)
    text = (ROOT / "deploy" / "kubernetes" / "nginx.conf").read_text()
    text = (text.replace("listen 8080 ", f"listen 127.0.0.1:{port} ")
            .replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream};")
            .replace("/tmp/", f"{folder}/"))
    (folder / "nginx.conf").write_text(text)
    proxy = subprocess.Popen([nginx, "-c", str(folder / "nginx.conf"), "-p", f"{folder}/",
                              "-e", "stderr", "-g", "daemon off;"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stop, answers = threading.Event(), []
    try:
        wait_answering(f"http://127.0.0.1:{port}", proxy, tmp_path / "gunicorn.log")
        senders = [threading.Thread(target=slow_upload, args=(port, token, stop, answers))
                   for _ in range(12)]
        for sender in senders:
            sender.start()
        time.sleep(1)
        probes = health_probes(f"http://127.0.0.1:{port}", 8)
    finally:
        stop.set()
        proxy.terminate()
        proxy.wait(timeout=10)
        server.terminate()
        server.wait(timeout=20)
    assert None not in probes, probes
    assert max(probes) < 1.0, probes
    assert answers == []  # the bodies were still trickling, held by nginx alone
