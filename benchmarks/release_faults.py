"""Release faults through the whole stack: is every bad candidate caught, no good one rolled back?

Each trial is a real release (issue 14). On the local backend: a throwaway PostgreSQL database
(SQLite when PostgreSQL is not reachable), Redis as the broker under a key prefix of its own,
two real Celery workers (one on the rollout queue, one on the default queue: validation,
profiles, measurements on the evaluation dataset), real model-server processes, a real
Prometheus scraping them every second, and callers in another process posting single rows
to ``/invocations``. Per trial: a new model; its stable version is registered, validated and
measured by the workers and released directly; the candidate of the trial's kind is
registered and requested as a canary (0.2 / 0.5 / 1.0, ``--bake`` seconds each, the shortest
the benchmark's ``MODELGATE_ROLLOUT_MIN_BAKE_SECONDS`` accepts), approved by a second user,
and the outcome awaited: rolled back, succeeded, or refused before any traffic.

Kinds (the models are in this module, so model servers import them from the repository
root; every served model costs ``BASE_SECONDS`` per predict call, a model heavier than a
linear one, so that "three times slower" is a latency the analysis judges, over
``min_p99_seconds``):
  bad:  interface (trained on 3 of the 5 features, no breaking-change flag), 5xx-5pc and
        5xx-2pc (intermittent failures of that share of requests), slow (3x the cost),
        nan-rows (NaN probabilities on rows with a zeroed feature: a sensor dropout the
        held-out data never shows), constant (a decision threshold of 0: one class only,
        its probabilities, and so its ROC AUC, unchanged), crash-on-load (loads where it is
        validated and measured, raises in the model server), worse (trained on inverted
        labels: caught by the environment's ROC AUC gate on the evaluation dataset);
  good: retrained (another seed), faster (a quarter of the cost), better (trained on more
        rows).

Printed per kind: trials, caught, false rollbacks, where it was caught, median seconds from
the first candidate answer to the verdict (refusals before traffic: from the request), and
client requests failed after the verdict (sent after it, any answer but 2xx). Targets: every
bad kind caught in every trial, no false rollback, every verdict within one bake of the
first candidate traffic, nothing failed after a verdict.

``--backend kubernetes`` and ``--backend sagemaker`` run what their emulators allow (kmock,
moto: no model server ever runs, no traffic metric exists) and print what they cannot show.

Run from the repository root (needs Redis on 127.0.0.1:6379 and the prometheus binary):
    .venv/bin/python benchmarks/release_faults.py [--trials 2] [--good-trials 7] [--bake 8]
        [--kinds interface,5xx-5pc,...] [--clients 6] [--backend local|kubernetes|sagemaker]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FEATURES = ["mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness"]
BASE_SECONDS = 0.1  # what every served model costs per predict call
SERVER_INSTANCE_ENV = "MODELGATE_SERVER_INSTANCE"  # set only in model servers (ops.serving.ids)
BAD = ("interface", "5xx-5pc", "5xx-2pc", "slow", "nan-rows", "constant", "crash-on-load",
       "worse")
GOOD = ("retrained", "faster", "better")
REFUSED_BEFORE_TRAFFIC = {"interface", "worse"}


# The models (importable as benchmarks.release_faults.* by model servers and workers) -------

class CostlyClassifier:
    """A fitted scikit-learn pipeline behind a fixed cost per predict call, with one fault.

    ``fault``: "" (none), "errors" (raises on ``share`` of the calls; the model server then
    predicts each request of the batch alone, so about that share of requests answer 500),
    "nan-zero" (NaN probabilities for rows with a zero feature), "threshold-0" (predicts
    the last class whatever the probabilities), "crash-on-load" (raises when a model server
    loads it)."""

    def __init__(self, model, seconds: float = BASE_SECONDS, fault: str = "",
                 share: float = 0.0):
        self.model, self.seconds, self.fault, self.share = model, seconds, fault, share
        self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_

    def __setstate__(self, state):
        if state.get("fault") == "crash-on-load" and os.environ.get(SERVER_INSTANCE_ENV):
            # What a missing native library or a bigger heap than the serving container's
            # does: the artifact loads where it was validated, not where it serves.
            raise RuntimeError("simulated crash while the model server loads the model")
        self.__dict__.update(state)
        self._loaded_at = time.time()

    def predict(self, X):
        if self.fault == "threshold-0":
            return np.full(len(X), self.classes_[-1])
        return self.model.predict(np.asarray(X, dtype=float))

    def _doomed(self, row) -> bool:
        """Whether this row fails now: ``share`` of the rows, drawn again every second, the
        same draw for the row's batch and for its own call when the server retries the
        batch's requests one by one (so about ``share`` of the requests answer 500)."""
        if time.time() - getattr(self, "_loaded_at", 0.0) < 5:
            return False  # the server's probe at load, and the first requests, go through
        draw = zlib.crc32(row.tobytes() + str(int(time.time())).encode())
        return draw / 2**32 < self.share

    def predict_proba(self, X):
        time.sleep(self.seconds)  # the model server calls predict_proba once per batch
        rows = np.asarray(X, dtype=float)
        if self.fault == "errors" and os.environ.get(SERVER_INSTANCE_ENV) and any(
                self._doomed(row) for row in rows):
            raise RuntimeError("simulated intermittent failure")
        proba = self.model.predict_proba(rows)
        if self.fault == "nan-zero":
            proba = proba.copy()
            proba[(rows == 0).any(axis=1)] = np.nan
        return proba


