"""Rollback time on the local backend, under load.

Measures, through the portal's own services (the code path the Roll back button and
``POST /api/v1/deployments/{id}/rollback/`` take), the time from a rollback command to the
moment every answer comes from the stable version, while client threads keep sending
single-row requests to the endpoint. A canary at 50% is rolled back ``--runs`` times.

Prints per run: command time (the call returns once the backend observed the stable-only
plan), time to 100% stable (the last candidate answer after the command), and failed
requests over the whole run. Target: under 2 s to 100% stable, zero failed requests.

Run from the repository root (uses a throwaway SQLite database, no services needed):
    .venv/bin/python benchmarks/rollback.py [--runs 5] [--clients 4]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Load:
    """Client threads posting single-row requests; every answer is timestamped."""

    def __init__(self, url: str, clients: int):
        import requests

        self.url, self.stop, self.answers = url, threading.Event(), []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, args=(requests.Session(),),
                                         daemon=True) for _ in range(clients)]

    def _run(self, session):
        body = {"instances": [[14.0, 19.0, 90.0, 650.0, 0.1]]}
        while not self.stop.is_set():
            try:
                answer = session.post(f"{self.url}/invocations", json=body, timeout=5)
                record = (time.monotonic(), answer.status_code, answer.headers.get("X-Variant"))
            except Exception as e:  # noqa: BLE001 - a failed request is what we count
                record = (time.monotonic(), 0, type(e).__name__)
            with self.lock:
                self.answers.append(record)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--clients", type=int, default=4)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="modelgate-rollback-")
    os.environ.update(MODELGATE_DATA_DIR=data_dir, CELERY_TASK_ALWAYS_EAGER="true",
                      DJANGO_SETTINGS_MODULE="portal.settings", CELERY_BROKER_URL="memory://")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from portal.accounts.choices import Role
    from portal.accounts.models import Membership
    from portal.registry import services as registry
    from portal.releases import deployments
    from portal.releases import services as releases
    from portal.releases.models import Deployment
    from tests.integration.local_fixtures import free_port
    from tests.portal_fixtures import FEATURES, random_classifier_bytes

    call_command("migrate", verbosity=0)
    User = get_user_model()
    owner = User.objects.create_user("owner")
    approver = User.objects.create_user("approver")
    project = registry.create_project(owner, name="Bench", slug="bench")
    Membership.objects.create(project=project, user=approver, role=Role.APPROVER)
    model = registry.create_model(owner, project, name="tumor", task="classification")
    port = free_port()
    settings.MODELGATE_TARGETS = {"local": {"backend": "local", "ports": f"{port}-{port}"}}
    env = releases.create_environment(owner, project, name="production")
    schema = [{"name": f, "type": "double"} for f in FEATURES]

    def version(seed):
        v = registry.register_version(owner, model, io.BytesIO(random_classifier_bytes(seed)),
                                      {"input_schema": schema})
        return registry.validate_version(v.pk)

    def release(v, strategy, params=None) -> Deployment:
        request = releases.request_approval(owner, v, env, strategy=strategy,
                                            strategy_params=params or {})
        releases.review(approver, request, "approve", "bench")
        return Deployment.objects.get(request=request)

    def finished(deployment: Deployment, timeout: float = 120) -> Deployment:
        """Advance a rollout as the worker and beat would, until it ends: a direct release
        is done only once the server answers, and the next release waits for it."""
        deadline = time.monotonic() + timeout
        while deployment.status in deployments.ACTIVE:
            if time.monotonic() > deadline:
                raise SystemExit(f"the first release is still {deployment.status} after "
                                 f"{timeout:.0f} s")
            time.sleep(0.5)
            deployments.advance(deployment.pk)
            deployment.refresh_from_db()
        return deployment

    url = f"http://127.0.0.1:{port}"
    stable = version(1)
    first = finished(release(stable, "direct"))
    if first.status != "succeeded":
        raise SystemExit(f"the first release ended {first.status}: "
                         + "; ".join(e.reason for e in first.events.all()))
    backend = deployments.backend_for(first)
    print(f"stable serving on {url}; {args.clients} client threads; {args.runs} rollbacks")
    rows = []
    try:
        with Load(url, args.clients) as load:
            for run in range(args.runs):
                candidate = version(100 + run)
                deployment = release(candidate, "canary", {
                    "steps": [{"weight": 0.5, "bake_seconds": 3600},
                              {"weight": 1.0, "bake_seconds": 60}]})
                time.sleep(2)  # steady traffic on the 50/50 split
                started = time.monotonic()
                deployments.command(approver, deployment, "rollback")
                returned = time.monotonic()
                time.sleep(2)
                with load.lock:
                    after = [a for a in load.answers if a[0] >= started]
                candidate_answers = [t for t, code, variant in after if variant == "candidate"]
                last_candidate = max(candidate_answers, default=started)
                rows.append((returned - started, last_candidate - started,
                             len([a for a in after if a[1] == 200])))
                print(f"run {run + 1}: command {1000 * (returned - started):7.1f} ms   "
                      f"100% stable after {1000 * (last_candidate - started):7.1f} ms   "
                      f"({len(candidate_answers)} candidate answers after the command)")
            answers = list(load.answers)
    finally:
        backend.delete("tumor")
    failed = [a for a in answers if a[1] != 200]
    to_stable = [r[1] for r in rows]
    print()
    print(f"requests answered: {len(answers)}, failed: {len(failed)}")
    print(f"time to 100% stable: median {1000 * statistics.median(to_stable):.0f} ms, "
          f"max {1000 * max(to_stable):.0f} ms (target < 2000 ms)")
    print(f"rollback command returns in: median "
          f"{1000 * statistics.median(r[0] for r in rows):.0f} ms")
    ok = max(to_stable) < 2.0 and not failed
    print("overall:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
