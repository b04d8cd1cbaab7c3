"""Mixed load on the portal as deployed: gunicorn with the production settings, PostgreSQL,
Redis, a Celery worker; the load comes from another process.

    .venv/bin/python benchmarks/portal_load.py [--rate 200] [--seconds 60] [--keep]
                                               [--workers N] [--threads N] [--costs]

1. (Re)creates the database ``modelgate_bench_load`` and migrates it; seeds what the demo's
   pages show: a project with a model of 20 versions on the demo's 30 features (each
   explained, each measured on a held-out evaluation dataset, two aliases), a finished
   canary rollout with its analyses, an A/B rollout in progress with its history and its
   test with 12 hours of outcomes, and users: eight viewers (browsing people), a
   contributor (integrator, with an API token).
2. Starts gunicorn (portal/gunicorn_conf.py: 2 workers x 4 threads unless --workers and
   --threads say otherwise; DEBUG off, a real secret key) and a Celery worker (1 process)
   that validates the uploaded versions.
3. A load process (``--load`` mode of this script: one asyncio process with aiohttp, so the
   client's CPU stays small beside the portal's) signs each viewer in once, then sends an
   open-loop mix at ``--rate`` requests/s for ``--seconds``: browsing people (dashboard,
   models list, model page, version page, rollout page and its live refresh, A/B test page,
   alerts) 55 %, API reads (versions list, version, A/B readout) 30 %, feedback batches of
   100 outcomes 12 %, version uploads 3 %. Open loop: requests leave at fixed times
   whatever the answers, and latency counts from that time, so a slow server shows as
   latency, not as less load.
   With ``--costs``, first: each read's web CPU one request at a time, beside the
   framework's floor (``/healthz``, and a signed-in page that does nothing), and the most
   requests/s two cores of web alone could hold for that mix; the same beside a second
   gunicorn with ``MODELGATE_PREPARED=off`` (every query compiled anew, as before
   ``portal/prepared.py``), or serving ``--baseline-tree`` (``git worktree add /tmp/base
   <commit>``), measured in turn, medians of three rounds, and their ratio.
4. Prints per endpoint: requests, errors (status >= 400 or no answer; the first of each is
   shown), p50 and p95; the achieved rate; the most PostgreSQL connections seen (sampled
   every 0.5 s); and PASS/FAIL against >= 200 requests/s, p95 < 200 ms for every endpoint,
   0 errors.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from registry_api import PG_SERVER, free_port, stop_server  # noqa: E402

DB_NAME = "modelgate_bench_load"
MIX = [("page", 0.55), ("api", 0.30), ("feedback", 0.12), ("upload", 0.03)]


def recreate(drop_only: bool = False) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def environment(data_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MODELGATE_"))}
    env.update({"DATABASE_URL": f"{PG_SERVER}/{DB_NAME}", "MODELGATE_DATA_DIR": data_dir,
                "DJANGO_SETTINGS_MODULE": "portal.settings", "DJANGO_DEBUG": "false",
                "DJANGO_SECRET_KEY": "load-benchmark-" + "k" * 40,
                "MODELGATE_REQUIRE_SECRET_KEY": "true", "MODELGATE_LOG_LEVEL": "WARNING",
                "MODELGATE_REDIS_PREFIX": f"modelgate-load-{os.getpid()}:",
                "MODELGATE_CELERY_QUEUE": f"modelgate-load-{os.getpid()}",
                "MODELGATE_EXPLAIN_VERSIONS": "false",
                "MODELGATE_RATE_UPLOADS": "100000/hour", "MODELGATE_RATE_FEEDBACK": "100000/min"})
    return env


def seed() -> dict:
    import django

    django.setup()
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from sklearn.datasets import load_breast_cancer
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    from ops.artifacts import dump_skops
    from portal.accounts.choices import Role
    from portal.accounts.models import Membership
    from portal.accounts.services import create_token
    from portal.experiments import services as experiments
    from portal.registry import services
    from portal.releases import deployments
    from portal.releases import services as releases

    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    owner = users.create_user("load-owner", password="load-pass-1")
    viewers = [users.create_user(f"load-viewer-{i}", password="load-pass-1")
               for i in range(BROWSERS)]
    integrator = users.create_user("load-integrator", password="load-pass-1")
    project = services.create_project(owner, name="Load", slug="load")
    for viewer in viewers:
        Membership.objects.create(project=project, user=viewer, role=Role.VIEWER)
    Membership.objects.create(project=project, user=integrator, role=Role.CONTRIBUTOR)
    warnings.filterwarnings("ignore", category=ConvergenceWarning)  # unscaled, as people do
    frame = load_breast_cancer(as_frame=True).frame  # the demo's 30 features
    features = list(frame.columns[:-1])
    dataset = services.upload_dataset(owner, project, name="cancer",
                                      file=io.BytesIO(frame.to_csv(index=False).encode()),
                                      filename="cancer.csv", target="target")
    services.profile_dataset(dataset.pk)
    model = services.create_model(owner, project, name="tumor", task="classification")
    schema = [{"name": f, "type": "double"} for f in features]
    versions = []
    for c in np.logspace(-2, 2, 20):
        estimator = LogisticRegression(C=float(c), max_iter=500).fit(frame[features],
                                                                      frame["target"])
        version = services.register_version(owner, model, io.BytesIO(dump_skops(estimator)),
                                            {"input_schema": schema, "dataset": dataset.pk,
                                             "metrics": {"roc_auc": 0.9 + c / 1000}})
        versions.append(services.validate_version(version.pk))
    # What a worker adds to every ready version in the demo: its explanation, and its
    # figures on the held-out rows of an evaluation dataset.
    from portal.registry.models import Evaluation
    from portal.registry.services.explanations import explain_version

    for version in versions:
        explain_version(version.pk)
    holdout = services.upload_dataset(
        owner, project, name="cancer-holdout", filename="cancer-holdout.csv",
        file=io.BytesIO(frame.iloc[::4].to_csv(index=False).encode()), target="target",
        purpose="evaluation", model=model)
    services.profile_dataset(holdout.pk)
    for pk in Evaluation.objects.filter(dataset=holdout).values_list("pk", flat=True):
        services.evaluate(pk)
    services.set_alias(owner, model, "champion", versions[0])
    services.set_alias(owner, model, "challenger", versions[1])
    environment = releases.create_environment(owner, project, name="production")
    # A canary that finished two days ago (versions[0] replacing versions[5]), then the A/B
    # test of versions[1] against it, twelve hours in.
    canary = deployments._spec("canary", {}, model.name, versions[0], versions[5])
    finished = _rollout_history(environment, model, canary, hours_ago=48, hours=None)
    stable, candidate = versions[0], versions[1]
    spec = deployments._spec("ab", {"split": 0.5, "duration_seconds": 86400}, model.name,
                             candidate, stable)
    deployment = _rollout_history(environment, model, spec, hours_ago=12, hours=12)
    assert deployment.state["generation"] == 2 and deployment.state["base_generation"] == 1
    experiment = experiments.create_for(deployment, generation=2)
    _, token = create_token(integrator, "load", scopes=["read", "write"])
    # Distinct artifacts to upload (the registry refuses a duplicate), made before the clock.
    uploads = []
    rng = np.random.default_rng(7)
    for _ in range(400):
        estimator = LogisticRegression(max_iter=200).fit(
            frame[features] + rng.normal(0, 1e-3, (len(frame), len(features))), frame["target"])
        uploads.append(dump_skops(estimator).hex())
    from ops.serving.ids import new_prediction_ids
    from portal.experiments.signing import signer_for

    signer = signer_for(environment.pk, model.pk)
    ids = [new_prediction_ids("candidate" if i % 2 else "stable", 2, 1, signer=signer)[0]
           for i in range(200_000 + SEEDED_OUTCOMES)]
    _outcomes(integrator, experiment, ids[:SEEDED_OUTCOMES], rng)
    return {"token": token, "model": model.pk, "model_name": model.name,
            "versions": [v.pk for v in versions], "numbers": [v.number for v in versions],
            "deployment": deployment.pk, "experiment": experiment.pk,
            "finished_rollout": finished.pk,
            "schema": schema, "uploads": uploads, "ids": ids[SEEDED_OUTCOMES:]}


SEEDED_OUTCOMES = 4000


def _rollout_history(environment, model, spec, *, hours_ago: float, hours: float | None):
    """A rollout started ``hours_ago``, decided by the engine at each wait it asks for, on
    healthy measurements, as a worker records it (a repeated check updates its event): for
    ``hours``, or (None) until it ends."""
    from ops import rollout
    from portal.releases import deployments
    from portal.releases.models import Deployment, DeploymentEvent

    healthy = rollout.Analysis(requests=1268.0, error_rate=0.0011, p99_latency=0.0112,
                               stable_p99_latency=0.0101, client_error_rate=0.0,
                               stable_client_error_rate=0.0)
    state = rollout.RolloutState.initial(1)
    deployment = Deployment.objects.create(
        environment=environment, model=model, candidate_id=spec.candidate.version_id,
        stable_id=spec.stable.version_id if spec.stable else None, endpoint=model.name,
        strategy=spec.strategy, spec=spec.to_dict(), state=state.to_dict(), status="pending")
    start = time.time() - 3600 * hours_ago
    end = time.time() if hours is None else start + 3600 * hours
    now, generation = start, None
    while not state.ended and now <= end:
        served = rollout.Served(generation=generation, ready=True)
        decision = rollout.decide(spec, state, healthy, now, served=served)
        event = deployments._record(deployment, decision)
        if event.measurements and decision.plan is None:  # each check says when it was taken
            event.measurements = [{**m, "at": _iso(now)} for m in event.measurements]
            event.save(update_fields=["measurements"])
        if event.created_at.timestamp() > now + 1:  # a new event: when the engine decided
            DeploymentEvent.objects.filter(pk=event.pk).update(created_at=_moment(now))
        if decision.plan is not None:
            generation = decision.plan.generation
        state = decision.state
        now += max(decision.wait_seconds or 0.0, 1.0)
    Deployment.objects.filter(pk=deployment.pk).update(
        state=state.to_dict(), status=str(state.status), created_at=_moment(start),
        finished_at=_moment(now) if state.ended else None)
    deployment.refresh_from_db()
    return deployment


def _moment(timestamp: float):
    import datetime

    return datetime.datetime.fromtimestamp(timestamp, datetime.UTC)


def _iso(timestamp: float) -> str:
    return _moment(timestamp).isoformat()


def _outcomes(user, experiment, ids: list[str], rng) -> None:
    """Outcomes of ``ids`` (B a little better than A), stored by the feedback service,
    then spread over the test's twelve hours as ten-minute buckets (the readout's chart)."""
    from portal.experiments import services as experiments
    from portal.experiments.models import Outcome, OutcomeBucket

    for start in range(0, len(ids), 500):
        experiments.record_feedback(user, [
            {"prediction_id": pid, "outcome": bool(rng.random() < (0.33 if i % 2 else 0.30))}
            for i, pid in enumerate(ids[start:start + 500], start=start)])
    first = experiment.deployment.created_at.timestamp() // 600 * 600
    OutcomeBucket.objects.filter(experiment=experiment).delete()
    buckets = {}
    rows = list(Outcome.objects.filter(experiment=experiment).order_by("pk")
                .values_list("variant", "value"))
    for i, (variant, value) in enumerate(rows):
        at = _moment(first + 600 * (72 * i // len(rows)))
        bucket = buckets.setdefault((variant, at), OutcomeBucket(
            experiment=experiment, variant=variant, starts_at=at))
        bucket.n += 1
        bucket.total += value
        bucket.total_sq += value * value
    OutcomeBucket.objects.bulk_create(buckets.values())


# -- the load process ---------------------------------------------------------------------

BROWSERS = 8  # browsing people, each signed in once before the clock


def browser_cookies(base: str, username: str) -> str:
    """Sign in through the login form; the Cookie header of that browser."""
    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=30).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    answer = session.post(f"{base}/login/", data={"username": username,
                                                  "password": "load-pass-1",
                                                  "csrfmiddlewaretoken": csrf},
                          headers={"Referer": f"{base}/login/"}, timeout=30)
    answer.raise_for_status()
    return "; ".join(f"{k}={v}" for k, v in session.cookies.get_dict().items())


def endpoints(world: dict) -> tuple[list, list]:
    """(name, path) of the pages people browse and of the API reads; a path of None is a
    version page or a version, picked at random per request."""
    model = world["model_name"]
    pages = [("page: dashboard", "/"), ("page: models", "/models/"),
             ("page: model", f"/p/load/m/{model}/"),
             ("page: rollout", f"/deployments/{world['deployment']}/"),
             ("page: rollout, finished", f"/deployments/{world['finished_rollout']}/"),
             ("page: rollout refresh", f"/deployments/{world['deployment']}/?partial=1"),
             ("page: A/B test", f"/experiments/{world['experiment']}/"),
             ("page: alerts", "/alerts/"), ("page: version", None)]
    reads = [("api: versions list", f"/api/v1/versions/?model={world['model']}"),
             ("api: version", None),
             ("api: A/B readout", f"/api/v1/experiments/{world['experiment']}/readout/")]
    return pages, reads


def sequential_costs(base: str, world: dict, server_pid: int, baseline=None,
                     repeat: int = 40, rounds: int = 3) -> float:
    """The web processes' CPU per request of each read, one request at a time, beside the
    framework's floor (a probe, and a signed-in page that does nothing: session, user,
    middleware and the page frame): the median of ``rounds`` runs of ``repeat`` requests.
    With ``baseline`` (base, pid: the same portal with ``MODELGATE_PREPARED=off``), each
    round measures both in turn, and the ratio is printed. Returns the mix's weighted CPU a
    request (ms), reads standing in for the writes, so ``cores / cost`` bounds the rate the
    web can hold."""
    cookie = browser_cookies(base, f"load-viewer-{BROWSERS - 1}")  # sessions are shared
    browser = requests.Session()
    browser.headers["Cookie"] = cookie
    api = requests.Session()
    api.headers["Authorization"] = f"Token {world['token']}"
    pages, reads = endpoints(world)
    version_page = f"/p/load/m/{world['model_name']}/v/{world['numbers'][3]}/"
    rows = [("floor: /healthz", requests, "/healthz", 0.0),
            ("floor: signed-in 404 page", browser, "/no-such-page/", 0.0)]
    rows += [(name, browser, path or version_page, 0.55 / len(pages)) for name, path in pages]
    rows += [(name, api, path or f"/api/v1/versions/{world['versions'][3]}/", 0.45 / len(reads))
             for name, path in reads]
    servers = [(base, server_pid)] + ([baseline] if baseline else [])
    head = f"{'one request at a time':<28} {'web CPU ms':>10}"
    print(f"\n{head} {'baseline':>10} {'ratio':>6}" if baseline else f"\n{head}")
    weighted = 0.0

    def cost(session, url, pid) -> float:
        before = process_tree_cpu(pid)
        for _ in range(repeat):
            session.get(url, timeout=30)
        return 1000 * (process_tree_cpu(pid) - before) / repeat

    for name, session, path, weight in rows:
        for server, _ in servers:
            for _ in range(3):
                session.get(server + path, timeout=30)
        runs = [[cost(session, server + path, pid) for server, pid in servers]
                for _ in range(rounds)]
        medians = [statistics.median(run[i] for run in runs) for i in range(len(servers))]
        weighted += weight * medians[0]
        line = f"{name:<28} {medians[0]:>10.1f}"
        if baseline:
            line += f" {medians[1]:>10.1f} {medians[0] / medians[1]:>6.2f}"
        print(line)
    print(f"{'weighted reads of the mix':<28} {weighted:>10.1f}  -> two cores of web alone "
          f"hold at most {2000 / weighted:.0f} requests/s")
    return weighted


def run_load(base: str, world: dict, rate: float, seconds: float, out: str) -> None:
    """The open-loop load: one asyncio process (aiohttp), so the client's own CPU — which
    shares the machine's two cores with the portal — stays a small part of the budget."""
    import asyncio

    asyncio.run(_load(base, world, rate, seconds, out))


