"""Latency and query-count benchmark of the registry's read API on a realistically sized
PostgreSQL database.

What it does
  1. (Re)creates its own database ``modelgate_bench`` on 127.0.0.1:5432 (user postgres) and
     migrates it in a subprocess (``manage.py migrate``).
  2. Seeds it with bulk inserts (bulk_create and COPY; no service functions, no artifact
     files): 10 projects, 3 reference datasets per project with a real-sized baseline
     profile, 1,000 registered models, 100,000 model versions (100 per model, created over
     ~2 years and numbered in creation order as a live table would be; mostly ready, some
     pending/invalid; with parents, datasets, labels, metrics and tags from common to rare),
     a champion alias on every model and a challenger on some. A ``bench-viewer`` user is a
     viewer in 8 of the 10 projects and gets an API token. The database is then
     VACUUM ANALYZEd, as autovacuum would have done on a live one. Takes ~10 s.
  3. Starts gunicorn with the portal's own configuration (portal/gunicorn_conf.py:
     its processes and threads, GC frozen after start-up), DEBUG off, with MODELGATE_QUERY_COUNT_HEADER
     so every response carries ``X-Query-Count``, and waits for /healthz.
  4. Times, over real HTTP with ``Authorization: Token ...``, sequential requests (after a
     warm-up) to the version and model list endpoints, with random filters drawn from what
     the viewer may see, and the version list at page_size=10 and page_size=100.
  5. Prints, per endpoint: p50 and p95 latency (client side, to the last byte), min/max SQL
     queries per request and mean rows per page, with PASS/FAIL against p95 < 50 ms and a
     query count that does not vary (and is the same at page_size 10 and 100: no N+1).
  6. MLflow's registry server, side by side (``--skip-mlflow`` leaves it out): MLflow is
     installed in a throwaway virtualenv (benchmarks/baseline_venv.py, shared with
     serving.py), gets its own database ``mlflow_bench``, whose schema MLflow's own
     migrations create (``mlflow db upgrade``); the bench registry's models, versions,
     version tags and aliases are then copied into MLflow's tables with COPY (names,
     numbers, times, descriptions, authors, artifact URIs, statuses mapped to MLflow's).
     The server is started as MLflow's documentation says (``mlflow server
     --backend-store-uri postgresql://...``, its defaults otherwise) and both are timed
     by the same client, in interleaved passes (``--passes``, ``--compare-requests`` each),
     on the lists both have: one model's versions (the same model for both) at 50 and 100
     rows, and models at 50 and 100 rows. PASS when Modelgate's p95 is at most 0.6x
     MLflow's on every one (and its queries per request stay constant).
     Then stops both servers and drops both databases (unless --keep).

Run from the repository root:
    .venv/bin/python benchmarks/registry_api.py [--requests 200] [--passes 3]
        [--compare-requests 100] [--skip-mlflow] [--keep] [--seed 1]

Exit status is 0 when every check passes, 1 otherwise.

Reading the numbers: latency is wall time on whatever else the host is running, so the
load average is printed with the table; compare runs on a quiet host. A token's
``last_used_at`` is written at most once a minute (portal.accounts.services), so now and
then a request costs one extra UPDATE; the table notes those instead of calling them a
varying query count. Prefetch queries are skipped by Django when nothing on a page needs
them (e.g. no version on it has a parent), which can lower the count on unusual pages.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import baseline_venv
import psycopg
import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
DB_NAME = "modelgate_bench"
DATABASE_URL = f"{PG_SERVER}/{DB_NAME}"

N_PROJECTS = 10
N_VISIBLE_PROJECTS = 8  # the benchmark user is a viewer in these, not in the others
N_MODELS = 1_000
VERSIONS_PER_MODEL = 100
DATASETS_PER_PROJECT = 3
DATASET_NUMERIC_COLUMNS = 20  # reference datasets carry a baseline profile of every column
DATASET_CATEGORICAL_COLUMNS = 3
# Tag -> share of versions carrying it: common, middling and rare filters.
TAGS = {"nightly": 0.30, "gpu": 0.15, "experiment": 0.20, "retrained": 0.10,
        "baseline": 0.05, "prod-candidate": 0.03, "hotfix": 0.01}
FEATURES = [f"feature_{i}" for i in range(8)]

P95_TARGET_MS = 50.0
WARMUP_REQUESTS = 20

MLFLOW_DB = "mlflow_bench"
MLFLOW_STORE = f"postgresql://postgres@127.0.0.1:5432/{MLFLOW_DB}"
RATIO_TARGET = 0.6  # Modelgate's p95 against MLflow's, on every list both have
MLFLOW_STATUS = {"ready": "READY", "pending": "PENDING_REGISTRATION",
                 "invalid": "FAILED_REGISTRATION"}


# Database --------------------------------------------------------------------------------

def recreate_database() -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def drop_database(name: str = DB_NAME) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def bench_env(data_dir: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DATABASE_URL": DATABASE_URL,
        "MODELGATE_DATA_DIR": data_dir,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DJANGO_DEBUG": "false",
        "MODELGATE_LOG_LEVEL": "WARNING",
    })
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run([str(PYTHON), "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True)


# Seeding ---------------------------------------------------------------------------------

@dataclass
class Seeded:
    token: str
    visible_projects: list[int]
    visible_models: list[int]
    counts: dict[str, int] = field(default_factory=dict)
    model_names: dict[int, str] = field(default_factory=dict)


def copy_rows(cursor, table: str, columns: list[str], rows) -> None:
    """COPY ``rows`` (tuples in ``columns`` order) into ``table``: far faster than INSERTs."""
    sql = f'COPY "{table}" ({", ".join(columns)}) FROM STDIN'
    with cursor.copy(sql) as copy:
        for row in rows:
            copy.write_row(row)


def dataset_profile(rng: random.Random) -> tuple[list[dict], dict]:
    """Column schema and baseline profile of a random reference dataset, computed the way
    the profiling task does it (so the JSON stored per dataset has its real size)."""
    import numpy as np
    import pandas as pd

    from ops.profile import column_schema, profile_frame

    gen = np.random.default_rng(rng.getrandbits(32))
    rows = 2_000
    frame = pd.DataFrame({f"num_{i}": gen.normal(rng.uniform(-5, 5), 2, rows)
                          for i in range(DATASET_NUMERIC_COLUMNS)})
    for i in range(DATASET_CATEGORICAL_COLUMNS):
        frame[f"cat_{i}"] = gen.choice([f"value-{k}" for k in range(60)], rows)
    frame["label"] = gen.integers(0, 2, rows)
    return column_schema(frame), profile_frame(frame)


def seed(rng: random.Random) -> Seeded:
    """Fill the (migrated, empty) bench database. Needs django.setup() done."""
    import json

    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection, transaction
    from django.utils import timezone

    from portal.accounts.choices import Role
    from portal.accounts.models import Membership
    from portal.accounts.services import create_token
    from portal.registry.models import (
        Alias,
        Dataset,
        ModelVersion,
        Project,
        RegisteredModel,
        VersionTag,
    )

    User = get_user_model()
    now = timezone.now()
    start = now - timedelta(days=730)
    schema = json.dumps([{"name": f, "type": "double"} for f in FEATURES])

    with transaction.atomic():
        owner = User.objects.create_user("bench-owner", password=None)
        viewer = User.objects.create_user("bench-viewer", password=None)
        projects = Project.objects.bulk_create([
            Project(name=f"Bench project {i:02d}", slug=f"bench-{i:02d}", created_by=owner,
                    description=f"Benchmark project number {i}")
            for i in range(N_PROJECTS)
        ])
        Membership.objects.bulk_create(
            [Membership(project=p, user=owner, role=Role.OWNER) for p in projects]
            + [Membership(project=p, user=viewer, role=Role.VIEWER)
               for p in projects[:N_VISIBLE_PROJECTS]])
        datasets = Dataset.objects.bulk_create([
            Dataset(project=p, name=f"training-{j}", uri=f"file:///datasets/{p.slug}/{j}.csv",
                    sha256=hashlib.sha256(f"{p.slug}/{j}".encode()).hexdigest(),
                    size=rng.randint(10_000, 50_000_000), format="csv", target="label",
                    rows=profile["rows"], columns=columns, profile=profile,
                    profile_status="ready", created_by=owner)
            for p in projects for j in range(DATASETS_PER_PROJECT)
            for columns, profile in [dataset_profile(rng)]
        ])
        datasets_of = {p.pk: [d.pk for d in datasets if d.project_id == p.pk] for p in projects}
        models = RegisteredModel.objects.bulk_create([
            RegisteredModel(project=projects[i % N_PROJECTS], name=f"model-{i:04d}",
                            task=rng.choice(["classification", "regression"]),
                            description=f"Benchmark model {i}", created_by=owner)
            for i in range(N_MODELS)
        ], batch_size=1000)

        # Versions: drawn model by model, then numbered (id) in creation order, as a live
        # registry fills its table; explicit ids let parent_id, tags and aliases refer to them.
        drafts = []  # (created_at, model, number, status, has_parent, tag names)
        for m in models:
            t = start + timedelta(days=rng.uniform(0, 300))
            for number in range(1, VERSIONS_PER_MODEL + 1):
                t += timedelta(hours=rng.uniform(12, 96))
                drafts.append((t, m, number,
                               rng.choices(["ready", "pending", "invalid"], [90, 5, 5])[0],
                               number > 1 and rng.random() < 0.6,
                               [name for name, share in TAGS.items() if rng.random() < share]))
        drafts.sort(key=lambda d: d[0])
        id_of = {(d[1].pk, d[2]): i for i, d in enumerate(drafts, start=1)}

        version_cols = ["id", "model_id", "number", "label", "description", "status",
                        "status_reason", "artifact_uri", "artifact_sha256", "artifact_size",
                        "artifact_format", "framework", "estimator", "classes",
                        "input_schema", "output_schema", "metrics", "params", "dataset_id",
                        "code_repository", "code_commit", "parent_id", "created_at",
                        "created_by_id", "validated_at", "converted_uri", "converted_sha256",
                        "schema_source"]
        versions, tags = [], []
        ready_of = {m.pk: [] for m in models}  # ready version ids per model, oldest first
        for pk, (t, m, number, status, has_parent, tag_names) in enumerate(drafts, start=1):
            sha = hashlib.sha256(f"{m.pk}/{number}".encode()).hexdigest()
            classification = m.task == "classification"
            versions.append((
                pk, m.pk, number,
                f"1.{number // 10}.0" if number % 10 == 0 else "",
                f"Retrained on the data of week {number}",
                status,
                "input_schema does not match the estimator" if status == "invalid" else "",
                f"file:///artifacts/{sha[:2]}/{sha}.skops", sha,
                rng.randint(50_000, 20_000_000), "skops",
                "scikit-learn 1.6.1" if status == "ready" else "",
                "sklearn.pipeline.Pipeline" if status == "ready" else "",
                "[0, 1]" if classification and status == "ready" else "[]",
                schema, "{}",
                json.dumps({"roc_auc": round(rng.uniform(0.7, 0.99), 4),
                            "accuracy": round(rng.uniform(0.6, 0.97), 4)}
                           if classification else
                           {"rmse": round(rng.uniform(0.1, 5), 4),
                            "r2": round(rng.uniform(0.3, 0.95), 4)}),
                json.dumps({"C": rng.choice([0.1, 1.0, 10.0]),
                            "max_iter": rng.choice([100, 500])}),
                rng.choice(datasets_of[m.project_id]) if rng.random() < 0.4 else None,
                "https://git.example.com/ml/bench", hashlib.sha1(sha.encode()).hexdigest(),
                id_of[(m.pk, number - 1)] if has_parent else None,
                t, owner.pk,
                t + timedelta(seconds=30) if status != "pending" else None,
                "", "", "declared",
            ))
            tags.extend((pk, name) for name in tag_names)
            if status == "ready":
                ready_of[m.pk].append(pk)
        aliases = []
        for m in models:
            aliases.append(Alias(model=m, name="champion", version_id=ready_of[m.pk][-1],
                                 updated_by=owner))
            if rng.random() < 0.3:
                aliases.append(Alias(model=m, name="challenger",
                                     version_id=ready_of[m.pk][-2], updated_by=owner))

        with connection.cursor() as cursor:
            copy_rows(cursor.cursor, ModelVersion._meta.db_table, version_cols, versions)
            copy_rows(cursor.cursor, VersionTag._meta.db_table, ["version_id", "name"], tags)
            for sql in connection.ops.sequence_reset_sql(no_style(), [ModelVersion]):
                cursor.execute(sql)
        Alias.objects.bulk_create(aliases, batch_size=2000)
        _, key = create_token(viewer, "benchmark")

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")

    visible = [p.pk for p in projects[:N_VISIBLE_PROJECTS]]
    return Seeded(
        token=key,
        visible_projects=visible,
        visible_models=[m.pk for m in models if m.project_id in visible],
        model_names={m.pk: m.name for m in models},
        counts={"projects": len(projects), "models": len(models), "versions": len(versions),
                "tags": len(tags), "aliases": len(aliases), "datasets": len(datasets)},
    )


# MLflow's registry -----------------------------------------------------------------------

def ms(t) -> int:
    return int(t.timestamp() * 1000)


def build_mlflow(python: Path) -> dict[str, int]:
    """MLflow's database with the bench registry in it: the schema by MLflow's migrations,
    the rows copied from ``modelgate_bench`` (which must be seeded)."""
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{MLFLOW_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{MLFLOW_DB}"')
    subprocess.run([str(python.parent / "mlflow"), "db", "upgrade", MLFLOW_STORE],
                   env={**os.environ, **baseline_venv.ENV}, check=True, capture_output=True)
    with psycopg.connect(DATABASE_URL) as source:
        models = source.execute(
            "SELECT m.name, m.created_at, m.description FROM registry_registeredmodel m"
        ).fetchall()
        versions = source.execute(
            "SELECT m.name, v.number, v.created_at, COALESCE(v.validated_at, v.created_at), "
            "v.description, u.username, v.artifact_uri, v.status, v.status_reason "
            "FROM registry_modelversion v JOIN registry_registeredmodel m ON m.id = v.model_id "
            "LEFT JOIN auth_user u ON u.id = v.created_by_id").fetchall()
        tags = source.execute(
            "SELECT t.name, m.name, v.number FROM registry_versiontag t "
            "JOIN registry_modelversion v ON v.id = t.version_id "
            "JOIN registry_registeredmodel m ON m.id = v.model_id").fetchall()
        aliases = source.execute(
            "SELECT a.name, v.number, m.name FROM registry_alias a "
            "JOIN registry_modelversion v ON v.id = a.version_id "
            "JOIN registry_registeredmodel m ON m.id = a.model_id").fetchall()
    with psycopg.connect(MLFLOW_STORE) as target, target.cursor() as cursor:
        copy_rows(cursor, "registered_models",
                  ["name", "creation_time", "last_updated_time", "description"],
                  ((name, ms(t), ms(t), description) for name, t, description in models))
        copy_rows(cursor, "model_versions",
                  ["name", "version", "creation_time", "last_updated_time", "description",
                   "user_id", "current_stage", "source", "run_id", "status", "status_message",
                   "run_link", "storage_location"],
                  ((name, number, ms(created), ms(updated), description, user, "None", uri,
                    None, MLFLOW_STATUS[status], reason, None, uri)
                   for name, number, created, updated, description, user, uri, status, reason
                   in versions))
        copy_rows(cursor, "model_version_tags", ["key", "value", "name", "version"],
                  ((key, "", name, number) for key, name, number in tags))
        copy_rows(cursor, "registered_model_aliases", ["alias", "version", "name"], aliases)
        target.commit()
    with psycopg.connect(MLFLOW_STORE, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
    return {"models": len(models), "versions": len(versions), "tags": len(tags),
            "aliases": len(aliases)}


def start_mlflow(python: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``mlflow server --backend-store-uri postgresql://...`` with its defaults (uvicorn, four
    workers), in its own session so its workers stop with it."""
    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(python.parent / "mlflow"), "server", "--backend-store-uri", MLFLOW_STORE,
         "--host", "127.0.0.1", "--port", str(port)],
        env={**os.environ, **baseline_venv.ENV}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True, cwd=log_path.parent)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600  # four workers import MLflow: minutes on a busy host
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {proc.returncode}:\n"
                               + log_path.read_text(errors="replace")[-3000:])
        try:
            if requests.get(f"{base}/health", timeout=5).status_code == 200:
                return proc, base
        except requests.RequestException:
            pass  # not listening yet
        time.sleep(0.5)
    stop_group(proc)
    raise RuntimeError("mlflow server did not answer /health within 600 s")


