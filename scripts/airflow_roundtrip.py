"""A retraining trigger against a real Airflow: the round trip, end to end (decision 67).

    .venv/bin/python scripts/airflow_roundtrip.py [--venv DIR] [--port N] [--keep]

1. Builds a throwaway virtualenv with apache-airflow (uv; ``--venv`` reuses one).
2. Starts ``airflow standalone`` on 127.0.0.1 (its own AIRFLOW_HOME, SQLite, no examples)
   with one small DAG, ``modelgate_retrain``, whose task prints the ``conf`` it got.
3. Migrates a throwaway portal database (SQLite under the work folder), creates a project,
   a model, a version serving in production, a critical drift incident 40 minutes old and a
   retraining rule pointing at that Airflow (``MODELGATE_RETRAINING_TARGETS``, user and
   password of Airflow's simple auth manager), then runs the rules' evaluation once: the
   portal fires the trigger and sends it (Airflow 3's ``POST /api/v2/dags/{dag_id}/dagRuns``
   after ``POST /auth/token``).
4. Reads the DAG run back from Airflow and checks it exists with the trigger's evidence in
   its ``conf`` (the alert, the drifted features, the window, the serving version).

It prints what it did and PASS or FAIL (exit status 0 or 1), and stops every process it
started. Not part of the test suite: it downloads Airflow and takes minutes.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UV = ROOT / ".venv" / "bin" / "uv"
DAG_ID = "modelgate_retrain"
FEATURES = ["mean radius", "mean texture", "mean perimeter"]
DRIFTED = ["mean radius", "mean texture"]
USER, PASSWORD = "admin", "roundtrip-password"
DAG = f'''
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="{DAG_ID}", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def retrain():
    @task
    def show(**context):
        conf = context["dag_run"].conf or {{}}
        print("retraining because of trigger", conf.get("trigger_id"), conf.get("evidence"))

    show()


retrain()
'''


def say(text: str) -> None:
    print(f"[airflow-roundtrip] {text}", flush=True)


def build_venv(venv: Path, spec: str) -> Path:
    airflow = venv / "bin" / "airflow"
    if airflow.exists():
        say(f"reusing the virtualenv {venv}")
        return airflow
    say(f"building a virtualenv with {spec} in {venv} (uv)")
    subprocess.run([str(UV), "venv", "-q", "--python", "3.11", str(venv)], check=True)
    started = time.monotonic()
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    spec], check=True)
    say(f"installed in {time.monotonic() - started:.0f} s")
    return airflow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_airflow(airflow: Path, home: Path, port: int) -> subprocess.Popen:
    (home / "dags").mkdir(parents=True, exist_ok=True)
    (home / "dags" / "modelgate_retrain.py").write_text(DAG)
    passwords = home / "passwords.json"
    passwords.write_text(json.dumps({USER: PASSWORD}))
    env = {**os.environ, "AIRFLOW_HOME": str(home),
           "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
           "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
           "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
           "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
           # The task logs' server (8793 by default) and the triggerer's: free ports too.
           "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
           "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
           # standalone starts its components as `airflow …` from PATH.
           "PATH": f"{airflow.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE"):
        env.pop(name, None)
    log = open(home / "standalone.log", "wb")  # noqa: SIM115 (open while the process runs)
    say(f"starting airflow standalone on 127.0.0.1:{port} (log: {home / 'standalone.log'})")
    return subprocess.Popen([str(airflow), "standalone"], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)


def call(method: str, url: str, body=None, token: str | None = None) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Content-Type": "application/json",
        **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            return e.code, json.loads(e.read() or b"{}")
        except ValueError:
            return e.code, {}
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def wait_for(what: str, check, timeout: float, process: subprocess.Popen):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited ({process.returncode}) while "
                               f"waiting for {what}")
        found = check()
        if found:
            return found
        time.sleep(2)
    raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")


def token_for(url: str) -> str | None:
    status, body = call("POST", f"{url}/auth/token", {"username": USER, "password": PASSWORD})
    return body.get("access_token") if status in (200, 201) else None


def fire_through_the_portal(url: str, work: Path) -> dict:
    """Run the portal's own code on a throwaway SQLite database: the rule, the incident,
    one evaluation (which sends the trigger in this process)."""
    os.environ.pop("DATABASE_URL", None)
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "portal.settings", "MODELGATE_DATA_DIR": str(work),
        "CELERY_TASK_ALWAYS_EAGER": "true", "CELERY_BROKER_URL": "memory://",
        "MODELGATE_WEBHOOK_ALLOW_PRIVATE": "true",
        "MODELGATE_RETRAINING_TARGETS": json.dumps({"airflow": {
            "kind": "airflow", "url": url, "username": USER, "password": PASSWORD}})})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone

    from portal.monitoring import alerts
    from portal.monitoring.choices import AlertSource
    from portal.monitoring.models import DriftWindow
    from portal.registry import services as registry
    from portal.releases import services as releases
    from portal.retraining import services
    from portal.retraining.models import RetrainingTrigger

    say("migrating a throwaway portal database (SQLite)")
    call_command("migrate", verbosity=0)
    owner = get_user_model().objects.create_user("olivia", password="pw")
    project = registry.create_project(owner, name="Clinical ML", slug="clinical-ml")
    model = registry.create_model(owner, project, name="tumor-classifier",
                                  task="classification")
    production = releases.create_environment(owner, project, name="production")
    # What serves there: a validated version, and the drift window the worker would have
    # computed for its inputs (two features drifted far), so the evidence Airflow receives
    # names the serving version and the drifted features with their statistics.
    version = registry.validate_version(registry.register_version(
        owner, model, io.BytesIO(_classifier()),
        {"input_schema": [{"name": n, "type": "double"} for n in FEATURES]}).pk)
    feature_report = [{"name": n, "verdict": "critical" if n in DRIFTED else "no_drift",
                       "count": 800, "psi": 0.91 if n in DRIFTED else 0.01,
                       "ks": 0.42 if n in DRIFTED else 0.02} for n in FEATURES]
    DriftWindow.objects.create(environment=production, model=model, version=version,
                               endpoint="tumor-classifier", variant="stable",
                               window_seconds=300, computed_at=timezone.now(),
                               report={"features": feature_report, "dataset_drift": False})
    say(f"v{version.number} ({version.status}) serving in production; its drift window: "
        f"{', '.join(DRIFTED)} critical")
    rule, _ = services.create_rule(owner, model, name="drift in production",
                                   condition="drift", for_minutes=30, target="airflow",
                                   params={"dag_id": DAG_ID})
    since = (timezone.now() - timedelta(minutes=40)).isoformat()
    labels = {"alertname": "ModelgateFeatureDriftCritical", "severity": "critical",
              "project": "clinical-ml", "model": "tumor-classifier",
              "environment": "production", "endpoint": "tumor-classifier", "variant": "stable"}
    body = {"alerts": [{"status": "firing", "startsAt": since,
                        "labels": {**labels, "feature": feature},
                        "annotations": {"summary": f"{feature} drifted far"}}
                       for feature in DRIFTED]}
    alerts.ingest(alerts.from_alertmanager(body), AlertSource.ALERTMANAGER)
    say(f"rule {rule.name!r} -> airflow DAG {DAG_ID}; a critical drift incident 40 min old")
    result = services.evaluate()
    trigger = RetrainingTrigger.objects.order_by("-id").first()
    say(f"evaluation: {result}; trigger {trigger.pk if trigger else None}: "
        f"{trigger.state if trigger else '-'} {trigger.last_error if trigger else ''}")
    if trigger is None:
        raise RuntimeError("no trigger fired")
    return {"id": trigger.pk, "state": trigger.state, "run_id": trigger.run_id,
            "run_url": trigger.run_url, "error": trigger.last_error,
            "evidence": trigger.evidence}


def _classifier() -> bytes:
    """A small fitted classifier over FEATURES, as skops."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from ops.artifacts import dump_skops

    rows = np.random.default_rng(0).normal(size=(40, len(FEATURES)))
    return dump_skops(LogisticRegression().fit(rows, [0, 1] * 20))


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(process: subprocess.Popen) -> None:
    """Stop standalone and every component it started (its process group): SIGTERM, then
    SIGKILL whatever is left after 30 s."""
    if not _group_alive(process.pid):
        return
    say("stopping airflow standalone")
    os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        process.poll()
        if not _group_alive(process.pid):
            return
        time.sleep(0.5)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def check(url: str, trigger: dict) -> list[str]:
    """What is wrong with the DAG run Airflow has for ``trigger`` (empty: nothing)."""
    if trigger["state"] != "sent":
        return [f"the trigger is {trigger['state']}: {trigger['error']}"]
    token = token_for(url)
    status, run = call("GET", f"{url}/api/v2/dags/{DAG_ID}/dagRuns/{trigger['run_id']}",
                       token=token)
    if status != 200:
        return [f"GET the DAG run answered {status}: {run}"]
    say(f"Airflow has DAG run {run.get('dag_run_id')} ({run.get('state')}, "
        f"{run.get('run_type')}); its conf: {json.dumps(run.get('conf'))[:300]}…")
    conf = run.get("conf") or {}
    evidence = conf.get("evidence") or {}
    problems = []
    if conf.get("trigger_id") != trigger["id"]:
        problems.append(f"conf.trigger_id is {conf.get('trigger_id')}, not {trigger['id']}")
    if evidence.get("alert", {}).get("name") != "ModelgateFeatureDriftCritical":
        problems.append("the evidence does not name the alert")
    if sorted(a.get("feature") for a in evidence.get("alerts", [])) != ["mean radius",
                                                                        "mean texture"]:
        problems.append("the evidence does not list the drifted features' alerts")
    if not evidence.get("window", {}).get("from"):
        problems.append("the evidence has no window")
    if (evidence.get("serving_version") or {}).get("number") != 1:
        problems.append(f"the evidence names no serving v1: {evidence.get('serving_version')}")
    drifted = {f.get("name"): f for f in evidence.get("features", [])}
    if sorted(drifted) != sorted(DRIFTED) or any(f.get("psi") != 0.91
                                                 for f in drifted.values()):
        problems.append(f"the evidence's drifted features are {sorted(drifted)}, not "
                        f"{sorted(DRIFTED)} with their statistics")
    if evidence != trigger["evidence"]:
        problems.append("the conf's evidence differs from the trigger's")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, help="reuse (or build here) the Airflow virtualenv")
    parser.add_argument("--airflow", default="apache-airflow", help="the pip requirement")
    parser.add_argument("--port", type=int, default=0,
                        help="the API server's port (default: a free one)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--timeout", type=float, default=300.0,
                        help="seconds to wait for Airflow to come up and parse the DAG")
    args = parser.parse_args()
    # Stopped (Ctrl-C, kill): still stop Airflow and remove the work folder.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    work = Path(tempfile.mkdtemp(prefix="modelgate-airflow-roundtrip-"))
    venv = args.venv or work / "venv"
    process = None
    try:
        airflow = build_venv(venv, args.airflow)
        version = subprocess.run([str(airflow), "version"], capture_output=True, text=True,
                                 env={k: v for k, v in os.environ.items()
                                      if k != "DATABASE_URL"}).stdout.strip()
        say(f"Airflow {version}")
        port = args.port or free_port()
        process = start_airflow(airflow, work / "airflow", port)
        url = f"http://127.0.0.1:{port}"
        wait_for("the API server", lambda: call("GET", f"{url}/api/v2/monitor/health")[0]
                 == 200, args.timeout, process)
        token = wait_for("a token from /auth/token", lambda: token_for(url), 60, process)
        wait_for(f"DAG {DAG_ID} to be parsed",
                 lambda: call("GET", f"{url}/api/v2/dags/{DAG_ID}", token=token)[0] == 200,
                 args.timeout, process)
        say(f"Airflow answers at {url}; DAG {DAG_ID} is parsed")
        trigger = fire_through_the_portal(url, work / "portal")
        say(f"trigger {trigger['id']} sent: run {trigger['run_id']} ({trigger['run_url']})")
        problems = check(url, trigger)
    except (RuntimeError, subprocess.CalledProcessError, OSError) as e:
        problems = [str(e)]
    finally:
        if process is not None:
            stop(process)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            say(f"work folder kept: {work}")
    for problem in problems:
        say(f"problem: {problem}")
    print("PASS" if not problems else "FAIL", flush=True)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