TRUSTED = "benchmarks.release_faults.CostlyClassifier"


def _pipeline(frame, *, rows: int, seed: int, inverted: bool = False, features=FEATURES):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    sample = frame.sample(n=min(rows, len(frame)), random_state=seed)
    labels = sample["target"].to_numpy()
    if inverted:
        labels = 1 - labels
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    return model.fit(sample[list(features)].to_numpy(dtype=float), labels)


def artifact(kind: str, train, seed: int) -> tuple[bytes, list[str]]:
    """The candidate (or, for "stable", the stable) of a kind: skops bytes and its inputs.

    The stable and every candidate but "better" are trained on 120 rows of the training
    half (another sample per seed); "better" on all of it."""
    import benchmarks.release_faults as this  # the class as model servers import it
    from ops.artifacts import dump_skops

    cls, features = this.CostlyClassifier, FEATURES
    options = {"": {}, "stable": {}, "retrained": {}, "better": {},
               "faster": {"seconds": BASE_SECONDS / 4}, "slow": {"seconds": 3 * BASE_SECONDS},
               "5xx-5pc": {"fault": "errors", "share": 0.05},
               "5xx-2pc": {"fault": "errors", "share": 0.02},
               "nan-rows": {"fault": "nan-zero"}, "constant": {"fault": "threshold-0"},
               "crash-on-load": {"fault": "crash-on-load"}, "worse": {}, "interface": {}}
    if kind == "interface":
        features = FEATURES[:3]
    model = _pipeline(train, rows=len(train) if kind == "better" else 120, seed=seed,
                      inverted=kind == "worse", features=features)
    return dump_skops(cls(model, **options[kind])), features


# Callers, in another process ----------------------------------------------------------------

def callers(url: str, rows: list, clients: int, stop, out: str) -> None:
    """Post single rows to ``url``/invocations from ``clients`` threads until ``stop`` is set;
    write (sent, status, variant) per request, JSON lines, to ``out``. A tenth of the rows
    have one feature zeroed (a sensor dropout), as live traffic sometimes does."""
    import requests

    answers, lock = [], threading.Lock()

    def run(seed):
        session, rng = requests.Session(), random.Random(seed)
        while not stop.is_set():
            row = list(rng.choice(rows))
            if rng.random() < 0.1:
                row[rng.randrange(len(row))] = 0.0
            sent = time.time()
            try:
                answer = session.post(f"{url}/invocations", json={"instances": [row]},
                                      timeout=10)
                record = (sent, answer.status_code, answer.headers.get("X-Variant", ""))
            except requests.RequestException as e:
                record = (sent, 0, type(e).__name__)
            with lock:
                answers.append(record)

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    stop.wait()
    for thread in threads:
        thread.join(timeout=15)
    with lock, open(out, "w") as f:
        for record in answers:
            f.write(json.dumps(record) + "\n")


