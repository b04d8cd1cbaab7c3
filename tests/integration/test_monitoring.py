"""Monitoring end to end: a real model server receiving generated traffic, a real Prometheus
the portal configures (file_sd targets, promtool-checked rules, reloads), drift computed from
Prometheus's counters and exported on the portal's ``/metrics`` (served by a live server),
alerts polled into the portal, and a canary rolled back by a drift alert.

The tests call the periodic jobs themselves once a second (``compute_all``, ``poll``) as
beat would; timings: scrape and evaluation every 1 s, ``for: 2s``, an 8 s drift window.
"""

import io
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
from django.conf import settings as django_settings
from django.utils import timezone

from ops import prometheus as prom
from portal.monitoring import alerts, drift, prometheus_sync
from portal.monitoring.models import Alert, DriftWindow, MonitorSettings, SyncStatus
from portal.registry import services as registry
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
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
    registry.update_project(users["owner"], project, allow_unsafe_artifacts=True)
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
    production = releases.create_environment(users["owner"], project, name="production",
                                             settings={"ports": {clf.name: port}})
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
    return Deployment.objects.get(request=request)


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


def test_drift_alert_fires_within_30s_of_a_shift_and_resolves_after(monitored):
    result = prometheus_sync.sync()
    assert result["targets"] == 1 and result["endpoints"] == 1 and "error" not in result
    with Traffic(monitored["url"], monitored["model"].name) as traffic:
        # Undrifted traffic: windows get judged, nothing drifts, no alert.
        def judged():
            window = DriftWindow.objects.filter(variant="candidate").first()
            return window and window.report.get("drift_share") is not None and window
        window = wait_for(judged, 40, "no drift window was judged")
        for _ in range(8):
            tick()
            time.sleep(1)
        window.refresh_from_db()
        assert window.report["dataset_drift"] is False, window.report
        assert firing() == []

        traffic.shift = 3.0
        started = time.monotonic()
        drifted = wait_for(lambda: firing(name="ModelgateFeatureDriftCritical"), 30,
                           "no drift alert")
        assert time.monotonic() - started <= 30
        assert {a.feature for a in drifted} <= set(SHIFTED)
        alert = drifted[0]
        assert alert.project == monitored["env"].project and alert.model == monitored["model"]
        assert alert.environment == monitored["env"] and alert.severity == "critical"
        assert alert.variant == "candidate" and alert.summary.startswith(alert.feature)
        window.refresh_from_db()
        verdicts = {f["name"]: f["verdict"] for f in window.report["features"]}
        assert {verdicts[name] for name in SHIFTED} == {"critical"}
        assert {verdicts[name] for name in FEATURES[2:]} == {"no_drift"}

        traffic.shift = 0.0
        wait_for(lambda: not firing(name="ModelgateFeatureDriftCritical"), 45,
                 "the drift alert did not resolve")
        alert.refresh_from_db()
        assert alert.state == "resolved" and alert.ends_at is not None
    assert set(traffic.statuses) == {200}


def test_a_canary_whose_traffic_drifts_is_rolled_back_by_the_alert(monitored):
    v2 = version(monitored["users"], monitored["model"], 2, monitored["dataset"])
    deployment = release(monitored["users"], v2, monitored["env"], "canary", {
        "steps": [{"weight": 0.5, "bake_seconds": 600}, {"weight": 1.0, "bake_seconds": 1}],
        "thresholds": {"min_requests": 10, "max_error_rate": 0.05, "max_p99_ratio": 50.0},
        "check_interval_seconds": 1, "max_inconclusive_checks": 600})
    prometheus_sync.sync()
    with Traffic(monitored["url"], monitored["model"].name) as traffic:
        traffic.shift = 3.0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and deployment.status in deployments.ACTIVE:
            tick()
            deployments.advance(deployment.pk)
            deployment.refresh_from_db()
            time.sleep(1)
    assert deployment.status == "rolled_back", [e.reason for e in deployment.events.all()]
    reasons = " ".join(e.reason for e in deployment.events.all())
    assert "Modelgate" in reasons and "Drift" in reasons
    assert set(traffic.statuses) == {200}


def test_rules_promtool_rejects_are_never_loaded_and_the_error_is_shown(monitored, monkeypatch):
    assert "error" not in prometheus_sync.sync()
    rules_file = monitored_rules(monitored)
    good = rules_file.read_text()
    monkeypatch.setattr(prom, "rule_groups", lambda endpoints: {"groups": [
        {"name": "broken", "rules": [{"alert": "Broken", "expr": "sum(rate(up[1m]"}]}]})
    result = prometheus_sync.sync()
    assert "promtool check rules rejected" in result["error"]
    assert rules_file.read_text() == good
    status = SyncStatus.objects.get(job="prometheus-rules")
    assert not status.ok and "promtool" in status.detail


def monitored_rules(monitored):
    return Path(django_settings.MODELGATE_PROMETHEUS_CONFIG_DIR) / prom.RULES_FILE


def test_prometheus_down_keeps_alerts_and_says_so(monitored, settings):
    prometheus_sync.sync()
    alert = alerts.ingest([alerts.Incoming({"alertname": "X", "project": "clinical-ml"}, {},
                                           "firing", timezone.now())], "prometheus")[0]
    settings.MODELGATE_PROMETHEUS_URL = "http://127.0.0.1:9"
    assert alerts.poll(drift.client())["polled"] is False
    assert drift.compute_all() == 0
    alert.refresh_from_db()
    assert alert.state == "firing"
    assert "alerts keep their last state" in SyncStatus.objects.get(job="alerts-poll").detail
    assert not SyncStatus.objects.get(job="drift").ok
