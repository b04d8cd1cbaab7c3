"""Two pages opened in Chromium with data, as their people would use them: a contributor
following an MLflow registered model from the model's MLflow page (decision 66) and
stopping again, and a fired retraining trigger's page (decision 67) with its evidence, its
retries and a link to the run it started."""

from __future__ import annotations

import io
import re
import socket
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from portal.audit.models import AuditEvent
from portal.registry import services as registry
from portal.registry.models import MlflowFollow, MlflowImport
from portal.releases import services as releases
from portal.retraining import services as retraining
from portal.retraining import triggers
from portal.retraining.choices import TriggerState
from portal.retraining.models import RetrainingTrigger
from tests.e2e.test_layout import LAYOUT
from tests.e2e.test_registry_pages import sign_in
from tests.integration.test_retraining import drift_alerts, drift_window, rule
from tests.portal_fixtures import metadata, random_classifier_bytes
from tests.retraining_emulators import Emulator, start, target_settings

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _fits(page) -> dict:
    fit = page.evaluate(LAYOUT)
    return {} if not (fit["scrollWidth"] > fit["clientWidth"] or fit["wide"]
                      or fit["outside"]) else fit


def test_a_contributor_follows_an_mlflow_model_sees_its_state_and_stops(
        live_server, page, shoot, users, clf, settings):
    settings.MODELGATE_MLFLOW_ALLOW_PRIVATE = True
    settings.MODELGATE_BASE_URL = live_server.url
    settings.MODELGATE_MLFLOW_POLL_SECONDS = 300
    dead = f"http://127.0.0.1:{_dead_port()}"  # no MLflow there: the first look fails
    # A follow that already imported a version (as a worker would have recorded it).
    champion = MlflowFollow.objects.create(
        model=clf, tracking_uri=dead, registered_name="tumor", alias="champion", secret="s",
        created_by=users["contributor"], last_checked_at=timezone.now() - timedelta(minutes=2))
    version = registry.register_version(users["contributor"], clf,
                                        io.BytesIO(random_classifier_bytes(1)), metadata())
    MlflowImport.objects.create(model=clf, follow=champion, tracking_uri=dead,
                                source="models:/tumor/4", status="done", version=version,
                                requested_by=None, run_id="a" * 32, experiment_id="1")

    sign_in(page, live_server.url, "carlos")
    page.goto(live_server.url + clf.get_absolute_url())
    page.click("text=Import from MLflow")
    expect(page.locator("#mlflow-follows")).to_contain_text("tumor@champion")
    expect(page.locator("#mlflow-follows")).to_contain_text("models:/tumor/4")

    # Alias and tag at once: refused on the form, in words, nothing made.
    form = page.locator("#follow-form")
    form.get_by_label("Tracking URI").fill(dead)
    form.get_by_label("Registered model").fill("tumor")
    form.get_by_label("Alias").fill("staging")
    form.get_by_label("Tag key").fill("stage")
    form.get_by_label("Tag value").fill("candidate")
    form.get_by_role("button", name="Follow").click()
    expect(page.locator("#follow-form")).to_contain_text(
        "follow either an alias or a tag (key and value)")
    assert MlflowFollow.objects.filter(model=clf).count() == 1

    page.locator("#follow-form").get_by_label("Alias").fill("")
    page.locator("#follow-form").get_by_role("button", name="Follow").click()
    expect(page.locator("h1")).to_have_text(f"{clf.name} follows tumor[stage=candidate]")
    made = MlflowFollow.objects.get(model=clf, tag_key="stage")
    expect(page.locator("#follow-secret")).to_have_text(made.secret)
    expect(page.locator("#follow-webhook-url")).to_have_text(
        f"{live_server.url}/api/v1/mlflow-follows/{made.pk}/webhook/")
    expect(page.locator("#follow-webhook-code")).to_contain_text(
        'events=["model_version_tag.set"]')
    shoot(page, "mlflow-follow-created")
    assert _fits(page) == {}

    page.click("text=Back to")
    rows = page.locator("#mlflow-follows tbody tr")
    expect(rows).to_have_count(2)
    # The worker's first look (run eagerly) could not reach MLflow: said, with the next look.
    tagged = rows.filter(has_text="tumor[stage=candidate]")
    expect(tagged).to_contain_text("mlflow_unavailable: the MLflow server at")
    expect(tagged).to_contain_text("next look")
    expect(tagged).to_contain_text("none yet")
    assert made.secret not in page.content()  # shown once, on the page that made it
    shoot(page, "mlflow-follows")
    assert _fits(page) == {}
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "mlflow-follows-phone")
    assert _fits(page) == {}
    page.set_viewport_size({"width": 1400, "height": 900})

    with page.expect_navigation():
        tagged.get_by_role("button", name="Stop following").click()
    expect(page.locator(".message")).to_contain_text(
        f"{clf.name} no longer follows tumor[stage=candidate]")
    expect(page.locator("#mlflow-follows tbody tr")).to_have_count(1)
    assert not MlflowFollow.objects.filter(pk=made.pk).exists()
    # Audited as the API's path is: the same service functions.
    assert list(AuditEvent.objects.filter(action__startswith="mlflow_follow.")
                .order_by("id").values_list("action", "actor__username")) == [
        ("mlflow_follow.create", "carlos"), ("mlflow_follow.delete", "carlos")]
    assert page.console_errors == []


