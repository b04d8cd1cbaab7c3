"""One machine without containers, as docs/operations.md tells an operator: write an
environment file, generate a Procfile (or systemd units) with ``manage.py machine_install``,
start it, and the portal answers ``/readyz`` with both workers and beat running.

honcho is not installed here: the test runs each Procfile entry as honcho does (``sh -c``
with the environment file's variables). The systemd units are checked by
``systemd-analyze verify`` (no systemd runs here to start them); they carry the same
commands as the Procfile, which a test compares.
"""

from __future__ import annotations

import configparser
import os
import secrets
import shutil
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command

from portal.processes import processes
from tests.integration.boot_fixtures import ROOT, celery_ping, database, start, stop, wait_ready
from tests.integration.local_fixtures import free_port

__all__ = ["database"]  # the fixture


def env_file(tmp_path: Path, database_url: str, port: int) -> Path:
    """What an operator writes (docs/operations.md § One machine)."""
    path = tmp_path / "modelgate.env"
    path.write_text("\n".join([
        f"DJANGO_SECRET_KEY={secrets.token_urlsafe(50)}",
        "MODELGATE_REQUIRE_SECRET_KEY=true",
        "DJANGO_ALLOWED_HOSTS=127.0.0.1",
        f"DATABASE_URL={database_url}",
        "REDIS_URL=redis://127.0.0.1:6379/12",
        f"MODELGATE_REDIS_PREFIX=modelgate-machine-{os.getpid()}:",
        f"MODELGATE_DATA_DIR={tmp_path / 'data'}",
        f"MODELGATE_BIND=127.0.0.1:{port}",
        f"MODELGATE_CELERY_QUEUE=machine-{os.getpid()}",
        "MODELGATE_LOG_LEVEL=info", ""]))
    return path


def read_env(path: Path) -> dict:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_the_procfile_runs_the_portal_on_one_machine(database, tmp_path):
    port = free_port()
    env_path = env_file(tmp_path, database, port)
    procfile = tmp_path / "Procfile"
    out = StringIO()
    call_command("machine_install", "procfile", "--env-file", str(env_path), "--output",
                 str(procfile), stdout=out)
    assert f"honcho -e {env_path} -f {procfile} start" in out.getvalue()
    entries = dict(line.split(": ", 1) for line in procfile.read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(entries) == {"web", "worker", "rollout-worker", "beat"}
    # The environment file's queues and data folder, not those of the shell generating it.
    assert f"-Q machine-{os.getpid()} " in entries["worker"]
    assert f"-Q machine-{os.getpid()}-rollouts " in entries["rollout-worker"]
    assert f"--schedule {tmp_path / 'data' / 'celerybeat-schedule'}" in entries["beat"]
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "HOME": str(tmp_path), "LANG": "C.UTF-8", **read_env(env_path)}
    started = time.monotonic()
    running = {name: start(command, env, tmp_path / f"{name}.log", shell=True)
               for name, command in entries.items()}
    try:
        wait_ready(f"http://127.0.0.1:{port}", running, tmp_path, timeout=180)
        print(f"\none machine (Procfile): migrated and /readyz 200 in "
              f"{time.monotonic() - started:.1f} s")
        answers = celery_ping(env)
        assert "worker@" in answers and "rollout-worker@" in answers, answers
        assert answers.count("pong") == 2, answers
        time.sleep(2)
        assert running["beat"].poll() is None
    finally:
        stop(*running.values())


def test_systemd_units_carry_the_same_commands_and_pass_systemd_analyze(tmp_path):
    env_path = tmp_path / "modelgate.env"
    env_path.write_text("DJANGO_SECRET_KEY=x\n")
    folder = tmp_path / "units"
    call_command("machine_install", "systemd", "--env-file", str(env_path), "--output",
                 str(folder), "--user", "root", stdout=StringIO())
    procfile = tmp_path / "Procfile"
    call_command("machine_install", "procfile", "--env-file", str(env_path), "--output",
                 str(procfile), stdout=StringIO())
    entries = dict(line.split(": ", 1) for line in procfile.read_text().splitlines()
                   if line and not line.startswith("#"))
    for process in processes():
        unit = configparser.ConfigParser(interpolation=None, strict=False)
        unit.read(folder / f"modelgate-{process.name}.service")
        start_line = unit["Service"]["ExecStart"].replace("%%", "%")
        assert unit["Service"]["EnvironmentFile"] == str(env_path)
        if not process.oneshot:
            assert entries[process.name].endswith(start_line), (process.name, start_line)
            assert unit["Unit"]["Requires"] == "modelgate-migrate.service"
        assert (unit["Service"].get("KillMode") == "process") == process.starts_model_servers
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    units = sorted(str(p) for p in folder.iterdir())
    checked = subprocess.run(["systemd-analyze", "verify", "--man=no", *units],
                             capture_output=True, text=True, timeout=60)
    # It says what it dislikes in a unit file by its path (and may complain of the machine:
    # no systemd running here); nothing may be said of ours.
    assert str(folder) not in checked.stderr, checked.stderr


def test_the_kubernetes_manifests_run_the_same_commands():
    commands = {}
    for path in (ROOT / "deploy" / "kubernetes").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") in ("Deployment", "Job"):
                name = doc["metadata"]["name"].removeprefix("modelgate-")
                commands[name] = tuple(doc["spec"]["template"]["spec"]["containers"][0]
                                       ["command"])
    assert commands == {p.name: p.command for p in processes()}
