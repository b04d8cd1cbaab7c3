"""Starting the portal's processes as an install would, for the install-path tests
(test_manifest_boot.py, test_machine_install.py): a database of their own, the processes
in sessions of their own, and waiting for ``/readyz``."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def database():
    """A PostgreSQL database of the test's own (dropped after), as a DATABASE_URL."""
    name = f"modelgate_boot_{os.getpid()}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://postgres@127.0.0.1:5432/{name}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start(command, env: dict, log: Path, shell: bool = False) -> subprocess.Popen:
    return subprocess.Popen(command, cwd=ROOT, env=env, shell=shell, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def wait_ready(url: str, processes: dict, logs: Path, headers: dict | None = None,
               timeout: float = 120) -> requests.Response:
    """``/readyz`` answering 200; fails with the log of any process that died first."""
    answer, deadline = None, time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = {n: p.returncode for n, p in processes.items() if p.poll() is not None}
        assert not dead, {n: (logs / f"{n}.log").read_text()[-3000:] for n in dead}
        try:
            answer = requests.get(f"{url}/readyz", timeout=5, headers=headers or {})
            if answer.status_code == 200:
                return answer
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.5)
    raise AssertionError(answer.text if answer is not None
                         else (logs / "web.log").read_text()[-3000:])


def celery_ping(env: dict) -> str:
    """What every running worker answers ``celery inspect ping``."""
    done = subprocess.run([str(Path(env["PATH"].split(":")[0]) / "celery"), "-A", "portal",
                           "inspect", "ping", "--timeout", "10"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    return done.stdout + done.stderr
