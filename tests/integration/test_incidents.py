"""Issue 14, item 6: blame where it belongs, in the alert pages.

Alerts of one cause on one endpoint are one incident (five drifting features on both arms of
a rollout: ten alerts, one incident), acknowledged and silenced together; an alert firing on
every variant that serves is marked as the endpoint's; and an alert on a variant that no
longer serves is resolved by the portal, with the reason. Without a Prometheus: alerts come
through the Alertmanager receiver and polling is faked (test_alerts.py has the helpers).
"""

import io
import time
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models.signals import post_init
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from ops import rollout
from ops.backends.base import BackendError, BackendUnavailable
from portal.audit.models import AuditEvent
from portal.monitoring import alerts, incidents, queries
from portal.monitoring.models import Alert
from portal.notifications.models import Delivery
from portal.notifications.services import create_webhook
from portal.registry import services as registry
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment, DeploymentEvent
from portal.releases.specs import _spec
from tests.integration.test_alerts import TOKEN, FakePrometheus, am_alert, body, prom_alert
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = pytest.mark.django_db

FEATURES = ["mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness"]
DRIFT = "ModelgateFeatureDriftCritical"


@pytest.fixture
def production(users, project):
    return releases.create_environment(users["owner"], project, name="production")


@pytest.fixture
def receiver(settings):
    settings.MODELGATE_ALERTMANAGER_TOKEN = TOKEN
    client = Client()

    def post(*alerts_):
        answer = client.post("/api/v1/alerts/alertmanager/", body(*alerts_),
                             content_type="application/json",
                             HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
        assert answer.status_code == 200, answer.content
        return answer.json()
    return post


@pytest.fixture
def browser_for(users):
    def make(who):
        client = Client()
        client.force_login(users[who])
        return client
    return make


@pytest.fixture
def rollout_of(users, clf, production):
    return rollouts_of(users, clf, production)


def rollouts_of(users, clf, environment):
    """``make(status)``: a new latest rollout of the classifier in ``environment``, in
    ``status`` (an A/B test between two versions while progressing; stable alone once rolled
    back; the candidate alone once succeeded), its plan ``generation`` applied."""
    v1, v2 = (registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(seed)), metadata()).pk)
        for seed in (11, 12))
    spec = _spec("ab", {"split": 0.5, "duration_seconds": 3600}, clf.name, v2, v1)

    def make(status, generation=2):
        state = rollout.RolloutState(status=rollout.Status(status), generation=generation,
                                     base_generation=1, step_started_at=time.time())
        deployment = Deployment.objects.create(
            environment=environment, model=clf, candidate=v2, stable=v1, endpoint=clf.name,
            strategy="ab", spec=spec.to_dict(), state=state.to_dict(), status=status)
        # The decision that emitted its plan, as ``deployments._record`` writes it; no
        # refusal or delay after it: the plan was applied.
        plan = rollout.current_plan(spec, state)
        DeploymentEvent.objects.create(deployment=deployment, event=status, status=status,
                                       weights=plan.weights() if plan else {},
                                       generation=state.generation)
        return deployment
    return make


def drift_event():
    """One drift event: five features drifting on both arms, ten critical alerts."""
    return [am_alert(feature=feature, variant=variant)
            for feature in FEATURES for variant in ("stable", "candidate")]


def incidents_api(api, who="viewer"):
    answer = api(who).get("/api/v1/incidents/")
    assert answer.status_code == 200, answer.content
    return answer.json()["results"]


# -- grouping ----------------------------------------------------------------------------------