class Callers:
    """The callers' process: started on an endpoint, stopped with its answers."""

    def __init__(self, url: str, rows: list, clients: int, folder: Path):
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        self.stop = context.Event()
        self.out = folder / f"answers-{time.monotonic_ns()}.jsonl"
        self.process = context.Process(target=callers, daemon=True,
                                       args=(url, rows, clients, self.stop, str(self.out)))

    def __enter__(self):
        self.process.start()
        return self

    def answers(self) -> list[tuple]:
        self.stop.set()
        self.process.join(timeout=60)
        if not self.out.exists():
            return []
        return [tuple(json.loads(line)) for line in self.out.read_text().splitlines()]

    def __exit__(self, *exc):
        if self.process.is_alive():
            self.stop.set()
            self.process.join(timeout=30)


# The stack ----------------------------------------------------------------------------------

def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def free_range(size: int) -> tuple[int, int]:
    """``size`` consecutive loopback ports nothing listens on."""
    rng = random.Random(os.getpid())
    for _ in range(200):
        low = rng.randrange(20000, 30000)
        ports = range(low, low + size)
        if not any(_listening(p) for p in ports):
            try:
                for p in (low, low + size - 1):
                    with socket.socket() as s:
                        s.bind(("127.0.0.1", p))
            except OSError:
                continue
            return low, low + size - 1
    raise SystemExit("no free range of ports")