def stop_group(proc: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its children (MLflow's workers)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# Server ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server_env = dict(env, MODELGATE_QUERY_COUNT_HEADER="true", DJANGO_DEBUG="false")
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(
        [str(GUNICORN), "-c", "python:portal.gunicorn_conf", "portal.wsgi",
         "-b", f"127.0.0.1:{port}", "--access-logfile", "/dev/null"],
        cwd=ROOT, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # workers import numpy, pandas, sklearn first
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {proc.returncode}:\n"
                                   + log_path.read_text(errors="replace")[-3000:])
            try:
                if requests.get(f"{base}/healthz", timeout=5).status_code == 200:
                    return proc, base
            except requests.RequestException:
                pass  # not listening yet, or the workers are still booting
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /healthz within 300 s")
    except BaseException:
        stop_server(proc)
        raise


def stop_server(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Measuring -------------------------------------------------------------------------------

@dataclass
class Result:
    name: str
    times_ms: list[float] = field(default_factory=list)
    queries: list[int] = field(default_factory=list)
    rows: list[int] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the timed requests

    @property
    def p50(self) -> float:
        return statistics.median(self.times_ms)

    @property
    def p95(self) -> float:
        return statistics.quantiles(self.times_ms, n=100, method="inclusive")[94]

    @property
    def token_writes(self) -> int:
        """Requests whose one extra query is the token's last_used_at UPDATE: at most one
        per started minute of measuring (LAST_USED_RESOLUTION), each exactly base + 1."""
        base = min(self.queries)
        extra = sum(1 for q in self.queries if q == base + 1)
        return extra if 0 < extra <= int(self.seconds // 60) + 1 else 0

    @property
    def base_queries(self) -> tuple[int, int]:
        """min/max queries per request with the token writes set aside."""
        base = min(self.queries)
        rest = [q for q in self.queries if not (self.token_writes and q == base + 1)]
        return min(rest), max(rest)

    @property
    def constant_queries(self) -> bool:
        low, high = self.base_queries
        return low == high


def fetch(session: requests.Session, url: str, rows_key: str = "results"
          ) -> tuple[float, int, int]:
    """GET ``url``; return (milliseconds to the last byte, X-Query-Count (0 when absent: not
    Modelgate), results on page)."""
    began = time.perf_counter()
    try:
        response = session.get(url, timeout=30)
    except requests.ConnectionError:
        # uvicorn's supervisor restarts a worker that misses its health checks (a busy
        # host), closing its connections: ask again, on a new one, and time that.
        began = time.perf_counter()
        response = session.get(url, timeout=30)
    body = response.content
    elapsed = (time.perf_counter() - began) * 1000
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} -> {response.status_code}: {body[:300]!r}")
    return (elapsed, int(response.headers.get("X-Query-Count", 0)),
            len(response.json().get(rows_key, [])))


def measure(session: requests.Session, base: str, name: str, make_url, n: int,
            rows_key: str = "results", result: Result | None = None) -> Result:
    """Time ``n`` requests after a warm-up, added to ``result`` (a new one if None)."""
    for _ in range(WARMUP_REQUESTS):
        fetch(session, base + make_url(), rows_key)
    result = result or Result(name)
    began = time.monotonic()
    for _ in range(n):
        elapsed, queries, rows = fetch(session, base + make_url(), rows_key)
        result.times_ms.append(elapsed)
        result.queries.append(queries)
        result.rows.append(rows)
    result.seconds += time.monotonic() - began
    return result


def run_benchmark(base: str, data: Seeded, n: int, rng: random.Random) -> list[Result]:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {data.token}"
    session.headers["Accept"] = "application/json"
    tags = list(TAGS)
    endpoints = [
        ("versions ?model=<id>",
         lambda: f"/api/v1/versions/?model={rng.choice(data.visible_models)}"),
        ("versions ?status=ready&tag=<tag>",
         lambda: f"/api/v1/versions/?status=ready&tag={rng.choice(tags)}"),
        ("versions ?project=<id>",
         lambda: f"/api/v1/versions/?project={rng.choice(data.visible_projects)}"),
        ("models", lambda: "/api/v1/models/"),
        ("models ?project=<id>",
         lambda: f"/api/v1/models/?project={rng.choice(data.visible_projects)}"),
        ("models/<id>/versions",
         lambda: f"/api/v1/models/{rng.choice(data.visible_models)}/versions/"),
        ("versions ?page_size=10", lambda: "/api/v1/versions/?page_size=10"),
        ("versions ?page_size=100", lambda: "/api/v1/versions/?page_size=100"),
    ]
    results = []
    for name, make_url in endpoints:
        results.append(measure(session, base, name, make_url, n))
        print(f"  measured {name}", flush=True)
    return results


def replay(urls: list[str]):
    """A ``make_url`` that gives ``urls`` one after the other."""
    remaining = iter(urls)
    return lambda: next(remaining)


def compare_mlflow(base: str, mlflow: str, data: Seeded, n: int, passes: int,
                   rng: random.Random) -> list[tuple[Result, Result]]:
    """(Modelgate, MLflow) results of each list both have, over interleaved passes: within a
    pass each list is timed on one server then the other, and who goes first alternates."""
    session = requests.Session()  # the same client for both; MLflow ignores the token
    session.headers["Authorization"] = f"Token {data.token}"
    session.headers["Accept"] = "application/json"
    lists = []  # (name, the URL of Modelgate's and MLflow's of a model, MLflow's rows key)
    for rows in (50, 100):
        lists.append((f"one model's versions, {rows} rows",
                      lambda pk, rows=rows: f"/api/v1/versions/?model={pk}&page_size={rows}",
                      lambda pk, rows=rows: "/api/2.0/mlflow/model-versions/search?filter="
                      f"name%3D%27{data.model_names[pk]}%27&max_results={rows}",
                      "model_versions"))
    for rows in (50, 100):
        lists.append((f"models, {rows} rows",
                      lambda pk, rows=rows: f"/api/v1/models/?page_size={rows}",
                      lambda pk, rows=rows: "/api/2.0/mlflow/registered-models/search?"
                      f"max_results={rows}", "registered_models"))
    pairs = [(Result(name), Result(name)) for name, *_ in lists]
    for k in range(passes):
        for (_, ours, theirs, key), (mg, ml) in zip(lists, pairs, strict=True):
            # The same filters for both: one draw of models, asked of each server in turn.
            drawn = [rng.choice(data.visible_models) for _ in range(WARMUP_REQUESTS + n)]
            runs = [(base, replay([ours(pk) for pk in drawn]), "results", mg),
                    (mlflow, replay([theirs(pk) for pk in drawn]), key, ml)]
            for server, make_url, rows_key, result in (runs if k % 2 == 0 else runs[::-1]):
                measure(session, server, mg.name, make_url, n, rows_key, result)
        print(f"  compared pass {k + 1}/{passes}", flush=True)
    return pairs


def report_comparison(pairs: list[tuple[Result, Result]], passes: int) -> bool:
    header = (f"{'list':<30} {'Modelgate p50/p95':>18} {'MLflow p50/p95':>16} "
              f"{'p95 ratio':>9} {'queries':>8} {'rows':>8}  result")
    print()
    print(f"Modelgate against MLflow's registry server ({passes} interleaved passes, same "
          "client, same filters)")
    print(header)
    print("-" * len(header))
    ok = True
    for mg, ml in pairs:
        ratio = mg.p95 / ml.p95
        low, high = mg.base_queries
        good = ratio <= RATIO_TARGET and mg.constant_queries
        ok &= good
        print(f"{mg.name:<30} {f'{mg.p50:.1f} / {mg.p95:.1f}':>18} "
              f"{f'{ml.p50:.1f} / {ml.p95:.1f}':>16} {ratio:>8.2f}x {f'{low}/{high}':>8} "
              f"{f'{statistics.mean(mg.rows):.0f}/{statistics.mean(ml.rows):.0f}':>8}  "
              f"{'PASS' if good else 'FAIL'}")
    print(f"target: Modelgate's p95 <= {RATIO_TARGET}x MLflow's on every list, queries per "
          "request constant (rows: Modelgate/MLflow per page)")
    return ok


def report(results: list[Result]) -> bool:
    header = (f"{'endpoint':<34} {'p50 ms':>8} {'p95 ms':>8} {'queries':>9} {'rows':>6}  "
              f"{'p95<50':<6} {'queries':<8}")
    print()
    print(header)
    print("-" * len(header))
    ok = True
    for r in results:
        low, high = min(r.queries), max(r.queries)
        fast = r.p95 < P95_TARGET_MS
        flat = r.constant_queries
        ok &= fast and flat
        note = f"  (+1 on {r.token_writes} req: token last_used_at)" if r.token_writes else ""
        print(f"{r.name:<34} {r.p50:>8.1f} {r.p95:>8.1f} {f'{low}/{high}':>9} "
              f"{statistics.mean(r.rows):>6.0f}  {'PASS' if fast else 'FAIL':<6} "
              f"{'PASS' if flat else 'FAIL':<8}{note}")
    by_name = {r.name: r for r in results}
    small, large = by_name["versions ?page_size=10"], by_name["versions ?page_size=100"]
    same = small.base_queries == large.base_queries and small.constant_queries
    ok &= same
    print()
    print(f"page_size=10 vs page_size=100 queries: {small.base_queries[0]} vs "
          f"{large.base_queries[0]} -> {'PASS' if same else 'FAIL'} (no N+1)")
    print(f"targets: p95 < {P95_TARGET_MS:.0f} ms, queries per request constant "
          f"(min/max shown; rows = mean results per page)")
    load = os.getloadavg()
    print(f"host: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} "
          "(other work on the host inflates the tail)")
    print(f"overall: {'PASS' if ok else 'FAIL'}")
    return ok


# Main ------------------------------------------------------------------------------------

def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="timed requests per endpoint")
    parser.add_argument("--keep", action="store_true", help=f"keep the {DB_NAME} database")
    parser.add_argument("--seed", type=int, default=1, help="random seed for data and requests")
    parser.add_argument("--passes", type=int, default=3,
                        help="interleaved passes of the comparison with MLflow")
    parser.add_argument("--compare-requests", type=int, default=100,
                        help="timed requests per list, server and pass of the comparison")
    parser.add_argument("--skip-mlflow", action="store_true",
                        help="leave MLflow's registry server out")
    args = parser.parse_args()

    rng = random.Random(args.seed)
    data_dir = tempfile.mkdtemp(prefix="modelgate-bench-")
    env = bench_env(data_dir)
    # Django in this process (for seeding) must read the same settings as the server.
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "MODELGATE_DATA_DIR",
                                          "DJANGO_SETTINGS_MODULE", "DJANGO_DEBUG",
                                          "MODELGATE_LOG_LEVEL")})
    sys.path.insert(0, str(ROOT))
    server = mlflow_server = None
    try:
        mlflow_python = None if args.skip_mlflow else baseline_venv.ensure_baseline_venv()
        began = time.perf_counter()
        print(f"creating database {DB_NAME} and migrating ...", flush=True)
        recreate_database()
        migrate(env)
        migrated = time.perf_counter()

        import django

        django.setup()
        print("seeding ...", flush=True)
        data = seed(rng)
        seeded = time.perf_counter()
        from django.db import connections

        connections.close_all()
        print(f"seeded {', '.join(f'{v:,} {k}' for k, v in data.counts.items())} "
              f"in {seeded - migrated:.1f} s (migrate {migrated - began:.1f} s)", flush=True)

        mlflow = None
        if mlflow_python is not None:
            print(f"building MLflow's registry in {MLFLOW_DB} (mlflow db upgrade, COPY) ...",
                  flush=True)
            copied = build_mlflow(mlflow_python)
            print(f"copied {', '.join(f'{v:,} {k}' for k, v in copied.items())} into MLflow's "
                  "tables", flush=True)
            mlflow_server, mlflow = start_mlflow(mlflow_python, Path(data_dir) / "mlflow.log")
            print(f"mlflow server up at {mlflow}", flush=True)

        server, base = start_server(env, Path(data_dir) / "gunicorn.log")
        print(f"gunicorn up at {base}; {WARMUP_REQUESTS} warm-up + {args.requests} timed "
              f"requests per endpoint", flush=True)
        results = run_benchmark(base, data, args.requests, rng)
        pairs = (compare_mlflow(base, mlflow, data, args.compare_requests, args.passes, rng)
                 if mlflow else [])
        ok = report(results)
        if pairs:
            ok &= report_comparison(pairs, args.passes)
        elif not args.skip_mlflow:
            ok = False
            print("MLflow's registry server could not be set up: no comparison (FAIL)")
        print(f"overall, with the comparison: {'PASS' if ok else 'FAIL'}")
        return 0 if ok else 1
    finally:
        if server is not None:
            stop_server(server)
        if mlflow_server is not None:
            stop_group(mlflow_server)
        try:
            from django.db import connections

            connections.close_all()
        except Exception:  # noqa: BLE001 - Django may never have been set up
            pass
        if args.keep:
            print(f"kept database {DB_NAME} ({DATABASE_URL})")
        else:
            drop_database()
            if not args.skip_mlflow:
                drop_database(MLFLOW_DB)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