def test_ten_alerts_of_one_drift_event_are_one_incident(receiver, api, clf, production):
    receiver(*drift_event())
    receiver(am_alert(alertname="ModelgateErrorRateHigh", feature="", variant="candidate"))
    assert Alert.objects.filter(state="firing").count() == 11
    listed = incidents_api(api)
    assert [(i["name"], len(i["alerts"])) for i in listed] == [
        (DRIFT, 10), ("ModelgateErrorRateHigh", 1)]
    drift = listed[0]
    assert drift["features"] == sorted(FEATURES)
    assert drift["variants"] == ["candidate", "stable"]
    assert (drift["project"], drift["environment"], drift["endpoint"], drift["severity"],
            drift["state"]) == ("clinical-ml", "production", "tumor-classifier", "critical",
                                "firing")
    assert drift["id"] == min(a["id"] for a in drift["alerts"])
    # Any alert of it finds it.
    some = drift["alerts"][7]["id"]
    assert api("viewer").get(f"/api/v1/incidents/{some}/").json()["id"] == drift["id"]
    assert api("outsider").get(f"/api/v1/incidents/{some}/").status_code == 404
    assert incidents_api(api, "outsider") == []


def test_another_environment_or_endpoint_is_another_incident(receiver, users, project, api,
                                                             clf, production):
    releases.create_environment(users["owner"], project, name="staging")
    receiver(am_alert(), am_alert(environment="staging"), am_alert(endpoint="other-endpoint"))
    assert len(incidents_api(api)) == 3


def test_an_incident_whose_alerts_all_resolved_is_gone(receiver, api, clf, production):
    receiver(am_alert())
    alert_id = Alert.objects.get().pk
    receiver(am_alert("resolved"))
    assert incidents_api(api) == []
    answer = api("viewer").get(f"/api/v1/incidents/{alert_id}/")
    assert answer.status_code == 404 and answer.json()["code"] == "incident_resolved"


# -- acknowledging and silencing, through the API ---------------------------------------------


def test_acknowledging_an_incident_acknowledges_every_alert_audited_once(receiver, api, clf,
                                                                         production):
    receiver(*drift_event())
    incident = incidents_api(api)[0]
    url = f"/api/v1/incidents/{incident['alerts'][3]['id']}/acknowledge/"
    acked = api("contributor").post(url, {"comment": "upstream feed changed"}, format="json")
    assert acked.status_code == 200, acked.content
    assert acked.json()["state"] == "acknowledged" and acked.json()["acknowledged"] is True
    assert Alert.objects.filter(acknowledged_at__isnull=False,
                                acknowledge_comment="upstream feed changed").count() == 10
    [event] = AuditEvent.objects.filter(action="incident.acknowledge")
    assert len(event.changes["alerts"]) == 10 and event.changes["features"] == sorted(FEATURES)
    assert event.actor_name == "carlos"
    assert not AuditEvent.objects.filter(action="alert.acknowledge").exists()


def test_silencing_an_incident_silences_every_alert_and_its_notifications(
        receiver, api, users, project, clf, production, django_capture_on_commit_callbacks):
    receiver(*drift_event())
    incident_id = incidents_api(api)[0]["id"]
    until = (timezone.now() + timedelta(hours=4)).isoformat()
    url = f"/api/v1/incidents/{incident_id}/"
    assert api("contributor").post(url + "silence/", {"until": until, "reason": ""},
                                   format="json").status_code == 400
    silenced = api("contributor").post(url + "silence/",
                                       {"until": until, "reason": "known data change"},
                                       format="json").json()
    assert silenced["state"] == "silenced" and silenced["silenced"] is True
    assert all(a["silenced"] and a["silence_reason"] == "known data change"
               for a in silenced["alerts"])
    assert AuditEvent.objects.filter(action="incident.silence").count() == 1

    create_webhook(users["owner"], project, name="ops", url="http://127.0.0.1:9/hook",
                   events=["alert.firing", "alert.resolved"])
    with django_capture_on_commit_callbacks(execute=False):
        receiver(*[{**a, "status": "resolved"} for a in drift_event()])
    assert not Delivery.objects.exists()  # silenced: nothing sent for any of the ten

    receiver(*drift_event())
    unsilenced = api("contributor").post(url + "unsilence/").json()
    assert unsilenced["silenced"] is False
    assert not Alert.objects.filter(silenced_until__isnull=False).exists()