class Stack:
    """The services of one battery: database, broker prefix, Prometheus, workers; torn down
    in ``close``."""

    def __init__(self, args, folder: Path):
        self.args, self.folder, self.processes = args, folder, []
        self.database, self.redis_prefix = None, f"bench-release-faults-{os.getpid()}:"
        self.redis_url = "redis://127.0.0.1:6379/13"

    def _database_url(self) -> str:
        try:
            import psycopg

            with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres",
                                 connect_timeout=2, autocommit=True) as conn:
                self.database = f"bench_release_faults_{os.getpid()}"
                conn.execute(f'CREATE DATABASE "{self.database}"')
            return f"postgres://postgres@127.0.0.1:5432/{self.database}"
        except Exception as e:  # noqa: BLE001 - no PostgreSQL: the embedded default
            print(f"(PostgreSQL not reachable: {type(e).__name__}; SQLite instead)")
            return f"sqlite:///{self.folder / 'bench.sqlite3'}"

    def environment(self, ports: tuple[int, int] | None, prometheus: str, targets: dict,
                    extra: dict) -> dict:
        import redis

        redis.Redis.from_url(self.redis_url, socket_connect_timeout=2).ping()
        env = {
            "DJANGO_SETTINGS_MODULE": "portal.settings", "DATABASE_URL": self._database_url(),
            "REDIS_URL": self.redis_url, "CELERY_BROKER_URL": self.redis_url,
            "MODELGATE_REDIS_PREFIX": self.redis_prefix, "CELERY_TASK_ALWAYS_EAGER": "false",
            "MODELGATE_CELERY_QUEUE": f"bench-release-faults-{os.getpid()}",
            "MODELGATE_DATA_DIR": str(self.folder),
            "MODELGATE_ARTIFACT_ROOT": str(self.folder / "artifacts"),
            "MODELGATE_SERVING_DIR": str(self.folder / "serving"),
            "MODELGATE_ARTIFACT_BUCKET": "", "MODELGATE_PROMETHEUS_URL": prometheus,
            "MODELGATE_TARGETS": json.dumps(targets),
            "MODELGATE_SKOPS_TRUSTED_TYPES": TRUSTED, "MODELGATE_EXPLAIN_VERSIONS": "false",
            # Short bakes and checks every second, as the tests allow (30 s and 5 s in
            # production): the analysis then also reads the 30 s before a step.
            "MODELGATE_ROLLOUT_MIN_CHECK_SECONDS": "1",
            "MODELGATE_ROLLOUT_MIN_BAKE_SECONDS": str(int(self.args.bake)),
            "MODELGATE_RECONCILE_GRACE_SECONDS": "5",
            "PYTHONPATH": str(ROOT), **extra}
        os.environ.update(env)
        return env

    def prometheus(self, ports: tuple[int, int]) -> str:
        """A Prometheus scraping every port of the range each second, as the tests start one
        (tests/integration/prometheus_fixtures.py), labelling the series "production" and
        no project: a Prometheus set up as the docs said before the project label (decision
        23), whose rollouts must still be judged."""
        import requests
        import yaml

        binary = shutil.which("prometheus")
        if binary is None:
            raise SystemExit("the prometheus binary is not installed (apt-get install "
                             "prometheus)")
        config = self.folder / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "modelgate", "scrape_timeout": "900ms",
                                "static_configs": [{
                                    "targets": [f"127.0.0.1:{p}"
                                                for p in range(ports[0], ports[1] + 1)],
                                    "labels": {"environment": "production"}}]}]}))
        port = free_range(1)[0]
        log = open(self.folder / "prometheus.log", "w")
        self.processes.append(subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={self.folder / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"

        def ready():
            try:
                return requests.get(f"{url}/-/ready", timeout=1).status_code == 200
            except requests.RequestException:
                return False
        wait_for(ready, 20, "Prometheus did not become ready")
        return url

    def start_workers(self) -> None:
        queue = os.environ["MODELGATE_CELERY_QUEUE"]
        log = open(self.folder / "worker.log", "a")
        for only in (f"{queue}-rollouts", queue):
            self.processes.append(subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "-P", "solo",
                 "--without-gossip", "--without-mingle", "--without-heartbeat",
                 "--loglevel", "INFO", "-Q", only, "-n", f"{only}@%h"],
                cwd=ROOT, env=dict(os.environ), stdout=log, stderr=subprocess.STDOUT))

    def alive(self) -> None:
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(f"{process.args[:3]} died:\n"
                                   + (self.folder / "worker.log").read_text()[-3000:])

    def close(self) -> None:
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        try:
            import redis

            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(f"{self.redis_prefix}*"))
            if keys:
                client.delete(*keys)
        except Exception as e:  # noqa: BLE001 - cleaning up: say so, carry on
            print(f"(Redis keys {self.redis_prefix}* not removed: {e})")
        if self.database:
            from django.db import connections

            connections.close_all()
            import psycopg

            with psycopg.connect("postgres://postgres@127.0.0.1:5432/postgres",
                                 autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


# One trial ----------------------------------------------------------------------------------

def wait_for(check, timeout: float, what: str, stack: Stack | None = None,
             every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        if stack is not None:
            stack.alive()
        time.sleep(every)
    raise TimeoutError(f"{what} after {timeout:.0f} s")


class World:
    """The portal's side of the battery: users, project, environment, evaluation data."""

    def __init__(self, stack: Stack, args, backend: str):
        from django.contrib.auth import get_user_model
        from sklearn.datasets import load_breast_cancer

        from portal.accounts.choices import Role
        from portal.accounts.models import Membership
        from portal.registry import services as registry
        from portal.releases import services as releases

        self.stack, self.args, self.backend = stack, args, backend
        frame = load_breast_cancer(as_frame=True).frame[FEATURES + ["target"]]
        shuffled = frame.sample(frac=1.0, random_state=0)
        self.train, self.held_out = shuffled.iloc[:350], shuffled.iloc[350:]
        self.rows = self.held_out[FEATURES].round(4).to_numpy().tolist()
        users = get_user_model().objects
        self.owner = users.create_user("owner")
        self.approver = users.create_user("approver")
        self.project = registry.create_project(self.owner, name="Bench", slug="bench")
        Membership.objects.create(project=self.project, user=self.approver, role=Role.APPROVER)
        settings = {"latency_stat": "Maximum"} if backend == "sagemaker" else {}
        # The gate judges what the workers measure on the held-out rows, not what the
        # uploader declares.
        self.environment = releases.create_environment(
            self.owner, self.project, name="production", backend=backend, settings=settings,
            gates=[{"metric": "roc_auc", "max_drop": 0.02}])
        self.count = 0

    def holdout(self, model, seed: int) -> None:
        """The model's evaluation dataset: the held-out rows with their label (its own file
        per model, rows shuffled by ``seed``: a project stores a file once). Evaluation
        datasets belong to one model where ``upload_dataset`` takes it."""
        import inspect

        from portal.registry import services as registry

        frame = self.held_out.sample(frac=1.0, random_state=seed)
        extra = ({"model": model} if "model" in inspect.signature(
            registry.upload_dataset).parameters else {})
        dataset = registry.upload_dataset(
            self.owner, self.project, name=f"holdout-{model.name}", filename="holdout.csv",
            file=io.BytesIO(frame.to_csv(index=False).encode()), target="target",
            purpose="evaluation", **extra)
        wait_for(lambda: type(dataset).objects.get(pk=dataset.pk).profile_status
                 in ("ready", "failed"), 60, "the evaluation dataset was not profiled",
                 self.stack)

    def version(self, model, kind: str, seed: int):
        from portal.registry import services as registry
        from portal.registry.models import Evaluation, ModelVersion

        data, features = artifact(kind, self.train, seed)
        version = registry.register_version(
            self.owner, model, io.BytesIO(data),
            {"input_schema": [{"name": f, "type": "double"} for f in features],
             # What the uploader declares; the gate judges the measured figure.
             "metrics": {"roc_auc": 0.97}})
        version = wait_for(lambda: ModelVersion.objects.filter(
            pk=version.pk, status__in=("ready", "invalid")).first(), 120,
            f"version of {kind} not validated", self.stack)
        if version.status != "ready":
            return version
        wait_for(lambda: Evaluation.objects.filter(version=version).exists() and not
                 Evaluation.objects.filter(version=version, status="pending").exists(),
                 120, f"version of {kind} not measured", self.stack)
        return version

    def release(self, version, strategy: str, params: dict | None = None):
        """(request, refusal): the request approved by the second user, or why not."""
        from portal.errors import DomainError
        from portal.releases import services as releases

        try:
            request = releases.request_approval(self.owner, version, self.environment,
                                                strategy=strategy,
                                                strategy_params=params or {})
        except DomainError as e:
            return None, f"request refused: {e.code} ({str(e.detail)[:80]})"
        try:
            releases.review(self.approver, request, "approve", "bench")
        except DomainError as e:
            gates = "; ".join(g.get("detail", "") for g in request.gate_results
                              if not g.get("passed", True))[:80]
            return request, f"approval refused: {e.code} ({gates or str(e.detail)[:80]})"
        return request, ""

    def deployment(self, request, wanted, timeout: float):
        from portal.releases import deployments
        from portal.releases.models import Deployment

        started = time.monotonic()

        def ended():
            if time.monotonic() - started > 10:
                deployments.reconcile()  # what beat does (a lost task); cheap when none is
            found = Deployment.objects.filter(request=request).first()
            return found if found is not None and found.status in wanted else None
        return wait_for(ended, timeout, f"the rollout of request {request.pk} did not end",
                        self.stack, every=0.25)


def canary_params(bake: float) -> dict:
    return {"steps": [{"weight": 0.2, "bake_seconds": bake},
                      {"weight": 0.5, "bake_seconds": bake},
                      {"weight": 1.0, "bake_seconds": bake}],
            # Latency is judged on the defaults (p99 over 1.5 times the stable's and over
            # 0.25 s): the served models cost 0.1 s a call, the slow one 0.3 s.
            "thresholds": {"min_requests": 50},
            "check_interval_seconds": 1, "max_inconclusive_checks": 20}


ENDED = ("succeeded", "rolled_back", "failed", "paused")


def trial(world: World, kind: str, number: int) -> dict:
    """One release of a candidate of ``kind`` over a freshly released stable."""
    from portal.registry import services as registry
    from portal.releases import deployments

    world.count += 1
    model = registry.create_model(world.owner, world.project,
                                  name=f"t{world.count:03d}-{kind}", task="classification")
    seed = 1000 * world.count
    world.holdout(model, seed)
    stable = world.version(model, "stable", seed)
    request, refusal = world.release(stable, "direct")
    if refusal:
        raise RuntimeError(f"the stable was refused: {refusal}")
    first = world.deployment(request, ENDED, 120)
    if first.status != "succeeded":
        raise RuntimeError(f"the stable did not deploy: {first.status} "
                           f"{[e.reason for e in first.events.all()]}")
    backend = deployments.backend_for(first)
    result = {"kind": kind, "bad": kind in BAD, "outcome": "", "why": "", "seconds": None,
              "failed_after": 0, "failed_before": 0, "answers": 0, "within_bake": None}
    try:
        if world.backend == "local":
            from portal.releases.models import EndpointSlot

            port = EndpointSlot.objects.get(environment=world.environment, model=model).port
            url = f"http://127.0.0.1:{port}"
            wait_for(lambda: _ready(url), 60, "the stable's server did not answer")
            with Callers(url, world.rows, world.args.clients, world.stack.folder) as load:
                time.sleep(2)  # the stable's traffic, scraped, before the candidate
                _candidate(world, model, kind, seed + 1, result)
                time.sleep(2)  # answers after the verdict
                answers = load.answers()
            _score(result, answers)
        else:
            _candidate(world, model, kind, seed + 1, result)
    finally:
        try:
            backend.delete(first.endpoint)
        except Exception as e:  # noqa: BLE001 - cleaning up: say so, carry on
            print(f"  (endpoint {first.endpoint} not deleted: {e})")
    return result


def _ready(url: str) -> bool:
    import requests

    try:
        return requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _candidate(world: World, model, kind: str, seed: int, result: dict) -> None:
    candidate = world.version(model, kind, seed)
    result["requested_at"] = time.time()
    if candidate.status != "ready":
        result.update(outcome="refused", why=f"invalid version: {candidate.status_reason[:80]}",
                      verdict_at=time.time())
        return
    request, refusal = world.release(candidate, "canary", canary_params(world.args.bake))
    if refusal:
        result.update(outcome="refused", why=refusal, verdict_at=time.time())
        return
    deployment = world.deployment(request, ENDED, 3 * world.args.bake + 90)
    status = deployment.status
    if status == "paused":  # stopped for a person: the person rolls it back
        from portal.releases import deployments

        deployments.command(world.approver, deployment, "rollback")
    events = list(deployment.events.all())
    failing = [e for e in events if e.verdict == "fail" or e.event in ("apply_failed",
                                                                        "rolled_back")]
    judged_events = [e for e in events if e.verdict]
    why = (failing[-1] if failing else judged_events[-1] if judged_events
           else events[-1] if events else None)
    why = why.reason if why is not None else ""
    metrics = sorted({m["metric"] for e in failing for m in e.measurements
                      if m.get("verdict") == "fail"})
    result.update(outcome=status, why=why[:160], metrics=metrics,
                  verdict_at=deployment.finished_at.timestamp() if deployment.finished_at
                  else time.time(), deployment=deployment.pk)


def _score(result: dict, answers: list[tuple]) -> None:
    """Seconds from the first candidate answer to the verdict, and failures around it."""
    verdict = result.get("verdict_at")
    result["answers"] = len(answers)
    candidate = sorted(sent for sent, _, variant in answers if variant == "candidate")
    start = candidate[0] if candidate else result.get("requested_at")
    if verdict is not None and start is not None:
        result["seconds"] = max(verdict - start, 0.0)
        result["from_traffic"] = bool(candidate)
    failed = [(sent, status) for sent, status, _ in answers if not 200 <= status < 300]
    if verdict is not None:
        result["failed_after"] = sum(1 for sent, _ in failed if sent >= verdict)
        result["failed_before"] = sum(1 for sent, _ in failed if sent < verdict)


def judged(result: dict, bake: float) -> dict:
    caught = result["outcome"] in ("rolled_back", "refused", "failed")
    result["caught"] = caught if result["bad"] else None
    result["false_rollback"] = (not result["bad"]) and result["outcome"] in (
        "rolled_back", "refused", "failed")
    if result.get("from_traffic") and result["bad"]:
        # One step's bake, plus the second of a check and the scrape it waits for.
        result["within_bake"] = result["seconds"] <= bake + 2.0
    return result


# The battery --------------------------------------------------------------------------------

def where(result: dict) -> str:
    why = result["why"]
    if result["outcome"] == "refused":
        return why.split(" (")[0]
    if result.get("metrics"):
        return f"{result['outcome']}: {'+'.join(result['metrics'])}"
    if "refused plan" in why:
        return f"{result['outcome']}: the model server refused the plan"
    return result["outcome"]


def table(results: list[dict], bake: float) -> bool:
    kinds = list(dict.fromkeys(r["kind"] for r in results))
    print()
    print(f"{'kind':<14} {'trials':>6} {'caught':>6} {'false rb':>8} {'med s':>6} "
          f"{'max s':>6} {'failed after':>12}  caught by / outcome")
    ok = True
    for kind in kinds:
        rows = [r for r in results if r["kind"] == kind]
        bad = kind in BAD
        seconds = [r["seconds"] for r in rows if r["seconds"] is not None]
        caught = sum(1 for r in rows if r["caught"]) if bad else None
        false = sum(1 for r in rows if r["false_rollback"])
        after = sum(r["failed_after"] for r in rows)
        marks = "" if all(r.get("from_traffic") for r in rows) else "*"
        outcomes = ", ".join(f"{n}x {w}" for w, n in _counted(where(r) for r in rows))
        print(f"{kind:<14} {len(rows):>6} {str(caught) if bad else '-':>6} "
              f"{'-' if bad else str(false):>8} "
              f"{(f'{statistics.median(seconds):.1f}' + marks) if seconds else '-':>6} "
              f"{f'{max(seconds):.1f}' if seconds else '-':>6} {after:>12}  {outcomes}")
        ok &= (caught == len(rows)) if bad else false == 0
        ok &= after == 0 and all(r["within_bake"] in (None, True) for r in rows)
    good = [r for r in results if not r["bad"]]
    late = [r for r in results if r["within_bake"] is False]
    print()
    print(f"bad trials: {sum(1 for r in results if r['bad'])}, caught "
          f"{sum(1 for r in results if r['caught'])}; good trials: {len(good)}, false "
          f"rollbacks {sum(1 for r in good if r['false_rollback'])}; verdicts later than one "
          f"bake ({bake:g} s + 2 s) after the first candidate answer: {len(late)}; client "
          f"requests failed after a verdict: {sum(r['failed_after'] for r in results)} "
          f"(before: {sum(r['failed_before'] for r in results)}, of "
          f"{sum(r['answers'] for r in results)} answers)")
    print("* seconds from the request (refused before any traffic), not from traffic")
    return ok and len(good) >= 20


def _counted(items) -> list[tuple[str, int]]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return list(counts.items())


def battery(args) -> list[dict]:
    kinds = [k for k in args.kinds.split(",") if k] if args.kinds else list(BAD + GOOD)
    unknown = set(kinds) - set(BAD + GOOD)
    if unknown:
        raise SystemExit(f"unknown kinds: {', '.join(sorted(unknown))}; valid: "
                         f"{', '.join(BAD + GOOD)}")
    plan = [(k, n) for n in range(max(args.trials, args.good_trials)) for k in kinds
            if n < (args.trials if k in BAD else args.good_trials)]
    folder = Path(tempfile.mkdtemp(prefix="modelgate-release-faults-"))
    stack = Stack(args, folder)
    emulator = None
    try:
        if args.backend == "local":
            ports = free_range(len(plan) + 5)
            targets = {"local": {"backend": "local", "ports": f"{ports[0]}-{ports[1]}"}}
            prometheus = stack.prometheus(ports)
            extra = {}
        else:
            emulator, targets, extra = _emulator(args.backend)
            # Prometheus scraping nothing: no model server runs on an emulator.
            prometheus = stack.prometheus(free_range(1))
        stack.environment(None, prometheus, targets, extra)
        import django

        django.setup()
        import logging

        from django.core.management import call_command

        for noisy in ("aiohttp.access", "ops.serving", "werkzeug"):
            logging.getLogger(noisy).setLevel(logging.WARNING)

        call_command("migrate", verbosity=0)
        stack.start_workers()
        if args.backend not in ("local",):
            kinds_shown = [k for k in kinds if k in EMULATED]
            plan = [(k, n) for k, n in plan if k in EMULATED]
            print(f"{args.backend} through its emulator: kinds shown: "
                  f"{', '.join(kinds_shown) or 'none'}")
        world = World(stack, args, args.backend)
        print(f"{len(plan)} trials on the {args.backend} backend, bake {args.bake:g} s per "
              f"step, {args.clients} client threads in another process; stack in {folder}")
        results = []
        for kind, number in plan:
            try:
                result = trial(world, kind, number)
            except (RuntimeError, TimeoutError) as e:
                result = {"kind": kind, "bad": kind in BAD, "outcome": "error",
                          "why": str(e)[:300], "seconds": None, "failed_after": 0,
                          "failed_before": 0, "answers": 0, "within_bake": None}
            result = judged(result, args.bake)
            results.append(result)
            seconds = f"{result['seconds']:.1f} s" if result["seconds"] is not None else "-"
            print(f"  {kind:<14} #{number + 1}: {result['outcome']:<11} {seconds:>7}  "
                  f"failed after/before {result['failed_after']}/{result['failed_before']}"
                  f" of {result['answers']}  {result['why'][:150]}", flush=True)
        return results
    finally:
        stack.close()
        if emulator is not None:
            emulator.close()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


# Emulated backends --------------------------------------------------------------------------

# What kmock and moto let a release show: the refusals before any traffic, and the plan path
# of a canary (its plans applied generation after generation) ending paused, never promoted,
# as no traffic metric exists.
EMULATED = ("interface", "worse", "retrained")
NOT_SHOWN = {
    "5xx-5pc": "no model server runs on the emulator: no request is answered, no 5xx counted",
    "5xx-2pc": "as 5xx-5pc",
    "slow": "no model server runs: no latency exists to measure",
    "nan-rows": "no model server runs: no prediction, NaN or not, is made",
    "constant": "no model server runs: no class mix is exported",
    "crash-on-load": "nothing loads the model: kmock runs no controller or pod (the test "
                     "stand-in marks every revision ready), moto's endpoints are InService "
                     "at once without a container",
    "faster": "no latency exists to compare",
    "better": "as retrained: the canary can only pause without traffic metrics",
}


class _KServeController(threading.Thread):
    """What KServe's controller does once a revision serves: every InferenceService ready
    at its spec's generation (kmock runs no controller)."""

    def __init__(self, cluster):
        super().__init__(daemon=True)
        self.cluster, self.stopped = cluster, threading.Event()

    def run(self):
        while not self.stopped.wait(0.5):
            try:
                self.cluster.reconcile()
            except Exception:  # noqa: BLE001, S110 - the emulator is shutting down
                return

    def close(self):
        self.stopped.set()
        self.cluster.close()


def _emulator(kind: str):
    """(the emulator to close, MODELGATE_TARGETS, extra environment) for ``kind``."""
    if kind == "kubernetes":
        from tests.integration.kube_fixtures import KSERVE_CRD, TEST_IMAGE, EmulatedCluster

        cluster = EmulatedCluster().start()
        controller = _KServeController(cluster)
        controller.start()
        target = {"backend": "kubernetes", "namespace": cluster.namespace, "image": TEST_IMAGE,
                  "mode": "kserve", "host": cluster.url, "timeout": 5, "validate": True}
        if KSERVE_CRD.is_file():
            target["crd_schema"] = str(KSERVE_CRD)
        return controller, {"k8s": target}, {}
    from moto.server import ThreadedMotoServer

    from tests.integration.sagemaker_fixtures import (
        BUCKET,
        CLEARED_ENVIRONMENT,
        FAKE_ENVIRONMENT,
        sagemaker_settings,
    )

    for name in CLEARED_ENVIRONMENT:
        os.environ.pop(name, None)
    os.environ.update(FAKE_ENVIRONMENT)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    import boto3

    boto3.session.Session(region_name="us-east-1").client(
        "s3", endpoint_url=url).create_bucket(Bucket=BUCKET)

    class Stop:
        def close(self):
            server.stop()
    return Stop(), {"aws": {"backend": "sagemaker", **sagemaker_settings(url)}}, \
        dict(FAKE_ENVIRONMENT)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2, help="trials per bad kind")
    parser.add_argument("--good-trials", type=int, default=7,
                        help="trials per good kind (3 kinds: 21 by default)")
    parser.add_argument("--kinds", default="", help="comma-separated; default all: "
                        + ",".join(BAD + GOOD))
    parser.add_argument("--bake", type=float, default=6.0, help="seconds per canary step")
    parser.add_argument("--clients", type=int, default=12, help="caller threads")
    parser.add_argument("--backend", choices=("local", "kubernetes", "sagemaker"),
                        default="local")
    parser.add_argument("--keep", action="store_true", help="keep the stack's folder")
    args = parser.parse_args(argv)
    started = time.monotonic()
    results = battery(args)
    ok = table(results, args.bake)
    if args.backend != "local":
        kinds = [k for k in (args.kinds.split(",") if args.kinds else BAD + GOOD) if k]
        print()
        print(f"what the {args.backend} emulator cannot show:")
        for kind in kinds:
            if kind in NOT_SHOWN:
                print(f"  {kind:<14} {NOT_SHOWN[kind]}")
        print("  the canary of a good kind runs its plans on the emulator and pauses for a "
              "person (no traffic metric: inconclusive, never a pass), so no good kind can "
              "succeed there and false rollbacks are not measured")
        ok = all(r["caught"] for r in results if r["bad"]) and not any(
            r["false_rollback"] for r in results)
    print(f"\nbattery took {time.monotonic() - started:.0f} s")
    print("overall:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
