"""Helpers of the CLI's tests (not fixtures): the package on ``sys.path``, a person and a
worker played in a thread while a command runs, a proxy that can be restarted, and the
CLI installed with pip into a throwaway virtualenv."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLI_ROOT = ROOT / "clients" / "cli"
if str(CLI_ROOT) not in sys.path:
    sys.path.insert(0, str(CLI_ROOT))

# The package under test, importable from the repository (tests import it from here).
from modelgate_cli import Client, credentials, feedback, schema  # noqa: E402
from modelgate_cli.cli import main  # noqa: E402

__all__ = ["CLI_ROOT", "Client", "Driver", "Proxy", "credentials", "feedback", "install_cli",
           "main", "schema"]


class Driver(threading.Thread):
    """Plays the approver and the rollout worker while a CLI command runs: approves each
    open release request (as ``approver``), and drives each ``promoting`` rollout to its
    end as ``tests.portal_fixtures.settled`` does (the tests' queue runs no follow-up with
    a countdown)."""

    def __init__(self, approver=None):
        super().__init__(daemon=True)
        self.approver = approver
        self.stop = threading.Event()
        self.errors: list[BaseException] = []

    def run(self):
        from django.db import connection

        try:
            while not self.stop.is_set():
                self.step()
                time.sleep(0.2)
        except BaseException as e:  # reported by __exit__: a thread's error is lost otherwise
            self.errors.append(e)
        finally:
            connection.close()

    def step(self):
        from portal.releases import services as releases
        from portal.releases.models import ApprovalRequest, Deployment
        from tests.portal_fixtures import settled

        if self.approver is not None:
            for request in ApprovalRequest.objects.filter(status="open"):
                releases.review(self.approver, request, "approve", "approved by the test")
        for deployment in Deployment.objects.filter(status="promoting"):
            settled(deployment)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.join(timeout=60)
        if self.errors and exc[0] is None:
            raise self.errors[0]


class Proxy:
    """A TCP proxy to ``target_port`` on a fixed port, stopped and started again like a
    portal that restarts: stopped, connections are refused and open ones cut."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.listener: socket.socket | None = None
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Proxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(32)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self.listener is not None:
            # shutdown first: close alone leaves a blocked accept() listening (Linux).
            try:
                self.listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self.listener.close()
            self.listener = None
        with self.lock:
            for conn in self.connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                conn.close()
            self.connections.clear()

    def _accept(self, listener):
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # stopped
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self.lock:
                self.connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source, sink):
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def install_cli(venv: Path) -> Path:
    """``pip install`` the package from a copy of its folder into a new virtualenv, as a
    pipeline does from the repository path; returns its ``bin`` folder (with the
    ``modelgate`` console script).

    A copy: setuptools builds in the source tree and would leave build/ and *.egg-info in
    the repository. The virtualenv sees this one's packages through a .pth file (requests),
    so ``--no-deps`` installs nothing else; the build itself gets setuptools and wheel the
    usual way (build isolation: from the package index, as in a pipeline)."""
    source = venv.parent / "modelgate-cli-source"
    shutil.copytree(CLI_ROOT, source, ignore=shutil.ignore_patterns(
        "build", "*.egg-info", "__pycache__"))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next((venv / "lib").glob("python3*/site-packages"))
    here = next(p for p in sys.path if p.endswith("site-packages") and Path(p).is_dir())
    (site / "outer.pth").write_text(here + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--quiet", "--no-deps", "--disable-pip-version-check",
                    str(source)], check=True, capture_output=True, text=True, timeout=120)
    return venv / "bin"