@pytest.mark.parametrize("who, status", [("viewer", 403), ("outsider", 404)])
def test_an_incident_is_acknowledged_or_silenced_by_contributors_only(receiver, api, clf,
                                                                      production, who, status):
    receiver(*drift_event())
    incident_id = incidents_api(api)[0]["id"]
    until = (timezone.now() + timedelta(hours=1)).isoformat()
    url = f"/api/v1/incidents/{incident_id}/"
    assert api(who).post(url + "acknowledge/", {"comment": "mine"},
                         format="json").status_code == status
    assert api(who).post(url + "silence/", {"until": until, "reason": "mine"},
                         format="json").status_code == status
    assert api(who).post(url + "unsilence/").status_code == status
    assert not Alert.objects.filter(acknowledged_at__isnull=False).exists()
    assert not Alert.objects.filter(silenced_until__isnull=False).exists()
    assert not AuditEvent.objects.filter(action__startswith="incident.").exists()


def test_an_alert_joining_an_acknowledged_incident_leaves_it_partly_acknowledged(
        receiver, api, users, clf, production):
    receiver(*drift_event()[:4])
    incident = incidents.open_incidents(queries.alerts_for(users["owner"]))[0]
    incidents.acknowledge(users["contributor"], incident, "on it")
    receiver(*drift_event())
    [listed] = incidents_api(api)
    assert listed["state"] == "partly acknowledged" and len(listed["alerts"]) == 10


def test_a_silence_covers_only_the_alerts_shown_and_says_who_joined_since(receiver, api, clf,
                                                                         production):
    """Review: "Silence all 2" silenced the ten alerts firing at the time of the POST,
    critical ones that joined since included."""
    receiver(*drift_event()[:2])
    [shown] = incidents_api(api)
    shown_ids = [a["id"] for a in shown["alerts"]]
    receiver(*drift_event())  # eight more join the incident
    until = (timezone.now() + timedelta(hours=4)).isoformat()
    answer = api("contributor").post(
        f"/api/v1/incidents/{shown['id']}/silence/",
        {"until": until, "reason": "known data change", "alerts": shown_ids}, format="json")
    assert answer.status_code == 200, answer.content
    result = answer.json()
    assert sorted(result["acted_on"]) == sorted(shown_ids)
    assert len(result["not_shown"]) == 8 and result["no_longer_firing"] == []
    assert "Silenced 2 alerts" in result["message"]
    assert "8 alerts (8 critical) joined the incident" in result["message"]
    assert sorted(Alert.objects.filter(silenced_until__isnull=False)
                  .values_list("pk", flat=True)) == sorted(shown_ids)
    assert result["state"] == "firing" and len(result["alerts"]) == 10
    [event] = AuditEvent.objects.filter(action="incident.silence")
    assert sorted(event.changes["alerts"]) == sorted(shown_ids)


def test_without_the_alerts_shown_the_api_acts_on_the_incident_it_returns(receiver, api, clf,
                                                                           production):
    receiver(*drift_event())
    incident_id = incidents_api(api)[0]["id"]
    result = api("contributor").post(f"/api/v1/incidents/{incident_id}/acknowledge/",
                                     {"comment": "on it"}, format="json").json()
    assert sorted(result["acted_on"]) == sorted(a["id"] for a in result["alerts"])
    assert len(result["acted_on"]) == 10 and result["not_shown"] == []


def test_alerts_shown_that_resolved_since_are_not_acted_on(receiver, api, clf, production):
    receiver(*drift_event())
    [shown] = incidents_api(api)
    receiver(*[{**a, "status": "resolved"} for a in drift_event()[:3]])
    result = api("contributor").post(
        f"/api/v1/incidents/{shown['id']}/acknowledge/",
        {"comment": "on it", "alerts": [a["id"] for a in shown["alerts"]]}, format="json").json()
    assert len(result["acted_on"]) == 7 and len(result["no_longer_firing"]) == 3
    assert "3 of the alerts shown no longer fire" in result["message"]
    assert not Alert.objects.filter(state="resolved", acknowledged_at__isnull=False).exists()

    # None of those shown fires any more, others do: nothing is done, and it says why.
    receiver(*[{**a, "status": "resolved"} for a in drift_event()])
    receiver(drift_event()[0])  # fires again: a new episode, unacknowledged
    refired = Alert.objects.get(state="firing").pk
    gone = api("contributor").post(
        f"/api/v1/incidents/{shown['id']}/silence/",
        {"until": (timezone.now() + timedelta(hours=1)).isoformat(), "reason": "x",
         "alerts": [a["id"] for a in shown["alerts"] if a["id"] != refired]}, format="json")
    assert gone.status_code == 409 and gone.json()["code"] == "incident_changed"
    assert not Alert.objects.filter(silenced_until__isnull=False).exists()