def test_a_fired_retraining_trigger_shows_its_evidence_retries_and_run(
        live_server, page, shoot, users, project, clf, settings, task_queue):
    emulator = Emulator()
    server = start(emulator)
    try:
        settings.MODELGATE_RETRAINING_TARGETS = target_settings(emulator)
        production = releases.create_environment(users["owner"], project, name="production")
        serving = registry.register_version(users["contributor"], clf,
                                            io.BytesIO(random_classifier_bytes(1)), metadata())
        task_queue.hold(triggers.SEND)  # the test plays the worker, attempt by attempt
        rule(users, clf)
        drift_window(production, clf, serving)
        drift_alerts(minutes_ago=40)
        assert retraining.evaluate()["fired"] == 1
        trigger = RetrainingTrigger.objects.get()
        emulator.fail_next(503)
        with pytest.raises(triggers.TriggerRetry):
            retraining.send(trigger.pk)
        # The 30 s the next attempt waits for have passed.
        RetrainingTrigger.objects.filter(pk=trigger.pk).update(next_attempt_at=timezone.now())
        sent = retraining.send(trigger.pk)
        assert (sent.state, sent.attempts) == (TriggerState.SENT, 2) and sent.run_url
        retrained = registry.register_version(
            users["contributor"], clf, io.BytesIO(random_classifier_bytes(2)),
            metadata(triggered_by=trigger.pk))
    finally:
        server.shutdown()
        server.server_close()

    sign_in(page, live_server.url, "vera")
    page.goto(live_server.url + clf.get_absolute_url())
    page.locator("#retraining-triggers").get_by_role("link", name=f"#{trigger.pk}").click()
    expect(page.locator("h1")).to_contain_text(f"Retraining trigger #{trigger.pk}")
    expect(page.locator("h1 .badge")).to_have_text("sent")
    facts = page.locator("table.kv")
    expect(facts.get_by_role("link", name=sent.run_id)).to_have_attribute("href", sent.run_url)
    expect(facts).to_contain_text("ModelgateFeatureDriftCritical")
    expect(facts.get_by_role("link", name=f"v{retrained.number}")).to_be_visible()
    attempts = page.locator("#trigger-attempts")
    expect(attempts).to_contain_text(re.compile(
        r"1\..*retrying.*airflow.*HTTP 503: emulated failure.*2\..*sent", re.S))
    expect(facts).to_contain_text("drift: critical drift for 30 min · cooldown")
    expect(page.locator("#trigger-evidence")).to_contain_text('"psi": 0.91')
    shoot(page, "retraining-trigger")
    assert _fits(page) == {}
    page.set_viewport_size({"width": 390, "height": 844})
    shoot(page, "retraining-trigger-phone")
    assert _fits(page) == {}
    assert page.console_errors == []
