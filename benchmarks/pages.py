"""Page load in a browser: the portal's main pages in headless Chromium, cold and warm.

    .venv/bin/python benchmarks/pages.py [--runs 3] [--keep] [--serve]

1. (Re)creates the database ``modelgate_bench_pages``, migrates it and seeds the demo's data
   (portal/demo.py: users, the clinical-ml project, two models of three versions each with
   their SHAP explanations, datasets, release requests, two rollouts), plus an A/B test on
   the classifier's endpoint (as benchmarks/portal_load.py makes one: no model servers).
2. Runs collectstatic and starts gunicorn with the production settings (DEBUG off, static
   files under hashed names with gzip and brotli copies, served by WhiteNoise), as the image
   and ``make demo`` do.
3. For each page (dashboard, model, version with explanations, dataset, release request,
   rollout, endpoint monitoring, A/B test), signed in as the approver, ``--runs`` times:
   cold, a new browser context (empty cache) opening the page; warm, a reload in that context.
   Time is to the load event (the page's scripts have run, the charts on screen are drawn;
   those below the fold are drawn after it, and the time until every chart is drawn is
   printed too); bytes are
   what went over the wire until then (headers and compressed bodies, Resource Timing's
   transferSize; 0 for what the cache answered without asking).
4. Prints each page's median and PASS/FAIL against: load event < 1 s cold and < 300 ms warm,
   at most 1.5 MB transferred cold.

``--serve`` stops after step 2 and keeps the portal running (for looking at pages); ``--keep``
keeps the database. Exit status 0 when every target is met.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from portal_load import start_server  # noqa: E402 - gunicorn as deployed
from registry_api import PG_SERVER, stop_server  # noqa: E402

DB_NAME = "modelgate_bench_pages"
CHROMIUM = "/usr/bin/chromium"
USER, PASSWORD = "alice", "modelgate-demo"  # the demo's approver: sees every page
COLD_MS, WARM_MS, COLD_BYTES = 1000, 300, 1_500_000


def recreate(drop_only: bool = False) -> None:
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def environment(data_dir: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MODELGATE_"))}
    env.update({"DATABASE_URL": f"{PG_SERVER}/{DB_NAME}", "MODELGATE_DATA_DIR": data_dir,
                "DJANGO_SETTINGS_MODULE": "portal.settings", "DJANGO_DEBUG": "false",
                "DJANGO_SECRET_KEY": "pages-benchmark-" + "k" * 40,
                "MODELGATE_REQUIRE_SECRET_KEY": "true", "MODELGATE_LOG_LEVEL": "WARNING",
                "MODELGATE_REDIS_PREFIX": f"modelgate-pages-{os.getpid()}:",
                "MODELGATE_CELERY_QUEUE": f"modelgate-pages-{os.getpid()}"})
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    return env


def seed() -> None:
    """The demo's data (its tasks, SHAP included, run in this process) and an A/B test."""
    from django.core.management import call_command

    from ops import rollout
    from portal import demo
    from portal.experiments import services as experiments
    from portal.registry.models import ModelVersion, RegisteredModel
    from portal.releases import deployments
    from portal.releases.models import Deployment

    call_command("migrate", verbosity=0)
    with contextlib.redirect_stdout(io.StringIO()):  # the console e-mails of the requests
        demo.seed(log=lambda *_: None)
    demo.ensure_monitoring()
    model = RegisteredModel.objects.get(name="tumor-classifier")
    versions = {v.number: v for v in ModelVersion.objects.filter(model=model)}
    current = Deployment.objects.get(model=model)
    Deployment.objects.filter(pk=current.pk).update(status="succeeded")
    stable, candidate = versions[2], versions[3]
    spec = deployments._spec("ab", {"split": 0.5, "duration_seconds": 86400}, model.name,
                             candidate, stable)
    state = rollout.RolloutState(status=rollout.Status.PROGRESSING, generation=2,
                                 base_generation=1, step_started_at=time.time())
    ab = Deployment.objects.create(
        environment=current.environment, model=model, candidate=candidate, stable=stable,
        endpoint=model.name, strategy="ab", spec=spec.to_dict(), state=state.to_dict(),
        status="progressing")
    experiments.create_for(ab, generation=2)


def pages() -> dict[str, str]:
    from portal.experiments.models import Experiment
    from portal.registry.models import Dataset, ModelVersion, RegisteredModel
    from portal.releases.models import ApprovalRequest, Deployment

    model = RegisteredModel.objects.get(name="tumor-classifier")
    current = Deployment.objects.filter(model=model, strategy="direct").get()
    experiment = Experiment.objects.get(deployment__model=model)
    explained = ModelVersion.objects.filter(model=model, explanation__status="ready").last()
    request = ApprovalRequest.objects.filter(status="open").order_by("pk").first()
    project, environment = model.project, current.environment
    return {
        "dashboard": "/",
        "model": model.get_absolute_url(),
        "version": explained.get_absolute_url(),
        "dataset": Dataset.objects.filter(project=project).first().get_absolute_url(),
        "release request": request.get_absolute_url(),
        "rollout": current.get_absolute_url(),
        "monitoring": f"/p/{project.slug}/environments/{environment.name}/monitoring/"
                      f"{model.name}/",
        "A/B test": experiment.get_absolute_url(),
    }