def test_acknowledging_an_incident_keeps_earlier_acknowledgements(receiver, api, users, clf,
                                                                  production):
    """Review: acknowledging an incident replaced the acknowledger and comment of alerts
    someone had already acknowledged."""
    receiver(*drift_event()[:4])
    first = incidents.open_incidents(queries.alerts_for(users["owner"]))[0]
    incidents.acknowledge(users["contributor"], first, "upstream feed changed")
    receiver(*drift_event())
    [shown] = incidents_api(api)
    result = api("owner").post(
        f"/api/v1/incidents/{shown['id']}/acknowledge/",
        {"comment": "rolling back", "alerts": [a["id"] for a in shown["alerts"]]},
        format="json").json()
    assert len(result["acted_on"]) == 6 and len(result["unchanged"]) == 4
    assert "4 already acknowledged" in result["message"]
    kept = {(a.acknowledged_by.username, a.acknowledge_comment)
            for a in Alert.objects.filter(acknowledged_at__isnull=False)}
    assert kept == {("carlos", "upstream feed changed"), (users["owner"].username,
                                                          "rolling back")}
    assert Alert.objects.filter(acknowledge_comment="upstream feed changed").count() == 4
    assert result["state"] == "acknowledged"

    # An alert's own acknowledgement keeps the first one too.
    alert = Alert.objects.filter(acknowledge_comment="upstream feed changed").first()
    again = api("owner").post(f"/api/v1/alerts/{alert.pk}/acknowledge/",
                              {"comment": "mine now"}, format="json").json()
    assert (again["acknowledged_by"], again["acknowledge_comment"]) == (
        "carlos", "upstream feed changed")
    assert AuditEvent.objects.filter(action="alert.acknowledge").count() == 0


# -- endpoint alerts ---------------------------------------------------------------------------


def test_an_alert_on_every_serving_variant_is_marked_as_the_endpoints(receiver, api, clf,
                                                                      production, rollout_of):
    rollout_of("progressing")  # an A/B test: stable and candidate serve
    receiver(*[am_alert(feature=f, variant=v) for f in FEATURES[:2]
               for v in ("stable", "candidate")])
    receiver(am_alert(feature=FEATURES[2], variant="candidate"))  # the candidate's alone
    [incident] = incidents_api(api)
    marked = {(a["feature"], a["variant"]): a["endpoint_alert"] for a in incident["alerts"]}
    assert marked == {(FEATURES[0], "stable"): True, (FEATURES[0], "candidate"): True,
                      (FEATURES[1], "stable"): True, (FEATURES[1], "candidate"): True,
                      (FEATURES[2], "candidate"): False}
    assert incident["endpoint_alert"] is False and incident["explanation"] == ""

    receiver(am_alert(feature=FEATURES[2], variant="stable"))
    [incident] = incidents_api(api)
    assert incident["endpoint_alert"] is True
    assert incident["explanation"] == incidents.INPUT_DRIFT


def test_an_alert_on_the_candidate_alone_is_not_marked(receiver, api, clf, production,
                                                       rollout_of):
    rollout_of("progressing")
    receiver(*[am_alert(feature=f, variant="candidate") for f in FEATURES])
    [incident] = incidents_api(api)
    assert not any(a["endpoint_alert"] for a in incident["alerts"])


# -- a variant that no longer serves -----------------------------------------------------------


