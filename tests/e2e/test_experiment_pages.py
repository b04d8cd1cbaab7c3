"""A business stakeholder (viewer) reads an A/B test's result; an approver extends it."""

import io
import re
from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from playwright.sync_api import expect

from ops.artifacts import dump_skops
from portal.experiments import services as experiments
from portal.registry import services as registry
from portal.releases.models import Deployment
from tests.e2e.test_registry_pages import sign_in
from tests.integration.test_feedback import ids, make_experiment
from tests.portal_fixtures import metadata

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
DRAWN = re.compile(r"\bdrawn\b")


@pytest.fixture
def ab_test(users, project, clf, cancer_frame, fitted_classifier, fitted_forest, monkeypatch):
    """An A/B test of two explained versions with three hours of outcomes: B converts
    better (16 % against 10 %)."""
    experiment = make_experiment(users, project, clf)
    csv = io.BytesIO(cancer_frame.to_csv(index=False).encode())
    dataset = registry.upload_dataset(users["contributor"], project, name="cancer-train",
                                      file=csv, filename="train.csv", target="target")
    registry.profile_dataset(dataset.pk)
    deployment = experiment.deployment
    for version, estimator in ((deployment.stable, fitted_classifier),
                               (deployment.candidate, fitted_forest)):
        fresh = registry.register_version(users["contributor"], clf,
                                          io.BytesIO(dump_skops(estimator)),
                                          metadata(dataset=dataset.pk, classes={
                                              "0": "malignant", "1": "benign"}))
        fresh = registry.validate_version(fresh.pk)
        assert registry.explain_version(fresh.pk).status == "ready"
        if version == deployment.stable:
            Deployment.objects.filter(pk=deployment.pk).update(stable=fresh)
        else:
            Deployment.objects.filter(pk=deployment.pk).update(candidate=fresh)
    experiment.refresh_from_db()
    rng = np.random.default_rng(5)
    start = timezone.now() - timedelta(hours=3)
    for hour in range(3):  # outcomes as they arrived over three hours
        monkeypatch.setattr(timezone, "now", lambda h=hour: start + timedelta(hours=h))
        items = [{"prediction_id": p, "outcome": int(rng.random() < 0.10)}
                 for p in ids(experiment, "stable", 700)] + \
                [{"prediction_id": p, "outcome": int(rng.random() < 0.16)}
                 for p in ids(experiment, "candidate", 700)]
        result = experiments.record_feedback(users["contributor"], items)
        assert result.accepted == 1400, result.errors[:3]
    monkeypatch.undo()
    return experiment


def test_a_viewer_reads_which_version_does_better(live_server, page, shoot, ab_test):
    sign_in(page, live_server.url, "vera")
    page.click("nav.mainnav >> text=A/B tests")
    expect(page.locator("#experiment-rows")).to_contain_text("tumor-classifier")
    page.click("#experiment-rows a")
    expect(page.locator("#verdict")).to_contain_text("converts")
    expect(page.locator("#verdict")).to_contain_text("better than A")
    expect(page.locator("#verdict")).to_contain_text("enough evidence")
    expect(page.locator("#verdict")).to_have_class(re.compile(r"\bgood\b"))
    expect(page.locator("#variant-a")).to_contain_text("2,100 outcomes")
    expect(page.locator("#variant-b")).to_contain_text("What drives it")
    expect(page.locator("#variant-a")).to_contain_text("inputs that move this model most")
    expect(page.locator("#variant-a")).to_contain_text("probability of “benign”")
    for machine in ("class 1", "log-odds", " units"):  # the model's words, not the machine's
        assert machine not in page.locator("#variants").inner_text()
        assert machine not in page.locator("#verdict").inner_text()
    expect(page.locator("[data-chart=ab-over-time]")).to_have_class(DRAWN)
    expect(page.locator("#numbers")).to_contain_text("Always-valid sequential p-value")
    assert page.locator("#decide-form").count() == 0
    shoot(page, "14-ab-readout")
    assert page.console_errors == []


def test_an_approver_extends_the_test_with_a_comment(live_server, page, shoot, ab_test):
    sign_in(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/experiments/{ab_test.pk}/")
    # The form stays where it is while the charts above it are drawn one after another
    # (each box takes its figure's height first): a click is never moved off its target.
    where = page.locator("#decide-form").bounding_box()["y"]
    expect(page.locator("[data-chart]:not(.drawn)")).to_have_count(0)
    assert page.locator("#decide-form").bounding_box()["y"] == where
    page.check("input[name=decision][value=extend]")
    page.fill("#extend-hours", "48")
    page.fill("#decide-comment", "Wait for the weekend's traffic before deciding")
    page.click("#decide-form button")
    expect(page.locator(".message.success")).to_contain_text("Extended")
    expect(page.locator("#decision table")).to_contain_text("weekend")
    expect(page.locator("#test-status")).to_have_text("Running")
    shoot(page, "15-ab-decision")
    deployment = Deployment.objects.get(pk=ab_test.deployment_id)
    assert deployment.spec["duration_seconds"] >= 48 * 3600
    assert page.console_errors == []
