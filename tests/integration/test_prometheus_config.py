"""``manage.py prometheus_config`` writes the Prometheus configuration the operations guide
tells an operator to run, and a real Prometheus started with the flags it prints scrapes
the portal's /metrics with the bearer token the production profile requires."""

import shlex
import time
from io import StringIO
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from django.core.management import CommandError, call_command

from tests.integration.local_fixtures import free_port
from tests.integration.prometheus_fixtures import PROMETHEUS

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = StringIO()
    call_command("prometheus_config", *args, stdout=out)
    return out.getvalue()


def test_prometheus_run_as_printed_scrapes_the_portal_with_its_token(settings, tmp_path,
                                                                     live_server):
    import subprocess

    settings.MODELGATE_METRICS_TOKEN = "s3cret-metrics-token"
    settings.MODELGATE_ROLLOUT_MIN_BAKE_SECONDS = 30  # the default (the suite lowers it)
    token = tmp_path / "metrics-token"
    token.write_text("s3cret-metrics-token\n")
    folder = tmp_path / "prometheus"
    port = free_port()
    said = run("--dir", str(folder), "--portal", urlsplit(live_server.url).netloc,
               "--token-file", str(token), "--listen", f"127.0.0.1:{port}")
    config = yaml.safe_load((folder / "prometheus.yml").read_text())
    assert config["global"]["scrape_interval"] == "7s"  # a 30 s window, four samples
    assert "(scrape every 7 s; the shortest analysis window is 30 s)" in said
    command = shlex.split(said.split("run Prometheus with:\n")[1].splitlines()[0])
    assert command[0] == "prometheus" and "--web.enable-lifecycle" in command
    process = subprocess.Popen([PROMETHEUS, *command[1:],
                                f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        url, health = f"http://127.0.0.1:{port}", None
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and health != "up":
            try:
                targets = requests.get(f"{url}/api/v1/targets", timeout=2).json()
                health = next((t["health"] for t in targets["data"]["activeTargets"]
                               if t["labels"]["job"] == "modelgate-portal"), None)
            except requests.RequestException:
                pass
            time.sleep(0.5)
        assert health == "up", targets
        assert requests.post(f"{url}/-/reload", timeout=5).status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_portal_with_a_metrics_token_needs_the_token_file(settings, tmp_path):
    settings.MODELGATE_METRICS_TOKEN = "s3cret"
    with pytest.raises(CommandError, match="give --token-file"):
        run("--dir", str(tmp_path), "--portal", "portal:8000")


def test_a_scrape_interval_too_long_for_the_analysis_is_refused(settings, tmp_path):
    settings.MODELGATE_METRICS_TOKEN = ""
    settings.MODELGATE_ROLLOUT_MIN_BAKE_SECONDS = 30
    with pytest.raises(CommandError, match="use 1 to 7 s"):
        run("--dir", str(tmp_path), "--portal", "portal:8000", "--scrape-interval", "15")
    settings.MODELGATE_ROLLOUT_MIN_BAKE_SECONDS = 8
    assert "scrape every 2 s" in run("--dir", str(tmp_path), "--portal", "portal:8000")
