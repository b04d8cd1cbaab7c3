"""Alerts in the portal: the Alertmanager receiver, deduplication, acknowledging and
silencing, notifications, the /metrics drift gauges and the pages — without a Prometheus
(test_monitoring.py runs the real one)."""

import io
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.monitoring import alerts
from portal.monitoring.models import Alert, DriftWindow, SyncStatus
from portal.notifications.models import Delivery
from portal.notifications.services import create_webhook
from portal.registry import services as registry
from portal.releases import services as releases
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = pytest.mark.django_db
TOKEN = "am-shared-secret"


@pytest.fixture
def production(users, project):
    return releases.create_environment(users["owner"], project, name="production")


@pytest.fixture
def receiver(settings):
    settings.MODELGATE_ALERTMANAGER_TOKEN = TOKEN
    client = Client()

    def post(body, token=TOKEN, **extra):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        return client.post("/api/v1/alerts/alertmanager/", body, content_type="application/json",
                           **headers, **extra)
    return post


def am_alert(status="firing", **labels):
    labels = {"alertname": "ModelgateFeatureDriftCritical", "severity": "critical",
              "project": "clinical-ml", "model": "tumor-classifier", "environment": "production",
              "endpoint": "tumor-classifier", "variant": "candidate", "feature": "mean radius",
              **labels}
    return {"status": status, "labels": labels,
            "annotations": {"summary": "mean radius drifted far", "description": "PSI 0.9"},
            "startsAt": "2026-11-22T02:30:00.123456789Z",
            "endsAt": "2026-11-22T02:35:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
            "fingerprint": "ignored"}


def body(*alerts_):
    return {"version": "4", "status": "firing", "receiver": "modelgate", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://am",
            "alerts": list(alerts_)}


# -- the Alertmanager receiver ------------------------------------------------------------------


def test_receiver_places_the_alert_and_dedupes_by_labels(receiver, clf, production):
    first = receiver(body(am_alert()))
    assert first.status_code == 200 and first.json() == {"received": 1, "changed": 1}
    again = receiver(body(am_alert()))
    assert again.json() == {"received": 1, "changed": 0}
    [alert] = Alert.objects.all()
    assert (alert.project.slug, alert.model, alert.environment) == ("clinical-ml", clf,
                                                                    production)
    assert (alert.state, alert.severity, alert.feature, alert.variant) == (
        "firing", "critical", "mean radius", "candidate")
    assert alert.starts_at.isoformat() == "2026-11-22T02:30:00.123456+00:00"
    assert alert.ends_at is None and alert.source == "alertmanager"

    receiver(body(am_alert("resolved")))
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.ends_at.isoformat() == "2026-11-22T02:35:00+00:00"


@pytest.mark.parametrize("token, status, code", [
    (None, 401, "not_authenticated"), ("wrong", 401, "not_authenticated")])
def test_receiver_refuses_a_missing_or_wrong_secret(receiver, token, status, code):
    response = receiver(body(am_alert()), token=token)
    assert response.status_code == status and response.json()["code"] == code
    assert not Alert.objects.exists()


def test_receiver_is_off_without_a_configured_secret(receiver, settings):
    settings.MODELGATE_ALERTMANAGER_TOKEN = ""
    response = receiver(body(am_alert()))
    assert response.status_code == 503 and response.json()["code"] == "receiver_disabled"


@pytest.mark.parametrize("payload, field", [
    ({"alerts": "nope"}, "alerts"),
    (body({"status": "exploded", "labels": {"alertname": "X"}}), "alerts[0].status"),
    (body({"status": "firing", "labels": {"severity": "critical"}}), "alerts[0].labels"),
    (body({"status": "firing", "labels": {"alertname": "X", "n": 3}}), "alerts[0].labels"),
    (body({"status": "firing", "labels": {"alertname": "X"}, "startsAt": "yesterday"}),
     "alerts[0].startsAt"),
    ([1, 2], "alerts"),
])
def test_receiver_refuses_malformed_bodies_and_keeps_nothing(receiver, payload, field):
    response = receiver(payload)
    assert response.status_code == 400 and response.json()["field"] == field
    assert not Alert.objects.exists()


def test_receiver_refuses_a_body_that_is_not_json(receiver):
    response = receiver("{not json")
    assert response.status_code == 400


def test_an_alert_about_no_known_project_is_kept_for_staff_only(receiver, api):
    receiver(body(am_alert(project="somebody-elses")))
    assert Alert.objects.get().project is None
    assert api("staff").get("/api/v1/alerts/").json()["count"] == 1
    assert api("owner").get("/api/v1/alerts/").json()["count"] == 0


# -- episodes, notifications, silences ---------------------------------------------------------


