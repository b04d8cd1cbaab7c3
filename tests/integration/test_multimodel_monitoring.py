"""A multi-model endpoint monitored end to end (decision 68): its real server is a target the
portal writes for a real Prometheus, labelled with its environment and endpoint; each model
with a label of its own is judged for drift against the version it serves, its alerts fire
and resolve, show on the endpoint's page and reach a retraining rule of the model; the
models counted as ``__other__`` are not judged, and the run says so. The work of a run is
bounded by the endpoint's ``top_models``, however many members it has.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from django.conf import settings as django_settings
from django.test import Client
from django.utils import timezone

from ops import prometheus as prom
from ops.backends.multimodel import get_multimodel_backend
from portal.monitoring import drift, prometheus_sync
from portal.monitoring.endpoints import ServedMultiModel
from portal.monitoring.models import DriftWindow, SyncStatus
from portal.registry import services as registry
from portal.registry.models import RegisteredModel
from portal.registry.services.aliases import set_alias
from portal.releases import multimodel
from portal.retraining.conditions import drift_findings
from portal.retraining.models import RetrainingRule
from tests.integration.local_fixtures import free_port
from tests.integration.monitoring_fixtures import (
    SHIFTED,
    Traffic,
    firing,
    version,
    wait_for,
)
from tests.portal_fixtures import FEATURES, local_target

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def served_catalog(endpoint, timeout: float = 60.0):
    endpoint.refresh_from_db()
    backend = get_multimodel_backend("local", multimodel._options(endpoint))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        endpoint.refresh_from_db()
        state = backend.observe_catalog(endpoint.backend_endpoint)
        if state.ready and state.generation == endpoint.generation:
            return state
        time.sleep(0.2)
    raise AssertionError(f"the multi-model server did not serve generation "
                         f"{endpoint.generation}: {state.detail}")


def test_a_member_models_drift_fires_shows_and_reaches_its_retraining_rule(monitored,
                                                                         settings):
    users, clf, production = monitored["users"], monitored["model"], monitored["env"]
    local_target(settings, free_port())  # the multi-model server's own port
    quiet = registry.create_model(users["contributor"], production.project, name="quiet-model",
                                  task="classification")
    quiet_v1 = version(users, quiet, 7, monitored["dataset"])
    set_alias(users["approver"], clf, "champion", monitored["v1"])
    endpoint = multimodel.create_endpoint(users["owner"], production, name="tenants",
                                          memory_budget_mb=64, top_models=1)
    multimodel.add_member(users["owner"], endpoint, clf, alias="champion")
    multimodel.add_member(users["owner"], endpoint, quiet, version=quiet_v1)
    multimodel.apply_endpoint(endpoint.pk)
    url = served_catalog(endpoint).url

    # Targets and rules: the plan server and the multi-model server, promtool-checked.
    result = prometheus_sync.sync()
    assert result["targets"] == 2 and result["endpoints"] == 2 and "error" not in result
    folder = Path(django_settings.MODELGATE_PROMETHEUS_CONFIG_DIR)
    targets = json.loads((folder / prom.TARGETS_FILE).read_text())
    assert {"targets": [url.removeprefix("http://")],
            "labels": {"environment": "production", "project": production.project.slug,
                       "multimodel_endpoint": "tenants"}} in targets

    with Traffic(url, clf.name) as traffic:
        traffic.shift = 3.0
        wait_for(lambda: 200 in traffic.statuses, 60, "the member never answered")
        # clf took the only label first: quiet-model is counted as __other__.
        for _ in range(20):
            answer = requests.post(f"{url}/v2/models/{quiet.name}/infer",
                                   json={"instances": [[0.0] * len(FEATURES)]}, timeout=30)
            assert answer.status_code == 200, answer.text
        series = wait_for(lambda: drift.client().query(
            'modelgate_requests_total{multimodel_endpoint="tenants",variant="__other__"}'), 30,
            "Prometheus did not scrape the multi-model server")
        assert series[0]["metric"]["environment"] == "production"
        assert series[0]["metric"]["endpoint"] == endpoint.backend_endpoint

        drifted = wait_for(lambda: firing(name="ModelgateFeatureDriftCritical", model=clf,
                                          endpoint=endpoint.backend_endpoint), 60,
                           "no drift alert on the member")
    alert = drifted[0]
    assert alert.variant == clf.name and alert.feature in SHIFTED
    assert alert.environment == production and alert.project == production.project
    assert alert.labels["multimodel_endpoint"] == "tenants"
    window = DriftWindow.objects.get(endpoint=endpoint.backend_endpoint, variant=clf.name)
    assert window.model == clf and window.version == monitored["v1"]
    assert not DriftWindow.objects.filter(variant=quiet.name).exists()
    status = SyncStatus.objects.get(job="drift")
    assert "1 models of multi-model endpoints judged, 1 not" in status.detail
    assert "__other__" in status.detail

    # The retraining rule "critical drift on the endpoint for N minutes" of the model sees it.
    rule = RetrainingRule.objects.create(model=clf, name="drift", condition="drift",
                                         for_minutes=1, target="webhook",
                                         params={"url": "https://example.com/hook"})
    found = drift_findings(rule, timezone.now() + timedelta(minutes=2))
    assert len(found) == 1, found
    evidence = found[0].evidence
    assert evidence["endpoint"] == endpoint.backend_endpoint
    assert evidence["serving_version"]["number"] == monitored["v1"].number
    assert {f["variant"] for f in evidence["features"]} == {clf.name}
    assert not drift_findings(RetrainingRule(model=quiet, condition="drift", for_minutes=1),
                              timezone.now() + timedelta(minutes=2))

    # The endpoint's page: the member's verdict, why the other has none, the alert.
    viewer = Client()
    viewer.force_login(users["viewer"])
    page = viewer.get(f"/p/{production.project.slug}/environments/production/multimodel/"
                      "tenants/").content.decode()
    assert "drifted" in page and alert.summary in page
    assert "counted together as __other__" in page

    # The member's page: live charts of its own series only (quiet-model's requests, counted
    # as __other__ on the same server, are not drawn), and its inputs beside its baseline.
    response = viewer.get(f"/p/{production.project.slug}/environments/production/monitoring/"
                          f"{endpoint.backend_endpoint}/", {"variant": clf.name})
    assert response.status_code == 200
    live, comparison = response.context["live"], response.context["comparison"]
    assert live.get("traffic") and comparison, response.context["unavailable"]
    assert {line["name"] for line in live["traffic"]["data"]} == {clf.name}
    assert {bars["name"] for bars in comparison["data"]} == {"baseline", f"live: {clf.name}"}
    assert f"The charts are <strong>{clf.name}</strong>" in response.content.decode()

    # The member leaves: its window goes, and the alert resolves.
    member = endpoint.members.get(model=clf)
    multimodel.remove_member(users["owner"], endpoint, member.pk)
    wait_for(lambda: not firing(name="ModelgateFeatureDriftCritical", model=clf), 60,
             "the alert of the removed member did not resolve")
    assert not DriftWindow.objects.filter(variant=clf.name).exists()


class RecordingPrometheus:
    """Answers as a Prometheus scraping a server that labels ``labelled`` (and counts the
    rest as ``__other__``), and records every query."""

    def __init__(self, labelled: list[str]):
        self.labelled = labelled
        self.queries: list[str] = []

    def query(self, promql: str) -> list[dict]:
        self.queries.append(promql)
        variants = [*self.labelled, "__other__"]
        if promql.startswith("count by (variant)"):
            return [{"metric": {"variant": v}, "value": [0, "3"]} for v in variants]
        return [{"metric": {"variant": v, "feature": FEATURES[0], "bin": str(b)},
                 "value": [0, "40"]} for v in variants for b in range(3)]


def test_a_run_is_bounded_by_top_models_not_by_members(monitored, settings,
                                                       django_assert_max_num_queries):
    """300 members, 20 labels, two window lengths: 3 queries to Prometheus, 20 windows."""
    users, production, v1 = monitored["users"], monitored["env"], monitored["v1"]
    local_target(settings, free_port())
    endpoint = multimodel.create_endpoint(users["owner"], production, name="many",
                                          memory_budget_mb=64, top_models=20)
    models = RegisteredModel.objects.bulk_create(
        RegisteredModel(project=production.project, name=f"shop-{i:03}",
                        task="classification") for i in range(300))
    from portal.monitoring.models import MonitorSettings

    MonitorSettings.objects.bulk_create(MonitorSettings(model=m, drift_window_seconds=60)
                                        for m in models[:5])
    models = list(RegisteredModel.objects.filter(name__startswith="shop-")
                  .select_related("monitor_settings"))
    served = ServedMultiModel(production, endpoint, {m.name: (m, v1) for m in models})
    # The server (misbehaving) reports 30 labels: at most top_models are judged.
    fake = RecordingPrometheus([m.name for m in models[:30]])
    # Each window is one update_or_create (savepoint, locked read, write): ~6 statements.
    with django_assert_max_num_queries(20 * 6 + 5):
        stored, skipped = drift.member_windows(fake, served, timezone.now())
    assert (stored, skipped) == (20, 280)
    assert len(fake.queries) == 3, fake.queries  # the labels, then one per window length
    assert DriftWindow.objects.filter(endpoint=endpoint.backend_endpoint).count() == 20
    assert not DriftWindow.objects.filter(variant="__other__").exists()