def test_alerts_of_a_removed_variant_resolve_with_the_reason(receiver, users, project, clf,
                                                             production, rollout_of,
                                                             django_capture_on_commit_callbacks):
    running = rollout_of("progressing")
    receiver(*drift_event())
    create_webhook(users["owner"], project, name="ops", url="http://127.0.0.1:9/hook",
                   events=["alert.resolved"])
    alerts.resolve_unserved()
    assert Alert.objects.filter(state="firing").count() == 10  # both still serve

    rolled_back = rollout.RolloutState(status=rollout.Status.ROLLED_BACK, generation=3,
                                       base_generation=1, step_started_at=time.time())
    Deployment.objects.filter(pk=running.pk).update(status="rolled_back",
                                                    state=rolled_back.to_dict())
    DeploymentEvent.objects.create(deployment=running, event="rolled_back",
                                   status="rolled_back", generation=3)  # and applied
    with django_capture_on_commit_callbacks(execute=False):
        result = alerts.poll(None)  # beat's poll: no Prometheus here, the look still runs
    assert result["polled"] is False
    candidate = Alert.objects.filter(variant="candidate")
    assert {a.state for a in candidate} == {"resolved"}
    assert all(a.ends_at is not None for a in candidate)
    reason = candidate.first().resolved_reason
    assert "candidate no longer serves" in reason and "rolled back" in reason
    assert "serving: stable" in reason
    assert {a.state for a in Alert.objects.filter(variant="stable")} == {"firing"}
    assert Delivery.objects.filter(event="alert.resolved").count() == 5

    # Alertmanager still reports them firing (the series are not stale yet): they stay
    # resolved, with their first end, and are not announced again.
    ended = {a.pk: a.ends_at for a in candidate}
    with django_capture_on_commit_callbacks(execute=False):
        assert receiver(*drift_event())["changed"] == 0
    assert {a.pk: (a.state, a.ends_at) for a in Alert.objects.filter(variant="candidate")} \
        == {pk: ("resolved", at) for pk, at in ended.items()}
    assert Delivery.objects.count() == 5

    # A new rollout serving a candidate again: its alerts fire again, the reason cleared.
    rollout_of("progressing")
    receiver(*drift_event())
    assert {(a.state, a.resolved_reason) for a in Alert.objects.all()} == {("firing", "")}


def test_polling_does_not_reopen_a_removed_variants_alert(clf, production, rollout_of):
    rollout_of("succeeded")  # the candidate serves alone
    labels = {"environment": "production", "endpoint": "tumor-classifier",
              "model": "tumor-classifier"}
    listed = [prom_alert(variant="stable", **labels), prom_alert(variant="candidate", **labels)]
    result = alerts.poll(FakePrometheus(listed))
    assert result["polled"] is True
    states = dict(Alert.objects.values_list("variant", "state"))
    assert states == {"stable": "resolved", "candidate": "firing"}
    assert "stable no longer serves" in Alert.objects.get(variant="stable").resolved_reason


def test_alerts_of_endpoints_the_portal_does_not_serve_are_left_alone(receiver, clf,
                                                                      production):
    receiver(*drift_event())  # no rollout: what serves is not known
    assert alerts.resolve_unserved() == []
    assert Alert.objects.filter(state="firing").count() == 10


class Backend:
    """The environment's backend, answering ``apply`` as told: ``error`` raised, if set."""

    def __init__(self):
        self.error = None

    def apply(self, plan, wait=False):
        if self.error is not None:
            raise self.error


@pytest.fixture
def backend(monkeypatch):
    fake = Backend()
    monkeypatch.setattr(deployments, "backend_for", lambda deployment: fake)
    return fake


def firing_variants():
    return sorted({a.variant for a in Alert.objects.filter(state="firing")})


