"""Review of 0776c4d (multi-model endpoints monitored) and 02c4635 (ServerDown by target
labels): what makes the monitoring of a multi-model endpoint lie or break. No Prometheus:
a fake answers as one scraping the server would."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from django.test import Client
from django.utils import timezone

from ops import prometheus
from portal.monitoring import alerts, drift, prometheus_sync
from portal.monitoring.endpoints import ServedMultiModel, served_multimodel_endpoints
from portal.monitoring.models import DriftWindow, MonitorSettings
from portal.monitoring.multimodel import endpoint_section
from portal.registry import services as registry
from portal.registry.models import RegisteredModel
from portal.registry.services.aliases import set_alias
from portal.releases import multimodel
from portal.releases import services as releases
from portal.releases.models import MultiModelEndpoint
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import FEATURES, local_target, metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


class FakePrometheus:
    """Answers as a Prometheus scraping a multi-model server: ``labelled`` maps each model
    label with feature bins in the window to how many samples it has there (how long it kept
    its label); every labelled model has 40 inputs in each of the first 3 bins of the first
    feature."""

    def __init__(self, labelled: dict[str, int]):
        self.labelled = labelled
        self.queries: list[str] = []

    def query(self, promql: str) -> list[dict]:
        self.queries.append(promql)
        if "count_over_time" in promql:
            return [{"metric": {"variant": v}, "value": [0, str(n)]}
                    for v, n in self.labelled.items()]
        return [{"metric": {"variant": v, "feature": FEATURES[0], "bin": str(b)},
                 "value": [0, "40"]} for v in self.labelled for b in range(3)]


@pytest.fixture
def production(users, project, settings):
    local_target(settings, free_port())
    return releases.create_environment(users["owner"], project, name="production")


@pytest.fixture
def dataset(users, project, django_capture_on_commit_callbacks):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(600, len(FEATURES))), columns=FEATURES)
    with django_capture_on_commit_callbacks(execute=True):
        found = registry.upload_dataset(users["contributor"], project, name="reference",
                                        file=io.BytesIO(frame.to_csv(index=False).encode()),
                                        filename="reference.csv")
    found.refresh_from_db()
    assert found.profile_status == "ready", found.profile_reason
    return found


def profiled_version(users, model, seed, dataset):
    created = registry.register_version(users["contributor"], model,
                                        io.BytesIO(random_classifier_bytes(seed)),
                                        metadata(dataset=dataset.pk))
    found = registry.validate_version(created.pk)
    assert drift.baseline_of(found), "the version needs a baseline for these tests"
    return found


def applied(endpoint) -> MultiModelEndpoint:
    """What a successful apply records (the backend is not what these tests are about)."""
    endpoint.refresh_from_db()
    MultiModelEndpoint.objects.filter(pk=endpoint.pk).update(applied=endpoint.generation)
    endpoint.refresh_from_db()
    return endpoint


def served_of(endpoint) -> ServedMultiModel:
    return next(s for s in served_multimodel_endpoints([endpoint.environment])
                if s.endpoint.pk == endpoint.pk)


# -- the page: a dead multi-model server -------------------------------------------------------

def test_a_dead_multimodel_server_shows_among_its_endpoints_firing_alerts(users, production):
    """ModelgateServerDown, as Prometheus raises it from ``up`` (the target's labels and the
    rule's), is the endpoint's alert: its page lists the alerts firing on the endpoint."""
    endpoint = multimodel.create_endpoint(users["owner"], production, name="tenants",
                                          memory_budget_mb=64)
    MultiModelEndpoint.objects.filter(pk=endpoint.pk).update(port=free_port())
    endpoint = applied(endpoint)
    served = served_of(endpoint)
    group = prometheus.rule_groups([prometheus_sync.multimodel_rules_for(served)])["groups"][0]
    rule = next(r for r in group["rules"] if r.get("alert") == "ModelgateServerDown")
    target = prometheus_sync.multimodel_target(served)
    labels = {**target.labels, "instance": target.address, "job": "modelgate-models",
              **rule["labels"], "alertname": "ModelgateServerDown"}
    alerts.ingest([alerts.Incoming(labels, {"summary": "tenants (production): down"},
                                   "firing", timezone.now())], "prometheus")

    section = endpoint_section(users["viewer"], endpoint, [])
    assert [a.name for a in section["endpoint_alerts"]] == ["ModelgateServerDown"], (
        f"the endpoint's page lists no server-down alert; the alert was stored with "
        f"endpoint={alerts.Alert.objects.get().endpoint!r}")


# -- drift: what it is judged against ---------------------------------------------------------

def test_drift_is_judged_against_the_version_the_server_serves_not_an_unapplied_move(
        users, clf, production, dataset):
    """The alias moved; the catalog holding the new version is not applied yet (queued,
    the backend away and retried every minute, or refused): the server still serves, and
    bins by, v1. The window must not say it judged v2."""
    v1 = profiled_version(users, clf, 1, dataset)
    v2 = profiled_version(users, clf, 2, dataset)
    set_alias(users["approver"], clf, "champion", v1)
    endpoint = multimodel.create_endpoint(users["owner"], production, name="tenants",
                                          memory_budget_mb=64)
    multimodel.add_member(users["owner"], endpoint, clf, alias="champion")
    endpoint = applied(endpoint)  # v1 serves

    set_alias(users["approver"], clf, "champion", v2)  # its apply is queued, not done
    endpoint.refresh_from_db()
    assert endpoint.applied < endpoint.generation

    drift.member_windows(FakePrometheus({clf.name: 600}), served_of(endpoint), timezone.now())
    window = DriftWindow.objects.get(endpoint=endpoint.backend_endpoint, variant=clf.name)
    assert window.version == v1, (
        f"judged against v{window.version.number}, which the server does not serve yet "
        f"(applied generation {endpoint.applied}, current {endpoint.generation})")

    # Once the catalog holding v2 is applied (what ``apply_endpoint`` records), v2 is judged.
    multimodel.record_served(endpoint, multimodel.build_catalog(endpoint))
    endpoint = applied(endpoint)
    drift.member_windows(FakePrometheus({clf.name: 600}), served_of(endpoint), timezone.now())
    window.refresh_from_db()
    assert window.version == v2


def test_the_models_labelled_throughout_the_window_are_judged_not_the_first_by_name(
        users, clf, production, dataset):
    """top_models=20; the top set is chosen every 5 minutes, so within a drift window more
    than 20 models have had bins: five held a place briefly at its start (a-0..a-4), twenty
    held theirs throughout (m-00..m-19). The busiest must be the ones judged; the run may
    keep its bound of 20 windows."""
    v1 = profiled_version(users, clf, 1, dataset)
    endpoint = multimodel.create_endpoint(users["owner"], production, name="churny",
                                          memory_budget_mb=64, top_models=20)
    names = [f"a-{i}" for i in range(5)] + [f"m-{i:02}" for i in range(20)]
    models = RegisteredModel.objects.bulk_create(
        RegisteredModel(project=production.project, name=n, task="classification")
        for n in names)
    served = ServedMultiModel(production, endpoint, {m.name: (m, v1) for m in models})
    labelled = {**{f"a-{i}": 1 for i in range(5)}, **{f"m-{i:02}": 600 for i in range(20)},
                "__other__": 600}
    drift.member_windows(FakePrometheus(labelled), served, timezone.now())
    judged = set(DriftWindow.objects.filter(endpoint=endpoint.backend_endpoint)
                 .values_list("variant", flat=True))
    missing = sorted({f"m-{i:02}" for i in range(20)} - judged)
    assert not missing, f"labelled throughout the window and not judged: {missing}"


def test_a_member_with_a_long_valid_name_does_not_break_the_drift_run(
        users, project, clf, production, dataset, monkeypatch):
    """Model names may be 100 characters; a drift window's variant holds 64. One such
    member must not stop every multi-model endpoint's drift (nor the run's status)."""
    v1 = profiled_version(users, clf, 1, dataset)
    long = registry.create_model(users["contributor"], project, name="m" * 80,
                                 task="classification")
    long_v1 = profiled_version(users, long, 2, dataset)
    first = multimodel.create_endpoint(users["owner"], production, name="a-first",
                                       memory_budget_mb=64)
    multimodel.add_member(users["owner"], first, long, version=long_v1)
    second = multimodel.create_endpoint(users["owner"], production, name="b-second",
                                        memory_budget_mb=64)
    multimodel.add_member(users["owner"], second, clf, version=v1)
    applied(first), applied(second)
    monkeypatch.setattr(drift, "client", lambda: FakePrometheus({long.name: 600,
                                                                 clf.name: 600}))
    drift.compute_all()
    assert DriftWindow.objects.filter(endpoint=second.backend_endpoint,
                                      variant=clf.name).exists()


# -- names that collide ------------------------------------------------------------------------

def test_a_model_named_like_the_multimodel_endpoint_keeps_its_own_drift_windows(
        users, project, clf, production, dataset):
    """A model could be called mme-tenants-env-<id> (name_validator allows it); its plan
    endpoint is named after it, as is the multi-model endpoint on the platform. The
    multi-model drift run deleted the windows of 'models no longer members' by endpoint
    name alone, the plan endpoint's among them. The prefix is reserved now; a model named
    so before keeps its windows."""
    from portal.errors import ValidationFailed

    v1 = profiled_version(users, clf, 1, dataset)
    endpoint = multimodel.create_endpoint(users["owner"], production, name="tenants",
                                          memory_budget_mb=64)
    multimodel.add_member(users["owner"], endpoint, clf, version=v1)
    endpoint = applied(endpoint)
    with pytest.raises(ValidationFailed, match="reserved for multi-model endpoints"):
        registry.create_model(users["contributor"], project, name=endpoint.backend_endpoint,
                              task="classification")
    # Named so before the prefix was reserved:
    twin = RegisteredModel.objects.create(project=project, name=endpoint.backend_endpoint,
                                          task="classification")
    plan_window = DriftWindow.objects.create(
        environment=production, model=twin, endpoint=twin.name, variant="stable",
        window_seconds=300, report={"features": []}, computed_at=timezone.now())

    drift.member_windows(FakePrometheus({clf.name: 600}), served_of(endpoint), timezone.now())
    assert DriftWindow.objects.filter(pk=plan_window.pk).exists(), (
        "the plan endpoint's drift window was deleted by the multi-model endpoint's run")


# -- the monitoring page of a member ----------------------------------------------------------

def test_a_members_monitoring_page_shows_the_thresholds_its_verdict_used(
        users, clf, production, dataset):
    v1 = profiled_version(users, clf, 1, dataset)
    MonitorSettings.objects.create(model=clf, drift={"psi_warning": 0.33,
                                                     "psi_critical": 0.77})
    endpoint = multimodel.create_endpoint(users["owner"], production, name="tenants",
                                          memory_budget_mb=64)
    multimodel.add_member(users["owner"], endpoint, clf, version=v1)
    endpoint = applied(endpoint)
    drift.member_windows(FakePrometheus({clf.name: 600}), served_of(endpoint), timezone.now())
    viewer = Client()
    viewer.force_login(users["viewer"])
    page = viewer.get(f"/p/{production.project.slug}/environments/production/monitoring/"
                      f"{endpoint.backend_endpoint}/?variant={clf.name}")
    assert page.status_code == 200
    text = page.content.decode()
    assert "critical 0.77" in text, (
        "the page states the default thresholds, not the model's its verdict was computed "
        "with: " + text[text.find("thresholds:"):][:120])


def test_an_applied_multimodel_endpoint_without_windows_yet_has_a_page_saying_so(
        users, production):
    endpoint = applied(multimodel.create_endpoint(users["owner"], production, name="tenants",
                                                  memory_budget_mb=64))
    viewer = Client()
    viewer.force_login(users["viewer"])
    page = viewer.get(f"/p/{production.project.slug}/environments/production/monitoring/"
                      f"{endpoint.backend_endpoint}/")
    assert page.status_code == 200, "an applied endpoint with no verdict yet is not found"
    assert "No drift verdict yet" in page.content.decode()


# -- incidents ---------------------------------------------------------------------------------

def test_two_members_drifting_on_a_shared_feature_are_not_every_variant_of_the_endpoint(
        users, production):
    """A multi-model endpoint's variants are its models. Two of its (say) twenty models
    drifting on a feature both have is not 'input drift on every variant'."""
    from portal.monitoring import incidents

    endpoint = multimodel.create_endpoint(users["owner"], production, name="tenants",
                                          memory_budget_mb=64)
    for name in ("shop-7", "shop-8"):
        registry.create_model(users["contributor"], production.project, name=name,
                              task="classification")
        alerts.ingest([alerts.Incoming(
            {"alertname": "ModelgateFeatureDriftCritical", "severity": "critical",
             "environment": "production", "project": production.project.slug,
             "endpoint": endpoint.backend_endpoint, "variant": name, "model": name,
             "feature": "age", "multimodel_endpoint": "tenants"},
            {"summary": f"age of {name} drifted far on tenants (production)"},
            "firing", timezone.now())], "prometheus")
    [incident] = incidents.group(list(alerts.Alert.objects.filter(state="firing")))
    marked = [a.variant for a in incident.alerts if a.endpoint_alert]
    assert not marked, f"marked as the endpoint's input drift on every variant: {marked}"
