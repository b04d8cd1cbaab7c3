"""A real Prometheus server on loopback, scraping the tests' model servers every second.

Each test starts its own (ready in about 0.15 s), so no test reads series or alerts another
test left behind."""

import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from tests.integration.local_fixtures import free_port

PROMETHEUS = shutil.which("prometheus")


def _launch(config: Path, folder: Path, processes: list) -> str:
    port = free_port()
    log = open(folder / "prometheus.log", "w")
    processes.append(subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={folder / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle",
         # An alert evaluated before the Alertmanager is discovered is dropped and only
         # sent again after this delay (1 minute by default).
         "--rules.alert.resend-delay=2s"],
        stdout=log, stderr=subprocess.STDOUT))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return url
        except requests.RequestException:
            pass
        time.sleep(0.05)  # ready in about 0.15 s
    raise AssertionError("Prometheus did not become ready:\n"
                         + (folder / "prometheus.log").read_text()[-2000:])


def _require_binary():
    if PROMETHEUS is None:
        pytest.fail("the prometheus binary is not installed (apt-get install prometheus); "
                    ".ci/run installs it")


@pytest.fixture
def prometheus(tmp_path):
    """``start(targets, environment="production", project="clinical-ml")`` → the URL of a
    Prometheus scraping ``targets`` (host:port) and labelling their series with the
    environment and its project (the test project's slug by default), as the portal's
    managed configuration does."""
    _require_binary()
    processes = []

    def start(targets: list[str], environment: str = "production",
              project: str = "clinical-ml") -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(yaml.safe_dump({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": "modelgate", "static_configs": [
                {"targets": targets,
                 "labels": {"environment": environment, "project": project}}]}]}))
        return _launch(config, tmp_path, processes)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def managed_prometheus(tmp_path):
    """``start(config_path)`` → the URL of a Prometheus running that configuration (one the
    portal writes: file_sd targets and rule files it keeps up to date)."""
    _require_binary()
    processes = []
    folder = tmp_path / "managed-prometheus"
    folder.mkdir()

    def start(config: Path) -> str:
        return _launch(config, folder, processes)

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


ALERTMANAGER = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@pytest.fixture
def alertmanager(tmp_path):
    """``start(webhook_url, token)`` → the host:port of a real Alertmanager that posts every
    alert (and its resolution) to ``webhook_url`` with the bearer ``token`` at once."""
    if ALERTMANAGER is None:
        pytest.fail("Alertmanager is not installed (apt-get install prometheus-alertmanager); "
                    ".ci/run installs it")
    processes = []
    folder = tmp_path / "alertmanager"
    folder.mkdir()

    def start(webhook_url: str, token: str) -> str:
        config = folder / "alertmanager.yml"
        config.write_text(yaml.safe_dump({
            "route": {"receiver": "modelgate", "group_by": ["alertname"], "group_wait": "1s",
                      "group_interval": "1s", "repeat_interval": "1h"},
            "receivers": [{"name": "modelgate", "webhook_configs": [{
                "url": webhook_url, "send_resolved": True,
                "http_config": {"authorization": {"credentials": token}}}]}]}))
        port = free_port()
        log = open(folder / "alertmanager.log", "w")
        processes.append(subprocess.Popen(
            [ALERTMANAGER, f"--config.file={config}", f"--storage.path={folder / 'data'}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=log, stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).ok:
                    return f"127.0.0.1:{port}"
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise AssertionError("Alertmanager did not become ready:\n"
                             + (folder / "alertmanager.log").read_text()[-2000:])

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