async def _load(base: str, world: dict, rate: float, seconds: float, out: str) -> None:
    import asyncio
    import random

    import aiohttp

    rng = random.Random(3)
    # A person signs in once, not once per page (signing in costs a deliberately slow hash).
    browsers = [browser_cookies(base, f"load-viewer-{i}") for i in range(BROWSERS)]
    api_headers = {"Authorization": f"Token {world['token']}"}
    ids = iter(world["ids"])
    uploads = iter(world["uploads"])
    results: list[tuple[str, int, float]] = []
    first_errors: dict[str, str] = {}
    numbers = world["numbers"]
    model = world["model_name"]
    pages, reads = endpoints(world)

    def plan(kind: str):
        """(name, method, path, headers, body) of one request of this kind."""
        if kind == "page":
            name, path = rng.choice(pages)
            path = path or f"/p/load/m/{model}/v/{rng.choice(numbers)}/"
            return name, "GET", path, {"Cookie": rng.choice(browsers)}, None
        if kind == "api":
            name, path = rng.choice(reads)
            path = path or f"/api/v1/versions/{rng.choice(world['versions'])}/"
            return name, "GET", path, api_headers, None
        if kind == "feedback":
            batch = [{"prediction_id": next(ids), "outcome": rng.random() < 0.3}
                     for _ in range(100)]
            return "api: feedback (100)", "POST", "/api/v1/feedback/", api_headers, \
                {"json": {"items": batch}}
        form = aiohttp.FormData()
        form.add_field("artifact", bytes.fromhex(next(uploads)), filename="model.skops")
        form.add_field("metadata", json.dumps({"input_schema": world["schema"]}))
        return "api: version upload", "POST", f"/api/v1/models/{world['model']}/versions/", \
            api_headers, {"data": form}

    async def one(http, kind: str, at: float):
        # Latency counts from the scheduled time (no coordinated omission).
        name, method, path, headers, body = plan(kind)
        try:
            async with http.request(method, base + path, headers=headers,
                                    **(body or {})) as answer:
                text = await answer.text()
                status = answer.status
        except (TimeoutError, aiohttp.ClientError) as e:
            status, text = 0, f"{type(e).__name__}: {e}"
        took = time.perf_counter() - at
        results.append((name, status, took))
        if status == 0 or status >= 400:
            first_errors.setdefault(name, f"{status}: {text[:300]}")

    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    schedule = [rng.choices(kinds, weights)[0] for _ in range(int(rate * seconds))]
    connector = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=30),
                                     cookie_jar=aiohttp.DummyCookieJar()) as http:
        tasks = []
        start = time.perf_counter()
        for i, kind in enumerate(schedule):
            at = start + i / rate
            delay = at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(http, kind, at)))
        await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    Path(out).write_text(json.dumps({"results": results, "elapsed": elapsed,
                                     "first_errors": first_errors}))


