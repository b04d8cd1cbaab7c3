"""A real Prometheus server on loopback, scraping the tests' model servers every second."""

import shutil
import subprocess
import time

import pytest
import requests

from tests.integration.local_fixtures import free_port

PROMETHEUS = shutil.which("prometheus")


@pytest.fixture
def prometheus(tmp_path):
    """``start(targets)`` → the URL of a Prometheus scraping ``targets`` (host:port)."""
    if PROMETHEUS is None:
        pytest.fail("the prometheus binary is not installed (apt-get install prometheus); "
                    ".ci/run installs it")
    processes = []

    def start(targets: list[str]) -> str:
        port = free_port()
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
            "scrape_configs:\n  - job_name: modelgate\n    static_configs:\n"
            f"      - targets: {targets!r}\n".replace("'", '"'))
        log = open(tmp_path / "prometheus.log", "w")
        processes.append(subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
            stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    return url
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise AssertionError("Prometheus did not become ready:\n"
                             + (tmp_path / "prometheus.log").read_text()[-2000:])

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)