def test_firing_and_resolving_are_announced_unless_silenced(receiver, users, project, clf,
                                                            production, settings,
                                                            django_capture_on_commit_callbacks):
    create_webhook(users["owner"], project, name="ops", url="http://127.0.0.1:9/hook",
                   events=["alert.firing", "alert.resolved"])
    with django_capture_on_commit_callbacks(execute=False):
        receiver(body(am_alert()))
        receiver(body(am_alert("resolved")))
    events = list(Delivery.objects.order_by("pk").values_list("event", flat=True))
    assert events == ["alert.firing", "alert.resolved"]
    payload = Delivery.objects.first().payload
    assert payload["alert"] == "ModelgateFeatureDriftCritical"
    assert payload["url"] == Alert.objects.get().get_absolute_url()

    alert = Alert.objects.get()
    alerts.silence(users["contributor"], alert, until=timezone.now() + timedelta(hours=1),
                   reason="known data change upstream")
    with django_capture_on_commit_callbacks(execute=False):
        receiver(body(am_alert()))
    assert Delivery.objects.count() == 2  # silenced: nothing more sent


def test_a_condition_firing_again_reopens_its_row_and_clears_the_acknowledgement(
        receiver, users, clf, production):
    receiver(body(am_alert()))
    alert = Alert.objects.get()
    alerts.acknowledge(users["contributor"], alert, "looking into it")
    receiver(body(am_alert("resolved")))
    later = am_alert()
    later["startsAt"] = "2026-11-22T04:00:00Z"
    receiver(body(later))
    alert.refresh_from_db()
    assert alert.state == "firing" and alert.ends_at is None
    assert alert.starts_at.isoformat() == "2026-11-22T04:00:00+00:00"
    assert alert.acknowledged_at is None and Alert.objects.count() == 1


# -- people, through the API --------------------------------------------------------------------


def test_acknowledge_and_silence_by_role_with_reasons_audited(receiver, api, clf, production):
    receiver(body(am_alert()))
    alert_id = Alert.objects.get().pk
    url = f"/api/v1/alerts/{alert_id}/"
    denied = api("viewer").post(url + "acknowledge/", {"comment": "mine"}, format="json")
    assert denied.status_code == 403
    assert api("outsider").post(url + "acknowledge/", {"comment": "x"},
                                format="json").status_code == 404
    empty = api("contributor").post(url + "acknowledge/", {"comment": "  "}, format="json")
    assert empty.status_code == 400
    acked = api("contributor").post(url + "acknowledge/", {"comment": "rolling back"},
                                    format="json").json()
    assert acked["acknowledged_by"] == "carlos" and acked["acknowledge_comment"] == "rolling back"

    too_long = (timezone.now() + timedelta(days=40)).isoformat()
    assert api("contributor").post(url + "silence/", {"until": too_long, "reason": "x"},
                                   format="json").status_code == 400
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    assert api("contributor").post(url + "silence/", {"until": past, "reason": "x"},
                                   format="json").status_code == 400
    until = (timezone.now() + timedelta(hours=2)).isoformat()
    silenced = api("contributor").post(url + "silence/", {"until": until, "reason": "deploying"},
                                       format="json").json()
    assert silenced["silenced"] is True and silenced["silence_reason"] == "deploying"
    assert api("contributor").post(url + "unsilence/").json()["silenced"] is False
    actions = list(AuditEvent.objects.filter(object_type="monitoring.alert").order_by("id")
                   .values_list("action", flat=True))
    assert actions == ["alert.acknowledge", "alert.silence", "alert.unsilence"]


def test_alerts_api_lists_firing_first_and_filters(receiver, api, clf, production):
    receiver(body(am_alert(alertname="ModelgateLatencyHigh", severity="warning", feature="")))
    receiver(body(am_alert()))
    receiver(body(am_alert(alertname="ModelgateErrorRateHigh", feature="")))
    receiver(body(am_alert("resolved", alertname="ModelgateErrorRateHigh", feature="")))
    listed = api("viewer").get("/api/v1/alerts/").json()["results"]
    assert [(a["name"], a["state"]) for a in listed] == [
        ("ModelgateFeatureDriftCritical", "firing"), ("ModelgateLatencyHigh", "firing"),
        ("ModelgateErrorRateHigh", "resolved")]
    warnings = api("viewer").get("/api/v1/alerts/?severity=warning").json()
    assert [a["name"] for a in warnings["results"]] == ["ModelgateLatencyHigh"]
    resolved = api("viewer").get("/api/v1/alerts/?state=resolved&project=clinical-ml").json()
    assert [a["name"] for a in resolved["results"]] == ["ModelgateErrorRateHigh"]
    bad = api("viewer").get("/api/v1/alerts/?severity=apocalyptic")
    assert bad.status_code == 400