def session_cookies(base: str) -> list[dict]:
    """Sign in through the login form once; the cookies every browser context starts with."""
    session = requests.Session()
    form = session.get(f"{base}/login/", timeout=30).text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form)[1]
    answer = session.post(f"{base}/login/", data={"username": USER, "password": PASSWORD,
                                                  "csrfmiddlewaretoken": csrf},
                          headers={"Referer": f"{base}/login/"}, timeout=30)
    answer.raise_for_status()
    if "sessionid" not in session.cookies:
        raise RuntimeError(f"could not sign in as {USER}")
    return [{"name": k, "value": v, "url": base} for k, v in session.cookies.get_dict().items()]


MEASURE = """() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const resources = performance.getEntriesByType("resource")
    .filter(r => r.startTime <= nav.loadEventStart);
  return {load: nav.loadEventStart, server: nav.responseStart - nav.requestStart,
          scripts: nav.domContentLoadedEventEnd - nav.domContentLoadedEventStart,
          html: nav.transferSize, bytes: nav.transferSize +
          resources.reduce((sum, r) => sum + r.transferSize, 0),
          requests: 1 + resources.length,
          fresh: 1 + resources.filter(r => r.transferSize > 0).length};
}"""


# Every chart drawn (charts.js draws those below the fold after the load event).
DRAWN = """() => [...document.querySelectorAll("[data-chart]")]
  .every(el => el.classList.contains("drawn") || !document.getElementById(el.dataset.chart))"""


def measure(browser, base: str, cookies: list[dict], path: str) -> tuple[dict, dict]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.add_cookies(cookies)
    page = context.new_page()
    errors = []
    page.on("response", lambda r: r.status >= 400 and errors.append(f"{r.status} {r.url}"))
    page.goto(base + path, wait_until="load")
    cold = page.evaluate(MEASURE)
    page.wait_for_function(DRAWN, timeout=30_000)
    cold["charts"] = page.evaluate("() => performance.now()")
    page.reload(wait_until="load")
    warm = page.evaluate(MEASURE)
    context.close()
    if errors:
        raise RuntimeError(f"{path}: {errors}")
    return cold, warm


def median(runs: list[tuple[dict, dict]], key: str) -> float:
    return statistics.median(w[key] for _, w in runs)


def report(results: dict[str, list[tuple[dict, dict]]]) -> bool:
    ok = True
    print(f"\n{'page':<16}{'cold ms':>9}{'warm ms':>9}{'cold KB':>9}{'warm KB':>9}"
          f"{'requests':>10}   cold<1s warm<300ms cold<=1.5MB  (warm: server ms, "
          "DOMContentLoaded handlers ms, HTML KB; cold: all charts drawn ms)")
    for name, runs in results.items():
        cold = statistics.median(c["load"] for c, _ in runs)
        warm = statistics.median(w["load"] for _, w in runs)
        cold_bytes = statistics.median(c["bytes"] for c, _ in runs)
        warm_bytes = statistics.median(w["bytes"] for _, w in runs)
        requests_ = runs[0][0]["requests"]
        checks = [cold < COLD_MS, warm < WARM_MS, cold_bytes <= COLD_BYTES]
        ok = ok and all(checks)
        marks = "".join(f"{'PASS' if c else 'FAIL':>{w}}" for c, w in zip(checks, (9, 10, 12),
                                                                               strict=True))
        print(f"{name:<16}{cold:>9.0f}{warm:>9.0f}{cold_bytes / 1000:>9.0f}"
              f"{warm_bytes / 1000:>9.1f}{requests_:>10}{marks}  ({median(runs, 'server'):.0f}, "
              f"{median(runs, 'scripts'):.0f}, {median(runs, 'html') / 1000:.1f}; "
              f"{statistics.median(c['charts'] for c, _ in runs):.0f})")
    print(f"\n{'PASS' if ok else 'FAIL'}: every page's load event < {COLD_MS} ms cold and "
          f"< {WARM_MS} ms warm, <= {COLD_BYTES / 1e6:.1f} MB transferred cold "
          "(medians)")
    print("load average (1, 5, 15 min): {:.1f} {:.1f} {:.1f} on {} CPUs; times are wall time on "
          "whatever else the machine runs".format(*os.getloadavg(), os.cpu_count()))
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the database")
    parser.add_argument("--reuse", action="store_true",
                        help="use the database a run with --keep left (no seeding)")
    parser.add_argument("--serve", action="store_true",
                        help="seed, start the portal, print its pages and wait")
    args = parser.parse_args()

    from playwright.sync_api import sync_playwright

    if not args.reuse:
        recreate()
    data_dir = tempfile.mkdtemp(prefix="modelgate-bench-pages-")
    env = environment(data_dir)
    os.environ.update(env, CELERY_TASK_ALWAYS_EAGER="true")
    import django

    django.setup()
    from django.core.management import call_command

    if not args.reuse:
        started = time.monotonic()
        seed()
        print(f"seeded the demo's data in {time.monotonic() - started:.0f} s")
    call_command("collectstatic", interactive=False, verbosity=0)
    paths = pages()
    proc, base = start_server(env, Path(data_dir) / "gunicorn.log", seconds=90)
    try:
        cookies = session_cookies(base)
        if args.serve:
            print(f"portal: {base} (user {USER}, password {PASSWORD})", flush=True)
            for name, path in paths.items():
                print(f"  {name:<16}{base}{path}", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # clean up as on Ctrl-C
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
            return 0
        results: dict[str, list] = {name: [] for name in paths}
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM)
            for _ in range(args.runs):
                for name, path in paths.items():
                    results[name].append(measure(browser, base, cookies, path))
            browser.close()
        return 0 if report(results) else 1
    finally:
        stop_server(proc)
        from django.db import connections

        connections.close_all()
        if not (args.keep or args.reuse):
            recreate(drop_only=True)
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
