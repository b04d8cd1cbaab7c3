"""Feedback ingestion throughput of ``POST /api/v1/feedback/`` over real HTTP.

    .venv/bin/python benchmarks/feedback.py [--outcomes 200000] [--batch 10000] [--keep]

1. (Re)creates its own PostgreSQL database ``modelgate_bench_feedback`` on 127.0.0.1:5432
   and migrates it.
2. Seeds one project with a model, two versions and an A/B deployment in the running state
   with its experiment (the deployment row is written directly: no model server runs), and
   a contributor with an API token.
3. Mints signed prediction ids with the endpoint's real key (``portal.experiments.signing``,
   the same ``ops.serving.ids`` code model servers use), half for each variant.
4. Starts gunicorn with the portal's own configuration (portal/gunicorn_conf.py, DEBUG off)
   and posts the outcomes: (a) batches of ``--batch`` from one client, (b) the same from
   two clients at once, (c) the baseline: the single-item form, one outcome per request,
   for 2,000 outcomes. Wall time from the first request to the last answer, client side.
5. Checks that every outcome was counted once (the variant totals equal what was sent),
   prints outcomes/s per form against the target of 5,000/s for the batch form and the
   ratio to the single-item form; then stops gunicorn and drops the database.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from registry_api import PG_SERVER, start_server, stop_server  # noqa: E402

DB_NAME = "modelgate_bench_feedback"
TARGET = 5000.0


def recreate(drop_only: bool = False) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def seed() -> tuple[str, object]:
    import django

    django.setup()
    import numpy as np
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from sklearn.linear_model import LogisticRegression

    from ops import rollout
    from ops.artifacts import dump_skops
    from portal.accounts.choices import Role
    from portal.accounts.models import Membership, RateLimit
    from portal.accounts.services import create_token
    from portal.experiments import services as experiments
    from portal.registry import services
    from portal.releases import deployments
    from portal.releases import services as releases
    from portal.releases.models import Deployment

    call_command("migrate", verbosity=0)
    users = get_user_model().objects
    owner = users.create_user("bench-owner", password="x")
    sender = users.create_user("bench-integrator", password="x")
    project = services.create_project(owner, name="Bench", slug="bench")
    Membership.objects.create(project=project, user=sender, role=Role.CONTRIBUTOR)
    # The single-item baseline sends thousands of requests a minute: this account, and only
    # it, is given a rate above the portal's 600/min (decision 69), as an operator would
    # give a high-volume integration.
    RateLimit.objects.create(user=sender, scope="feedback", rate="1000000/min",
                             reason="the feedback benchmark's own integration")
    model = services.create_model(owner, project, name="churn", task="classification")
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(200, 4)), rng.integers(0, 2, 200)
    schema = [{"name": f"f{i}", "type": "double"} for i in range(4)]
    versions = []
    for c in (1.0, 0.1):
        artifact = dump_skops(LogisticRegression(C=c).fit(X, y))
        versions.append(services.register_version(owner, model, io.BytesIO(artifact),
                                                   {"input_schema": schema}))
    environment = releases.create_environment(owner, project, name="production")
    stable, candidate = versions
    spec = deployments._spec("ab", {"split": 0.5, "duration_seconds": 86400}, model.name,
                             candidate, stable)
    state = rollout.RolloutState(status=rollout.Status.PROGRESSING, generation=2,
                                 base_generation=1, step_started_at=time.time())
    deployment = Deployment.objects.create(
        environment=environment, model=model, candidate=candidate, stable=stable,
        endpoint=model.name, strategy="ab", spec=spec.to_dict(), state=state.to_dict(),
        status="progressing")
    experiment = experiments.create_for(deployment, generation=2)
    _, token = create_token(sender, "bench")
    return token, experiment


def mint(experiment, count: int) -> list[dict]:
    import numpy as np

    from ops.serving.ids import new_prediction_ids
    from portal.experiments.signing import signer_for

    signer = signer_for(experiment.deployment.environment_id, experiment.deployment.model_id)
    rng = np.random.default_rng(1)
    items = []
    for i in range(count):
        variant = "candidate" if i % 2 else "stable"
        items.append({"prediction_id": new_prediction_ids(variant, 2, 1, signer=signer)[0],
                      "outcome": int(rng.random() < (0.12 if i % 2 else 0.10))})
    return items


def post_batches(base: str, token: str, items: list[dict], batch: int,
                 clients: int) -> tuple[float, list[float], int]:
    """Seconds from the first request to the last answer, per-batch latencies, accepted."""
    chunks = [items[i:i + batch] for i in range(0, len(items), batch)]
    bodies = [json.dumps({"items": c}).encode() for c in chunks]  # encoded before the clock
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()
    headers = {"Authorization": f"Token {token}", "Content-Type": "application/json"}

    def run(mine: list[bytes]):
        session = requests.Session()
        for body in mine:
            started = time.perf_counter()
            answer = session.post(f"{base}/api/v1/feedback/", data=body, headers=headers,
                                  timeout=120)
            took = time.perf_counter() - started
            answer.raise_for_status()
            result = answer.json()
            if result["rejected"]:
                raise RuntimeError(f"refused: {result['errors'][:3]}")
            with lock:
                latencies.append(took)
                accepted[0] += result["accepted"]

    threads = [threading.Thread(target=run, args=(bodies[k::clients],)) for k in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, accepted[0]


def post_singles(base: str, token: str, items: list[dict]) -> float:
    session = requests.Session()
    headers = {"Authorization": f"Token {token}"}
    started = time.perf_counter()
    for item in items:
        session.post(f"{base}/api/v1/feedback/", json=item, headers=headers,
                     timeout=30).raise_for_status()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--outcomes", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--singles", type=int, default=2_000)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    args = parser.parse_args()

    recreate()
    data_dir = tempfile.mkdtemp(prefix="modelgate-bench-feedback-")
    env = {"DATABASE_URL": f"{PG_SERVER}/{DB_NAME}", "MODELGATE_DATA_DIR": data_dir,
           "DJANGO_SETTINGS_MODULE": "portal.settings", "DJANGO_DEBUG": "false",
           "MODELGATE_LOG_LEVEL": "WARNING", "CELERY_TASK_ALWAYS_EAGER": "true"}
    os.environ.update(env)
    token, experiment = seed()
    half = args.outcomes // 2
    one, two = mint(experiment, half), mint(experiment, args.outcomes - half)
    singles = mint(experiment, args.singles)
    proc, base = start_server(dict(os.environ), Path(data_dir) / "gunicorn.log")
    rows = []
    try:
        post_batches(base, token, mint(experiment, 2 * args.batch), args.batch, 1)  # warm-up
        for label, items, clients in ((f"batch of {args.batch:,}, 1 client", one, 1),
                                      (f"batch of {args.batch:,}, 2 clients", two, 2)):
            seconds, latencies, accepted = post_batches(base, token, items, args.batch,
                                                        clients)
            assert accepted == len(items), (accepted, len(items))
            rows.append((label, len(items), seconds, statistics.median(latencies)))
        seconds = post_singles(base, token, singles)
        rows.append(("single item per request (baseline)", len(singles), seconds,
                     seconds / len(singles)))
    finally:
        stop_server(proc)

    from portal.experiments.models import VariantTotal

    counted = sum(VariantTotal.objects.filter(experiment=experiment).values_list("n", flat=True))
    sent = 2 * args.batch + args.outcomes + args.singles
    print(f"\nfeedback ingestion over HTTP (gunicorn as configured, PostgreSQL); counted {counted:,} of "
          f"{sent:,} sent: {'OK' if counted == sent else 'MISMATCH'}")
    print(f"{'form':<38} {'outcomes':>9} {'seconds':>8} {'outcomes/s':>11} "
          f"{'p50 request':>12}")
    baseline = rows[-1][1] / rows[-1][2]
    ok = counted == sent
    for label, n, seconds, p50 in rows:
        rate = n / seconds
        verdict = ""
        if label.startswith("batch"):
            verdict = f" {'PASS' if rate >= TARGET else 'FAIL'} ({rate / baseline:.0f}x single)"
            ok = ok and rate >= TARGET
        print(f"{label:<38} {n:>9,} {seconds:>8.2f} {rate:>11,.0f} {p50 * 1000:>10.1f} ms"
              f"{verdict}")
    print(f"target: at least {TARGET:,.0f} outcomes/s with the batch form")
    if not args.keep:
        from django.db import connections

        connections.close_all()
        recreate(drop_only=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