@pytest.mark.parametrize("answer, last_event", [
    (BackendUnavailable("connection refused"), "apply_delayed"),  # retried later
    (BackendError("the endpoint refused the plan"), "failed"),  # a person must look
])
def test_a_rollback_not_applied_yet_leaves_the_candidates_alerts_firing(
        receiver, users, clf, production, rollout_of, backend, answer, last_event):
    """Review: the status said rolled back while the backend still routed to the candidate,
    and every poll resolved the candidate's alerts (and later reports of them firing)."""
    running = rollout_of("progressing")
    receiver(*drift_event())
    backend.error = answer
    deployments.command(users["contributor"], running, "rollback")
    running.refresh_from_db()
    assert running.status in ("rolled_back", "failed")
    assert running.events.order_by("-pk").first().event == last_event

    alerts.poll(None)
    receiver(am_alert("resolved", feature=FEATURES[0]))  # one ends, then fires again
    receiver(*drift_event())
    alerts.poll(None)
    assert firing_variants() == ["candidate", "stable"]
    assert Alert.objects.filter(state="firing").count() == 10
    assert not Alert.objects.exclude(resolved_reason="").exists()


def test_a_delayed_rollback_resolves_the_candidates_alerts_once_applied(
        receiver, api, users, clf, production, rollout_of, backend):
    running = rollout_of("progressing")
    receiver(*drift_event())
    backend.error = BackendUnavailable("connection refused")
    deployments.command(users["contributor"], running, "rollback")
    alerts.poll(None)
    assert firing_variants() == ["candidate", "stable"]
    # Both may still serve: drift on both is still the endpoint's.
    assert incidents_api(api)[0]["endpoint_alert"] is True

    backend.error = None  # the platform is back: reconcile applies the stable-only plan
    deployments.advance(running.pk)
    assert running.events.order_by("-pk").first().event == "applied"
    alerts.poll(None)
    assert firing_variants() == ["stable"]
    assert "candidate no longer serves" in Alert.objects.filter(
        variant="candidate").first().resolved_reason


def test_a_rollback_whose_stable_only_plan_failed_too_leaves_the_candidates_alerts_firing(
        receiver, clf, production, rollout_of, backend):
    running = rollout_of("progressing", generation=3)  # not its first plan
    receiver(*drift_event())
    backend.error = BackendError("the endpoint refused the plan")
    deployments.advance(running.pk)  # the A/B plan refused: roll back; that refused too
    running.refresh_from_db()
    last = running.events.order_by("-pk").first()
    assert running.status == "rolled_back" and last.event == "apply_failed"
    assert "the stable-only plan could not be applied either" in last.reason
    alerts.poll(None)
    receiver(am_alert("resolved"))
    receiver(am_alert())  # a firing report of the candidate is not turned into "resolved"
    assert firing_variants() == ["candidate", "stable"]
    assert Alert.objects.filter(state="firing").count() == 10


def test_the_stables_alerts_fire_until_the_final_plan_is_served(receiver, clf, production,
                                                                rollout_of):
    """Promoting: the final plan (the candidate alone) is applied, but the stable serves
    until the backend says it serves the new plan (the rollout then succeeds)."""
    rollout_of("promoting")
    receiver(*drift_event())
    alerts.poll(None)
    assert firing_variants() == ["candidate", "stable"]


def test_a_success_after_a_delayed_promotion_resolves_the_stables_alerts(receiver, clf,
                                                                         production,
                                                                         rollout_of):
    """The final plan's apply was delayed while promoting; the next advance applied it, and
    the rollout succeeded once the backend served it: the stable is gone."""
    promoting = rollout_of("promoting")
    DeploymentEvent.objects.create(deployment=promoting, event="apply_delayed",
                                   status="promoting")
    receiver(*drift_event())
    succeeded = rollout.RolloutState(status=rollout.Status.SUCCEEDED, generation=2,
                                     base_generation=1)
    Deployment.objects.filter(pk=promoting.pk).update(status="succeeded",
                                                      state=succeeded.to_dict())
    DeploymentEvent.objects.create(deployment=promoting, event="succeeded", status="succeeded")
    alerts.poll(None)
    assert firing_variants() == ["candidate"]


