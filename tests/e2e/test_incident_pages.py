"""The alerts page in Chromium: one drift event (five features on both arms of an A/B test,
ten alerts from Alertmanager) is one incident row, marked as the endpoint's; a contributor
opens it and acknowledges the ten shown at once, not an eleventh that joined meanwhile. Screenshots go to test-output/screenshots/."""

import pytest
from django.test import Client
from playwright.sync_api import expect

from portal.monitoring.models import Alert
from tests.e2e.test_registry_pages import sign_in
from tests.integration.test_alerts import TOKEN, am_alert, body
from tests.integration.test_incidents import FEATURES, rollouts_of

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def production(users, project):
    from portal.releases import services as releases

    return releases.create_environment(users["owner"], project, name="production")


def test_a_drift_event_is_one_incident_acknowledged_at_once(live_server, page, shoot, settings,
                                                            users, clf, production):
    rollouts_of(users, clf, production)("progressing")  # stable and candidate serve
    settings.MODELGATE_ALERTMANAGER_TOKEN = TOKEN
    answer = Client().post(
        "/api/v1/alerts/alertmanager/",
        body(*[am_alert(feature=f, variant=v) for f in FEATURES for v in ("stable", "candidate")]),
        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert answer.json()["changed"] == 10

    sign_in(page, live_server.url, "carlos")
    page.click("nav >> text=Alerts")
    rows = page.locator("#incidents tr.incident-row")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("ModelgateFeatureDriftCritical")
    expect(rows.first.locator(".variants")).to_have_text("candidate, stable")
    expect(rows.first.locator(".endpoint-alert")).to_be_visible()
    expect(rows.first).to_contain_text("the inputs changed, not the candidate")
    alerts = page.locator("#incidents details table.alerts tbody tr")
    expect(alerts.first).to_be_hidden()  # folded until opened
    page.click("#incidents details summary")
    expect(alerts).to_have_count(10)
    expect(alerts.first).to_be_visible()
    expect(alerts.locator(".endpoint-alert")).to_have_count(10)
    shoot(page, "monitoring-incident")

    # One more critical alert joins while the page is open: the form acts on the ten shown.
    Client().post("/api/v1/alerts/alertmanager/", body(am_alert(feature="worst radius")),
                  content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    page.fill(".ack-incident input[name=comment]", "upstream feed changed, fix deploying")
    page.click(".ack-incident button[type=submit]")
    said = page.locator(".message.success")
    expect(said).to_contain_text("Acknowledged 10 alerts.")
    expect(said).to_contain_text("1 alert (1 critical) joined the incident since it was shown")
    expect(page.locator("#incidents .incident-state")).to_have_text("partly acknowledged")
    expect(page.locator(".ack-incident button[type=submit]")).to_have_text(
        "Acknowledge the 1 unacknowledged")
    assert Alert.objects.filter(acknowledged_at__isnull=False).count() == 10
    assert Alert.objects.get(feature="worst radius").acknowledged_at is None
    assert page.console_errors == []