def start_server(env: dict, log_path: Path, seconds: float = 60,
                 tree: Path = ROOT) -> tuple[subprocess.Popen, str]:
    """gunicorn with the portal's configuration, as deployed (no benchmark middleware),
    answering ``/healthz`` within ``seconds``; ``tree``: the source tree it serves."""
    port = free_port()
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([str(Path(sys.executable).parent / "gunicorn"), "-c",
                             "python:portal.gunicorn_conf", "portal.wsgi", "-b",
                             f"127.0.0.1:{port}", "--access-logfile", "/dev/null"],
                            cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                return proc, base
        except requests.RequestException:
            time.sleep(0.3)
    stop_server(proc)
    raise RuntimeError("gunicorn did not start: " + log_path.read_text()[-2000:])


# -- report ---------------------------------------------------------------------------------

def machine_speed() -> float:
    """Milliseconds a fixed piece of pure Python takes here (median of five).

    The same code on this machine has held 100 requests/s in one run and fallen behind at
    70/s in another, an hour apart, with the web processes' CPU per request doubling; the
    machine is a virtual one whose speed varies. This figure, printed before the load,
    says how fast the machine was for that run."""

    def work() -> float:
        started = time.perf_counter()
        table = {}
        for i in range(300_000):
            table[f"k{i % 5000}"] = table.get(f"k{i % 5000}", 0) + i
        return (time.perf_counter() - started) * 1000

    return statistics.median(work() for _ in range(5))


def process_tree_cpu(pid: int) -> float:
    """CPU seconds used so far by a process and its children (Linux /proc): the web
    processes' CPU per request is steadier from run to run than their latency."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:  # fields[1] is the parent's pid
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def report(data: dict, connections: int, rate: float) -> bool:
    rows: dict[str, list] = {}
    for name, status, took in data["results"]:
        rows.setdefault(name, []).append((status, took))
    achieved = len(data["results"]) / data["elapsed"]
    errors_total = 0
    worst_p95 = 0.0
    print(f"\n{'endpoint':<28} {'requests':>8} {'errors':>6} {'p50 ms':>8} {'p95 ms':>8}")
    for name in sorted(rows):
        entries = rows[name]
        times = sorted(t * 1000 for _, t in entries)
        errors = sum(1 for s, _ in entries if s == 0 or s >= 400)
        errors_total += errors
        p95 = times[int(0.95 * (len(times) - 1))]
        worst_p95 = max(worst_p95, p95)
        print(f"{name:<28} {len(entries):>8} {errors:>6} {statistics.median(times):>8.1f} "
              f"{p95:>8.1f}")
    ok = achieved >= 0.98 * rate and rate >= 200 and worst_p95 < 200 and errors_total == 0
    print(f"\n{len(data['results'])} requests in {data['elapsed']:.1f} s = {achieved:.0f}/s "
          f"(asked {rate:g}/s); errors {errors_total}; worst p95 {worst_p95:.0f} ms; "
          f"PostgreSQL connections at most {connections}")
    for name, error in sorted(data.get("first_errors", {}).items()):
        print(f"first error of {name}: {error}")
    print(f"{'PASS' if ok else 'FAIL'}: target >= 200 requests/s mixed, p95 < 200 ms on "
          "every endpoint, 0 errors")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--workers", type=int, default=None,
                        help="gunicorn processes (default: portal/gunicorn_conf.py's)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads per gunicorn process (default: portal/gunicorn_conf.py's)")
    parser.add_argument("--costs", action="store_true",
                        help="first measure each read's CPU one request at a time")
    parser.add_argument("--baseline-tree", type=Path, default=None,
                        help="with --costs: the baseline is this source tree (another commit's "
                             "checkout, same database schema) rather than MODELGATE_PREPARED=off")
    parser.add_argument("--load", nargs=3, metavar=("BASE", "WORLD", "OUT"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.load:
        base, world, out = args.load
        run_load(base, json.loads(Path(world).read_text()), args.rate, args.seconds, out)
        return 0

    print(f"machine speed: {machine_speed():.0f} ms for the fixed workload (lower is faster)")
    recreate()
    data_dir = tempfile.mkdtemp(prefix="modelgate-bench-load-")
    env = environment(data_dir)
    if args.workers:
        env["WEB_CONCURRENCY"] = str(args.workers)
    if args.threads:
        env["MODELGATE_WEB_THREADS"] = str(args.threads)
    os.environ.update(env)
    world = seed()
    world_file = Path(data_dir) / "world.json"
    world_file.write_text(json.dumps(world))
    worker = subprocess.Popen([str(Path(sys.executable).parent / "celery"), "-A", "portal",
                               "worker", "-P", "solo", "--loglevel", "WARNING"], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc, base = start_server(env, Path(data_dir) / "gunicorn.log")
    peak = [0]
    stop = threading.Event()

    def sample():
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
            while not stop.is_set():
                count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                     (DB_NAME,)).fetchone()[0]
                peak[0] = max(peak[0], count)
                time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out = Path(data_dir) / "results.json"
    if args.costs:
        # The baseline, in the same run: the same portal compiling every query anew, or
        # another commit's tree.
        plain, plain_base = start_server(
            {**env, "MODELGATE_PREPARED": "off"}, Path(data_dir) / "gunicorn-baseline.log",
            tree=args.baseline_tree or ROOT)
        try:
            sequential_costs(base, world, proc.pid, baseline=(plain_base, plain.pid))
        finally:
            stop_server(plain)
    web_cpu = process_tree_cpu(proc.pid)
    try:
        subprocess.run([sys.executable, __file__, "--rate", str(args.rate), "--seconds",
                        str(args.seconds), "--load", base, str(world_file), str(out)],
                       check=True, env=env)
        web_cpu = process_tree_cpu(proc.pid) - web_cpu
    finally:
        stop.set()
        stop_server(proc)
        worker.terminate()
        worker.wait(timeout=30)
    results = json.loads(out.read_text())
    ok = report(results, peak[0], args.rate)
    print(f"web processes' CPU: {1000 * web_cpu / len(results['results']):.1f} ms a request")
    if not args.keep:
        from django.db import connections

        connections.close_all()
        recreate(drop_only=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