def test_the_poll_reads_only_the_latest_rollout_of_each_endpoint(receiver, clf, production,
                                                                 rollout_of):
    """Review: every poll loaded every rollout ever made, with its spec and state, to keep
    the latest of each endpoint; its cost grew with the history."""
    receiver(*[am_alert(feature=f, variant="stable") for f in FEATURES])

    def measure():
        loaded = []

        def count(sender, instance, **kwargs):
            loaded.append(instance.pk)

        post_init.connect(count, sender=Deployment)
        try:
            with CaptureQueriesContext(connection) as queries_:
                assert alerts.poll(None)["polled"] is False
        finally:
            post_init.disconnect(count, sender=Deployment)
        return len(queries_), loaded

    rollout_of("rolled_back")
    measure()  # the first poll records its status: a query more than the next ones
    first = measure()
    for status in ("rolled_back", "kept_stable", "failed", "succeeded", "rolled_back"):
        rollout_of(status)
    latest = rollout_of("rolled_back")
    again = measure()
    assert again == (first[0], [latest.pk])
    assert firing_variants() == ["stable"]  # the stable serves: nothing was resolved


# -- pages -------------------------------------------------------------------------------------


def test_alerts_page_shows_one_row_per_incident_with_its_alerts(receiver, browser_for, clf,
                                                                production, rollout_of):
    rollout_of("progressing")
    receiver(*drift_event())
    page = browser_for("viewer").get("/alerts/").content.decode()
    assert page.count('class="incident-row"') == 1
    assert 'data-alerts="10"' in page and page.count("mean radius drifted far") == 10
    assert ", ".join(sorted(FEATURES)) in page and "candidate, stable" in page
    assert incidents.INPUT_DRIFT in page and "endpoint alert" in page
    assert "ack-incident" not in page  # a viewer does not act
    assert "ack-incident" in browser_for("contributor").get("/alerts/").content.decode()

    alert = Alert.objects.filter(variant="candidate").first()
    detail = browser_for("viewer").get(alert.get_absolute_url()).content.decode()
    assert 'id="endpoint-alert"' in detail and incidents.INPUT_DRIFT in detail
    assert 'id="incident-link"' in detail and "10 ModelgateFeatureDriftCritical alerts" in detail


def test_incident_buttons_act_on_every_alert_by_role(receiver, browser_for, clf, production):
    receiver(*drift_event())
    lead = Alert.objects.order_by("pk").last()  # any alert of it names the incident
    url = f"/alerts/{lead.pk}/incident/"
    viewer = browser_for("viewer").post(url + "acknowledge/", {"comment": "mine"}, follow=True)
    assert "you need the contributor role" in viewer.content.decode()
    contributor = browser_for("contributor")
    answer = contributor.post(url + "acknowledge/", {"comment": "rolling back"})
    assert answer.status_code == 302 and "#incident-" in answer["Location"]
    contributor.post(url + "silence/", {"duration": "1d", "reason": "known"})
    assert Alert.objects.filter(acknowledge_comment="rolling back", silence_reason="known",
                                silenced_until__isnull=False).count() == 10
    refused = contributor.post(url + "silence/", {"duration": "1d", "reason": ""},
                               follow=True).content.decode()
    assert "give a reason" in refused
    assert browser_for("outsider").post(url + "acknowledge/",
                                        {"comment": "x"}).status_code == 404
    page = browser_for("viewer").get("/alerts/").content.decode()
    assert "incident-state" in page and "silenced" in page


def test_incident_forms_act_on_the_alerts_the_page_showed(receiver, browser_for, clf,
                                                          production):
    receiver(*drift_event()[:2])
    contributor = browser_for("contributor")
    page = contributor.get("/alerts/").content.decode()
    shown = sorted(Alert.objects.values_list("pk", flat=True))
    for pk in shown:
        assert f'name="alerts" value="{pk}"' in page
    assert "Silence all 2" in page and "Acknowledge all 2" in page

    receiver(*drift_event())  # eight more, critical, after the page was shown
    answer = contributor.post(f"/alerts/{shown[0]}/incident/silence/",
                              {"duration": "1d", "reason": "known", "alerts": shown},
                              follow=True).content.decode()
    assert "Silenced 2 alerts" in answer
    assert "8 alerts (8 critical) joined the incident" in answer
    assert sorted(Alert.objects.filter(silenced_until__isnull=False)
                  .values_list("pk", flat=True)) == shown