# -- polling --------------------------------------------------------------------------------------


class FakePrometheus:
    def __init__(self, listed=None, down=False):
        self.listed, self.down = listed or [], down

    def alerts(self):
        if self.down:
            from ops.prometheus import PrometheusUnavailable

            raise PrometheusUnavailable("cannot reach Prometheus at http://prom: ConnectError")
        return self.listed


def prom_alert(state="firing", **labels):
    return {"labels": {"alertname": "ModelgateErrorRateHigh", "severity": "critical",
                       "project": "clinical-ml", **labels},
            "annotations": {"summary": "errors"}, "state": state,
            "activeAt": "2026-11-22T02:00:00.5Z", "value": "2.5e-01"}


def test_polling_upserts_firing_ignores_pending_and_resolves_what_disappeared(clf, production):
    result = alerts.poll(FakePrometheus([prom_alert(), prom_alert("pending", alertname="Soon")]))
    assert result == {"polled": True, "firing": 1, "changed": 1}
    alert = Alert.objects.get()
    assert alert.value == "2.5e-01" and alert.source == "prometheus"
    alerts.poll(FakePrometheus([]))
    alert.refresh_from_db()
    assert alert.state == "resolved" and alert.ends_at is not None


def test_prometheus_down_leaves_alerts_as_they_were_and_records_why(clf, production):
    alerts.poll(FakePrometheus([prom_alert()]))
    assert alerts.poll(FakePrometheus(down=True))["polled"] is False
    assert Alert.objects.get().state == "firing"
    status = SyncStatus.objects.get(job="alerts-poll")
    assert not status.ok and "keep their last state" in status.detail


# -- /metrics --------------------------------------------------------------------------------------


def window(environment, model, variant="candidate", age=0, verdict="critical"):
    return DriftWindow.objects.create(
        environment=environment, model=model, endpoint=model.name, variant=variant,
        window_seconds=60, computed_at=timezone.now() - timedelta(seconds=age), report={
            "features": [{"name": "mean radius", "psi": 0.9, "ks": 0.4, "js_distance": 0.3,
                          "wasserstein": 1.2, "count": 500, "verdict": verdict},
                         {"name": "mean area", "psi": None, "count": 3,
                          "verdict": "insufficient_data"}],
            "drift_share": 1.0, "dataset_drift": True})


def test_metrics_export_fresh_drift_windows_only(clf, production, settings):
    settings.MODELGATE_DRIFT_STALE_SECONDS = 120
    window(production, clf)
    window(production, clf, variant="stable", age=600)
    text = Client().get("/metrics").content.decode()

    def series(name, **extra):  # prometheus_client writes labels in sorted order
        labels = {"environment": "production", "project": "clinical-ml",
                  "model": "tumor-classifier", "endpoint": "tumor-classifier",
                  "variant": "candidate", **extra}
        return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"

    assert series("modelgate_drift_verdict", feature="mean radius") + " 2.0" in text
    assert series("modelgate_drift_psi", feature="mean radius") + " 0.9" in text
    assert series("modelgate_drift_dataset") + " 1.0" in text
    assert series("modelgate_drift_rows", feature="mean area") + " 3.0" in text
    assert series("modelgate_drift_verdict", feature="mean area") not in text  # too few rows
    assert 'variant="stable"' not in text  # stale: its alerts must resolve, not fire forever


def test_metrics_need_the_bearer_token_when_one_is_set(settings, db):
    settings.MODELGATE_METRICS_TOKEN = "scrape-me"
    assert Client().get("/metrics").status_code == 401
    ok = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-me")
    assert ok.status_code == 200 and ok["Content-Type"].startswith("text/plain")


# -- pages ------------------------------------------------------------------------------------------


@pytest.fixture
def browser_for(users):
    def make(who):
        client = Client()
        client.force_login(users[who])
        return client
    return make


def test_alert_pages_show_filters_and_forms_by_role(receiver, browser_for, clf, production):
    receiver(body(am_alert()))
    alert = Alert.objects.get()
    page = browser_for("viewer").get("/alerts/?state=firing").content.decode()
    assert "mean radius drifted far" in page and 'id="alert-filters"' in page
    viewer = browser_for("viewer").get(alert.get_absolute_url()).content.decode()
    assert "ack-form" not in viewer and "Contributors of the project" in viewer
    contributor = browser_for("contributor")
    assert "ack-form" in contributor.get(alert.get_absolute_url()).content.decode()
    contributor.post(f"/alerts/{alert.pk}/acknowledge/", {"comment": "on it"})
    contributor.post(f"/alerts/{alert.pk}/silence/", {"duration": "4h", "reason": "fixing"})
    alert.refresh_from_db()
    assert alert.acknowledge_comment == "on it" and alert.silenced
    refused = contributor.post(f"/alerts/{alert.pk}/silence/", {"duration": "4h", "reason": ""},
                               follow=True).content.decode()
    assert "give a reason" in refused
    assert browser_for("outsider").get(alert.get_absolute_url()).status_code == 404
    dashboard = browser_for("viewer").get("/").content.decode()
    assert 'id="firing-alerts"' in dashboard


