"""A monitored endpoint for any test module: a dataset with a baseline profile, a Prometheus
the portal manages (1 s scrape and evaluation), a production environment serving v1 of the
tumor classifier on a real model server, and generated traffic whose first two features can
be shifted. ``tick()`` runs what beat runs (drift windows, then alert polling).

``monitored`` is a fixture of the plugins tests/conftest.py registers (it uses the
``managed_prometheus`` and ``live_server`` fixtures: Prometheus scrapes the portal's
/metrics from the live server); the helpers are imported by name.
"""

import io
import threading
import time
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import requests

from ops import prometheus as prom
from portal.monitoring import alerts, drift
from portal.monitoring.models import Alert, DriftWindow, MonitorSettings, SyncStatus
from portal.registry import services as registry
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import (
    FEATURES,
    local_target,
    metadata,
    random_classifier_bytes,
    settled,
)

SHIFTED = FEATURES[:2]


class Traffic:
    """Batches of rows drawn from N(0, 1), with ``shift`` added to the first two features."""

    def __init__(self, url: str, endpoint: str):
        self.url, self.endpoint = url, endpoint
        self.shift = 0.0
        self.stop = threading.Event()
        self.statuses = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        rng = np.random.default_rng(5)
        session = requests.Session()
        while not self.stop.is_set():
            rows = rng.normal(size=(10, len(FEATURES)))
            rows[:, :2] += self.shift
            try:
                answer = session.post(f"{self.url}/v2/models/{self.endpoint}/infer",
                                      json={"instances": rows.tolist()}, timeout=5)
                self.statuses.append(answer.status_code)
            except requests.RequestException:
                self.statuses.append(0)
            time.sleep(0.02)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=10)


@pytest.fixture
def monitored(users, project, clf, settings, tmp_path, live_server, managed_prometheus):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(3000, len(FEATURES))), columns=FEATURES)
    dataset = registry.upload_dataset(users["contributor"], project, name="reference",
                                      file=io.BytesIO(frame.to_csv(index=False).encode()),
                                      filename="reference.csv")
    dataset.refresh_from_db()
    assert dataset.profile_status == "ready", dataset.profile_reason

    config_dir = tmp_path / "prometheus"
    portal = urlsplit(live_server.url).netloc
    prom.write_main_config(config_dir, scrape_interval="1s", evaluation_interval="1s",
                           portal=portal)
    settings.MODELGATE_PROMETHEUS_CONFIG_DIR = str(config_dir)
    settings.MODELGATE_PROMETHEUS_URL = managed_prometheus(config_dir / "prometheus.yml")
    settings.MODELGATE_ALERT_FOR_SECONDS = 1
    settings.MODELGATE_DRIFT_FOR_SECONDS = 2
    settings.MODELGATE_DRIFT_STALE_SECONDS = 30
    MonitorSettings.objects.create(model=clf, drift_window_seconds=8,
                                   drift={"min_count": 50})

    port = free_port()
    local_target(settings, port)
    production = releases.create_environment(users["owner"], project, name="production")
    v1 = version(users, clf, 1, dataset)
    first = release(users, v1, production, "canary")
    assert first.status == "succeeded"
    return {"users": users, "model": clf, "env": production, "dataset": dataset,
            "url": f"http://127.0.0.1:{port}", "v1": v1}


def version(users, model, seed, dataset):
    created = registry.register_version(users["contributor"], model,
                                        io.BytesIO(random_classifier_bytes(seed)),
                                        metadata(dataset=dataset.pk))
    return registry.validate_version(created.pk)


def release(users, version, environment, strategy, params=None) -> Deployment:
    request = releases.request_approval(users["contributor"], version, environment,
                                        strategy=strategy, strategy_params=params or {})
    releases.review(users["approver"], request, "approve", "ok")
    return settled(Deployment.objects.get(request=request))


def tick():
    """What beat does: drift windows, then alerts."""
    drift.compute_all()
    alerts.poll(drift.client())


def firing(**filters):
    return list(Alert.objects.filter(state="firing", **filters))


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tick()
        found = condition()
        if found:
            return found
        time.sleep(1)
    windows = {w.variant: w.report for w in DriftWindow.objects.all()}
    client = drift.client()
    seen = {q: client.query(q) for q in ("up", "count by (environment, variant) "
                                         "(modelgate_feature_bin)", "modelgate_drift_share")}
    raise AssertionError(f"{what} within {timeout}s; prometheus: {seen}; drift windows: {windows}; "
                         f"alerts: {list(Alert.objects.values('name', 'state', 'variant'))}; "
                         f"status: {list(SyncStatus.objects.values())}")
