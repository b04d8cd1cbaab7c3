"""A multi-model endpoint's page opened in Chromium (decision 68), as a viewer reads it when
one of its models drifted: which models it serves and at which version, which model drifted
and how badly, why another has no verdict, and the alert naming the model. The drift window
and the alert are what the drift task and the alert poll store (no Prometheus here: the
monitoring tests run those against a real one)."""

import io

import numpy as np
import pandas as pd
import pytest
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from ops import drift as ops_drift
from portal.monitoring import alerts, drift
from portal.monitoring.models import DriftWindow
from portal.registry import services as registry
from portal.registry.services.aliases import set_alias
from portal.releases import multimodel
from portal.releases import services as releases
from portal.releases.models import MultiModelEndpoint
from tests.e2e.test_layout import LAYOUT
from tests.e2e.test_registry_pages import sign_in
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def profiled_version(users, model, seed, dataset):
    created = registry.register_version(users["contributor"], model,
                                        io.BytesIO(random_classifier_bytes(seed)),
                                        metadata(dataset=dataset.pk))
    return registry.validate_version(created.pk)


def shifted_report(version):
    """The report the drift task stores when the first two features moved to their top bin."""
    live = {}
    for i, (name, profile) in enumerate(drift.baseline_of(version).items()):
        counts = [float(c) for c in profile["counts"]]
        live[name] = ({len(counts) - 1: sum(counts)} if i < 2
                      else dict(enumerate(counts)))
    return drift.report_of(version, live, ops_drift.Thresholds())


def test_the_multimodel_page_says_which_model_drifted_and_why_another_is_not_judged(
        live_server, browser, shoot, users, project, clf, task_queue):
    task_queue.hold(multimodel.APPLY_TASK)
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(2000, len(FEATURES))), columns=FEATURES)
    dataset = registry.upload_dataset(users["contributor"], project, name="reference",
                                      file=io.BytesIO(frame.to_csv(index=False).encode()),
                                      filename="reference.csv")
    v1 = profiled_version(users, clf, 1, dataset)
    set_alias(users["approver"], clf, "champion", v1)
    quiet = registry.create_model(users["contributor"], project, name="quiet-model",
                                  task="classification")
    quiet_v1 = profiled_version(users, quiet, 2, dataset)
    production = releases.create_environment(users["owner"], project, name="production")
    endpoint = multimodel.create_endpoint(users["owner"], production, name="tenants",
                                          memory_budget_mb=64, top_models=1)
    multimodel.add_member(users["owner"], endpoint, clf, alias="champion")
    multimodel.add_member(users["owner"], endpoint, quiet, version=quiet_v1)
    MultiModelEndpoint.objects.filter(pk=endpoint.pk).update(
        applied=3, status_detail="generation 3 applied; serving")
    name = endpoint.backend_endpoint
    DriftWindow.objects.create(environment=production, endpoint=name, variant=clf.name,
                               model=clf, version=v1, window_seconds=300,
                               report=shifted_report(v1).to_dict(), computed_at=timezone.now())
    alerts.ingest([alerts.Incoming(
        {"alertname": "ModelgateFeatureDriftCritical", "severity": "critical",
         "environment": "production", "endpoint": name, "variant": clf.name,
         "model": clf.name, "feature": FEATURES[0], "project": project.slug,
         "multimodel_endpoint": "tenants"},
        {"summary": f"{FEATURES[0]} of {clf.name} drifted far on tenants (production)",
         "description": f"PSI of {FEATURES[0]} on {clf.name} is 2.310, above the critical "
                        "threshold."},
        "firing", timezone.now(), value="2.31")], "prometheus")

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    sign_in(page, live_server.url, "vera")
    answer = page.goto(live_server.url + reverse(
        "releases:multimodel", args=[project.slug, "production", "tenants"]))
    assert answer.status == 200
    expect(page.locator("h1")).to_contain_text("tenants")
    drifted = page.locator(f'#members tr[data-model="{clf.name}"]')
    expect(drifted).to_contain_text(f"alias champion → v{v1.number}")
    expect(drifted.locator(".member-drift .badge")).to_contain_text("features drifted")
    expect(drifted.locator(".member-drift")).to_contain_text("Critical")
    judged = page.locator(f'#members tr[data-model="{quiet.name}"] .member-drift')
    expect(judged).to_contain_text("Not judged")
    expect(judged).to_contain_text("__other__")
    alert = page.locator("#endpoint-alerts")
    expect(alert).to_contain_text(f"{FEATURES[0]} of {clf.name} drifted far on tenants")
    expect(alert).to_contain_text("tenants")
    expect(alert).to_contain_text("multi-model")
    shoot(page, "multimodel-endpoint-drift")
    fit = page.evaluate(LAYOUT)
    assert fit["scrollWidth"] <= fit["clientWidth"] and not fit["wide"], fit

    # The verdict leads to the member's drift, feature by feature.
    drifted.locator(".member-drift .badge").click()
    expect(page.locator("h1")).to_contain_text("tenants")
    expect(page.locator("h1")).to_contain_text("multi-model")
    expect(page.locator(".page-head p.muted").first).to_contain_text("Serves 2 models")
    expect(page.locator("#drift")).to_contain_text(f"Input drift · {clf.name}")
    expect(page.locator("#drift-table")).to_contain_text(FEATURES[0])
    shoot(page, "multimodel-member-drift")
    context.close()
    assert errors == []