def test_endpoint_page_without_prometheus_says_so_and_shows_what_the_portal_knows(
        browser_for, users, clf, production, settings, django_capture_on_commit_callbacks):
    version = registry.register_version(users["contributor"], clf,
                                        io.BytesIO(random_classifier_bytes(3)), metadata())
    version = registry.validate_version(version.pk)
    request = releases.request_approval(users["contributor"], version, production,
                                        strategy="canary")
    with django_capture_on_commit_callbacks(execute=True):  # the rollout starts on commit
        releases.review(users["approver"], request, "approve", "ok")
    settings.MODELGATE_PROMETHEUS_URL = "http://127.0.0.1:9"
    window(production, clf)
    page = browser_for("viewer").get(
        "/p/clinical-ml/environments/production/monitoring/tumor-classifier/")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Monitoring unavailable" in text and 'id="drift-table"' in text
    assert "mean radius" in text and "critical" in text
    assert browser_for("outsider").get(
        "/p/clinical-ml/environments/production/monitoring/tumor-classifier/").status_code == 404
    assert browser_for("viewer").get(
        "/p/clinical-ml/environments/production/monitoring/nothing-here/").status_code == 404


# -- thresholds per model ---------------------------------------------------------------------------


def test_thresholds_per_model_are_validated_role_checked_and_audited(api, clf):
    url = f"/api/v1/models/{clf.pk}/monitoring/"
    defaults = api("viewer").get(url).json()
    assert defaults["max_error_rate"] == 0.05 and defaults["effective_drift"]["psi_critical"] == 0.25
    assert api("contributor").patch(url, {"max_error_rate": 0.02},
                                    format="json").status_code == 403
    for bad, field in (({"drift": {"psi_warning": 0.5, "psi_critical": 0.2}}, "drift"),
                       ({"drift": {"psi_typo": 1}}, "drift"),
                       ({"max_error_rate": 2}, "max_error_rate"),
                       ({"drift_window_seconds": 1}, "drift_window_seconds"),
                       ({"no_traffic_minutes": 0}, "no_traffic_minutes")):
        response = api("approver").patch(url, bad, format="json")
        assert response.status_code == 400, bad
        assert response.json()["field"] == field, response.json()
    changed = api("approver").patch(url, {"max_error_rate": 0.02, "drift": {"psi_critical": 0.3},
                                          "drift_window_seconds": 600}, format="json").json()
    assert changed["max_error_rate"] == 0.02 and changed["effective_drift"]["psi_critical"] == 0.3
    assert changed["drift"] == {"psi_critical": 0.3}
    event = AuditEvent.objects.get(action="monitoring.update")
    assert event.changes["max_error_rate"] == {"from": 0.05, "to": 0.02}


def test_export_prometheus_rules_prints_checked_rules_of_what_runs(
        users, clf, production, django_capture_on_commit_callbacks, tmp_path):
    from django.core.management import call_command
    from django.core.management.base import CommandError

    version = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(4)), metadata()).pk)
    request = releases.request_approval(users["contributor"], version, production)
    with django_capture_on_commit_callbacks(execute=True):
        releases.review(users["approver"], request, "approve", "ok")
    target = tmp_path / "rules.yml"
    call_command("export_prometheus_rules", "--output", str(target))
    text = target.read_text()
    assert "modelgate/clinical-ml/production/tumor-classifier" in text and "ModelgateDatasetDrift" in text
    with pytest.raises(CommandError, match="no environment"):
        call_command("export_prometheus_rules", "--environment", "nowhere")


def test_admin_lists_the_monitoring_rows_read_only(receiver, users, clf, production):
    receiver(body(am_alert()))
    users["staff"].is_superuser = True
    users["staff"].save()
    client = Client()
    client.force_login(users["staff"])
    for url in ("/admin/monitoring/alert/", "/admin/monitoring/monitorsettings/",
                "/admin/monitoring/driftwindow/", "/admin/monitoring/syncstatus/",
                "/admin/registry/explanation/"):
        assert client.get(url).status_code == 200, url
    alert = Alert.objects.get()
    assert client.get(f"/admin/monitoring/alert/{alert.pk}/change/").status_code == 200
    assert client.get("/admin/monitoring/alert/add/").status_code == 403
