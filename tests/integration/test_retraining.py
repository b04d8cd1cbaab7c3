"""Issue 17, item 3: retraining triggers, the continuous-training loop (decision 67).

Rules of a model fire a trigger when critical drift lasts on an endpoint or the accuracy
measured from feedback falls; the trigger starts a run on a target (loopback emulators of
Airflow, Kubeflow, GitHub and a webhook that hold each request to the published API,
tests/retraining_emulators.py) with the evidence; one run per incident (raced), a cooldown
per rule, every trigger audited and shown with its state; the version the run registers
names the trigger and says why on its page.
"""

from __future__ import annotations

import io
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from ops import rollout
from portal.audit.models import AuditEvent
from portal.experiments.models import Experiment, OutcomeBucket
from portal.monitoring import alerts
from portal.monitoring.choices import AlertSource
from portal.monitoring.models import DriftWindow
from portal.registry import services as registry
from portal.registry.models import ModelVersion
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import Deployment
from portal.retraining import conditions, services, triggers
from portal.retraining.choices import TriggerState
from portal.retraining.models import RetrainedVersion, RetrainingRule, RetrainingTrigger
from tests.integration.test_alerts import am_alert, body
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes, stored_files
from tests.retraining_emulators import Emulator, start, target_settings

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def emulator():
    found = Emulator()
    server = start(found)
    yield found
    server.shutdown()
    server.server_close()


@pytest.fixture
def targets(settings, emulator):
    settings.MODELGATE_RETRAINING_TARGETS = target_settings(emulator)
    emulator.failures.clear()
    return emulator


@pytest.fixture
def production(users, project):
    return releases.create_environment(users["owner"], project, name="production")


@pytest.fixture
def serving(users, clf):
    version = registry.register_version(users["contributor"], clf,
                                        io.BytesIO(random_classifier_bytes(1)), metadata())
    return version


def drift_alerts(minutes_ago: float, features=FEATURES[:2], environment="production"):
    """Critical drift alerts on the stable of the endpoint, firing for ``minutes_ago``."""
    since = (timezone.now() - timedelta(minutes=minutes_ago)).isoformat()
    found = [{**am_alert(feature=f, variant="stable", environment=environment),
              "startsAt": since} for f in features]
    return alerts.ingest(alerts.from_alertmanager(body(*found)), AlertSource.ALERTMANAGER)


def drift_window(production, clf, version, features=FEATURES[:2]):
    report = {"features": [{"name": f, "kind": "numeric", "count": 800, "reference_count": 400,
                            "psi": 0.91, "ks": 0.42, "ks_pvalue": 1e-9, "js_distance": 0.3,
                            "wasserstein": 0.8, "chi2_pvalue": 1e-12, "verdict": "critical"}
                           for f in features], "drift_share": 1.0, "dataset_drift": True}
    return DriftWindow.objects.create(environment=production, model=clf, version=version,
                                      endpoint=clf.name, variant="stable", window_seconds=300,
                                      report=report, computed_at=timezone.now())


def rule(users, clf, **fields):
    fields = {"name": "drift", "condition": "drift", "for_minutes": 30, "target": "airflow",
              "params": {"dag_id": "retrain_tumor"}, **fields}
    made, _secret = services.create_rule(users["contributor"], clf, **fields)
    return made


def evaluate(capture):
    with capture(execute=True):
        return services.evaluate()


def schema_of_retraining() -> dict:
    """The OpenAPI schema of the retraining routes alone (as /api/schema/ documents them),
    generated from the same viewsets: cheap enough to hold every answer of these tests to
    it (schemathesis skips these routes, test_api_schemathesis.py says why)."""
    from django.urls import include, path
    from drf_spectacular.generators import SchemaGenerator
    from rest_framework.routers import DefaultRouter

    from portal.retraining.api.views import RetrainingRuleViewSet, RetrainingTriggerViewSet

    router = DefaultRouter()
    router.register("retraining-rules", RetrainingRuleViewSet, basename="retraining-rule")
    router.register("retraining-triggers", RetrainingTriggerViewSet,
                    basename="retraining-trigger")
    return SchemaGenerator(patterns=[path("api/v1/", include(router.urls))]).get_schema(
        request=None, public=True)


def matches_schema(document: dict, answer, method: str, path: str) -> list[str]:
    from openapi_schema_validator import OAS30Validator

    content = (document["paths"][path][method]["responses"][str(answer.status_code)]
               .get("content"))
    if content is None:
        return [] if not answer.content else ["a body where the schema has none"]
    pointer = "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in (
        "paths", path, method, "responses", str(answer.status_code), "content",
        "application/json", "schema"))
    validator = OAS30Validator({**document, "$ref": pointer})
    return [f"{method} {path} {answer.status_code}: {e.message}"
            for e in validator.iter_errors(answer.json())]


def actions(obj):
    return list(AuditEvent.objects.filter(object_type=obj._meta.label_lower,
                                          object_id=str(obj.pk)).order_by("id")
                .values_list("action", flat=True))


# -- rules ---------------------------------------------------------------------------------------

def test_contributors_manage_rules_through_the_api_and_bad_input_is_refused(api, clf, targets,
                                                                            production):
    contributor = api("contributor")
    made = contributor.post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "drift in production", "condition": "drift",
        "environment": "production", "for_minutes": 30, "target": "kfp",
        "params": {"pipeline_id": "p-1", "pipeline_version_id": "pv-2"}})
    assert made.status_code == 201, made.content
    assert made.json()["environment"] == "production" and made.json()["secret"] == ""
    assert api("viewer").post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "x", "condition": "drift", "target": "kfp",
        "params": {"pipeline_id": "p", "pipeline_version_id": "v"}}).status_code == 403

    unknown = contributor.post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "x", "condition": "drift", "target": "jenkins"})
    assert unknown.status_code == 400 and unknown.json()["field"] == "target"
    assert "this installation has: airflow, airflow2, kfp, gh, webhook" in unknown.json()["detail"]
    not_allowed = contributor.post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "x", "condition": "drift", "target": "gh",
        "params": {"workflow": "deploy.yml", "ref": "main"}})
    assert not_allowed.status_code == 400 and "must be one of retrain.yml" in \
        not_allowed.json()["detail"]
    no_threshold = contributor.post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "x", "condition": "accuracy", "target": "airflow",
        "params": {"dag_id": "d"}})
    assert no_threshold.json()["field"] == "min_accuracy"
    assert RetrainingRule.objects.count() == 1  # nothing saved by a refusal

    rule_id = made.json()["id"]
    changed = contributor.patch(f"/api/v1/retraining-rules/{rule_id}/", {"for_minutes": 45})
    assert changed.status_code == 200 and changed.json()["for_minutes"] == 45
    document = schema_of_retraining()
    rules, one = "/api/v1/retraining-rules/", "/api/v1/retraining-rules/{id}/"
    assert not [*matches_schema(document, made, "post", rules),
                *matches_schema(document, changed, "patch", one),
                *matches_schema(document, unknown, "post", rules),
                *matches_schema(document, contributor.get(rules), "get", rules),
                *matches_schema(document, contributor.get(f"{rules}{rule_id}/"), "get", one)]
    assert contributor.delete(f"/api/v1/retraining-rules/{rule_id}/").status_code == 204
    assert [e.action for e in AuditEvent.objects.filter(action__startswith="retraining_rule")
            .order_by("id")] == ["retraining_rule.create", "retraining_rule.update",
                                 "retraining_rule.delete"]


def test_a_webhook_rule_gets_its_secret_once_and_a_private_address_is_refused(
        api, clf, targets, settings):
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = False
    refused = api("contributor").post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "hook", "condition": "drift", "target": "webhook",
        "params": {"url": "http://127.0.0.1:9/hook"}})
    assert refused.status_code == 400 and refused.json()["code"] == "private_address"
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = True
    made = api("contributor").post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "hook", "condition": "drift", "target": "webhook",
        "params": {"url": f"{targets.url}/hook"}})
    assert made.status_code == 201 and len(made.json()["secret"]) == 64
    listed = api("viewer").get(f"/api/v1/retraining-rules/{made.json()['id']}/").json()
    assert "secret" not in listed
    assert RetrainingRule.objects.filter(params__icontains=made.json()["secret"]).count() == 0


def test_a_webhook_rules_address_is_shown_whole_to_owners_only(api, clf, settings):
    """Receivers such as Slack carry their token in the path: non-owners see scheme and
    host, as the notifications' webhooks show theirs, for the rule and its triggers."""
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = True
    secret_path = "/services/T000/B000/XXXXsecrettokenXXXX"
    url = f"https://hooks.example.com{secret_path}"
    made = api("contributor").post("/api/v1/retraining-rules/", {
        "model": clf.pk, "name": "hook", "condition": "drift", "target": "webhook",
        "params": {"url": url}}, format="json")
    assert made.status_code == 201, made.json()
    made_rule = RetrainingRule.objects.get(pk=made.json()["id"])
    trigger = RetrainingTrigger.objects.create(
        rule=made_rule, model=clf, rule_name="hook", condition="drift", target="webhook",
        kind="webhook", params=made_rule.params, reason="drift")
    for role in ("viewer", "contributor"):
        for path in (f"/api/v1/retraining-rules/{made_rule.pk}/", "/api/v1/retraining-rules/",
                     f"/api/v1/retraining-triggers/{trigger.pk}/",
                     "/api/v1/retraining-triggers/"):
            shown = api(role).get(path)
            assert shown.status_code == 200, (role, path)
            assert secret_path not in shown.content.decode(), (role, path)
            assert "https://hooks.example.com/…" in shown.content.decode(), (role, path)
    assert api("owner").get(f"/api/v1/retraining-rules/{made_rule.pk}/").json()["params"] \
        == {"url": url}
    assert api("owner").get(f"/api/v1/retraining-triggers/{trigger.pk}/").json()["params"] \
        == {"url": url}


# -- drift: firing, evidence, sending ------------------------------------------------------------

def test_critical_drift_lasting_fires_one_trigger_with_the_evidence_and_starts_the_dag_run(
        users, clf, production, serving, targets, django_capture_on_commit_callbacks):
    drift_rule = rule(users, clf)
    drift_window(production, clf, serving)
    drift_alerts(minutes_ago=40)
    result = evaluate(django_capture_on_commit_callbacks)
    assert result["fired"] == 1
    [trigger] = RetrainingTrigger.objects.all()
    assert trigger.state == TriggerState.SENT and targets.invalid == []
    assert trigger.run_id == f"modelgate-trigger-{trigger.pk}"
    assert trigger.run_url.endswith(f"/dags/retrain_tumor/runs/modelgate-trigger-{trigger.pk}")
    conf = targets.dag_runs[("retrain_tumor", trigger.run_id)]
    evidence = conf["evidence"]
    assert conf["trigger_id"] == trigger.pk == evidence["trigger_id"]
    assert evidence["alert"]["name"] == "ModelgateFeatureDriftCritical"
    assert {f["name"] for f in evidence["features"]} == set(FEATURES[:2])
    assert evidence["features"][0]["psi"] == 0.91 and evidence["features"][0]["ks"] == 0.42
    assert evidence["serving_version"]["number"] == serving.number
    assert evidence["window"]["drift_window_seconds"] == 300
    assert evidence["environment"] == "production" and evidence["rule"]["name"] == "drift"
    assert "critical drift on tumor-classifier in production for 40 min" in trigger.reason
    assert actions(trigger) == ["retraining.trigger", "retraining.sent"]

    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 0  # cooling down
    drift_rule.refresh_from_db()
    RetrainingRule.objects.filter(pk=drift_rule.pk).update(cooldown_minutes=0)
    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 0  # the incident's run
    assert RetrainingTrigger.objects.count() == 1


def test_drift_younger_than_the_rule_or_in_another_environment_fires_nothing(
        users, project, clf, production, targets, django_capture_on_commit_callbacks):
    releases.create_environment(users["owner"], project, name="staging")
    rule(users, clf, environment=production)
    drift_alerts(minutes_ago=10)
    drift_alerts(minutes_ago=50, environment="staging")
    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 0
    assert not RetrainingTrigger.objects.exists()


def test_an_incident_fires_one_run_however_many_rules_look_at_it(
        users, clf, production, targets, django_capture_on_commit_callbacks):
    rule(users, clf, name="to airflow", cooldown_minutes=0)
    rule(users, clf, name="to kubeflow", cooldown_minutes=0, target="kfp",
         params={"pipeline_id": "p", "pipeline_version_id": "v"})
    drift_alerts(minutes_ago=40)
    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 1
    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 0
    assert RetrainingTrigger.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_evaluations_racing_on_one_incident_fire_one_trigger(task_queue):
    """Two workers fire the same finding at once, through two rules (the incident's claim)
    and through one rule (the cooldown's claim): one trigger each time."""
    from tests.portal_fixtures import make_clf, make_project, make_users

    task_queue.hold(triggers.SEND)
    users = make_users()
    clf = make_clf(make_project(users), users)
    production = releases.create_environment(users["owner"], clf.project, name="production")
    first = rule(users, clf, name="a", cooldown_minutes=0, environment=production,
                 target="webhook", params={"url": "https://hooks.example.com/a"})
    second = rule(users, clf, name="b", cooldown_minutes=0, environment=production,
                  target="webhook", params={"url": "https://hooks.example.com/b"})
    drift_alerts(minutes_ago=40)
    [finding] = conditions.findings(first, timezone.now())

    def race(*rules):
        barrier, fired = threading.Barrier(len(rules)), []

        def run(r):
            try:
                barrier.wait()
                fired.append(triggers.fire(r, finding))
            finally:
                connection.close()
        threads = [threading.Thread(target=run, args=(r,)) for r in rules]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return [t for t in fired if t is not None]

    assert len(race(first, second)) == 1
    assert RetrainingTrigger.objects.count() == 1
    RetrainingTrigger.objects.all().delete()  # the claims go with it: the incident is free
    RetrainingRule.objects.filter(pk=first.pk).update(cooldown_minutes=60,
                                                      last_triggered_at=None)
    first.refresh_from_db()
    assert len(race(first, first)) == 1
    assert RetrainingTrigger.objects.count() == 1


# -- sending: retried visibly, failures with their reason ---------------------------------------

def test_an_unreachable_target_is_retried_with_backoff_and_shown_then_sent(
        users, clf, production, targets, task_queue, django_capture_on_commit_callbacks):
    task_queue.hold(triggers.SEND)
    rule(users, clf, target="kfp", params={"pipeline_id": "p", "pipeline_version_id": "v"})
    drift_alerts(minutes_ago=40)
    evaluate(django_capture_on_commit_callbacks)
    [trigger] = RetrainingTrigger.objects.all()
    assert [name for name, *_ in task_queue.sent] == [triggers.SEND]

    targets.fail_next(503)
    now = timezone.now()
    with pytest.raises(triggers.TriggerRetry) as retry:
        services.send(trigger.pk, now=now)
    assert retry.value.retry_in == 30  # the next attempt: 30 s, then 1, 2, 4, 8 minutes
    trigger.refresh_from_db()
    assert (trigger.state, trigger.attempts) == (TriggerState.RETRYING, 1)
    assert trigger.last_error == "kubeflow pipelines: HTTP 503: emulated failure"
    assert trigger.next_attempt_at == now + timedelta(seconds=30)
    assert services.send(trigger.pk, now=now).attempts == 1  # not due yet: left alone

    client = Client()
    client.force_login(users["viewer"])
    page = client.get(clf.get_absolute_url()).content.decode()
    assert "retrying" in page and "HTTP 503" in page

    sent = services.send(trigger.pk, now=trigger.next_attempt_at)
    assert (sent.state, sent.attempts) == (TriggerState.SENT, 2) and sent.run_id
    assert sent.run_url.endswith(f"/#/runs/details/{sent.run_id}")
    assert actions(trigger) == ["retraining.trigger", "retraining.retrying", "retraining.sent"]


def test_a_refusal_fails_the_trigger_with_the_reason_and_so_does_the_last_attempt(
        users, clf, production, targets, task_queue, django_capture_on_commit_callbacks):
    task_queue.hold(triggers.SEND)
    rule(users, clf, target="gh", params={"workflow": "retrain.yml", "ref": "main"},
         cooldown_minutes=0)
    drift_alerts(minutes_ago=40, features=FEATURES[:1])
    evaluate(django_capture_on_commit_callbacks)
    targets.fail_next(404)
    failed = services.send(RetrainingTrigger.objects.get().pk)
    assert failed.state == TriggerState.FAILED
    assert failed.last_error == "github acme/models retrain.yml: HTTP 404: emulated failure"

    drift_alerts(minutes_ago=40, features=FEATURES[1:2])  # another incident? no: same one
    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 0
    trigger = RetrainingTrigger.objects.get()
    RetrainingTrigger.objects.filter(pk=trigger.pk).update(state=TriggerState.RETRYING,
                                                            attempts=5, next_attempt_at=None)
    targets.fail_next(503)
    gave_up = services.send(trigger.pk)
    assert gave_up.state == TriggerState.FAILED and gave_up.last_error.startswith(
        "gave up after 6 attempts: github acme/models retrain.yml: HTTP 503")


def test_a_webhook_rule_posts_signed_with_its_derived_secret(
        users, clf, production, targets, django_capture_on_commit_callbacks):
    made, secret = services.create_rule(users["contributor"], clf, name="hook",
                                        condition="drift", target="webhook",
                                        params={"url": f"{targets.url}/hook"})
    targets.webhook_secret = secret
    try:
        drift_alerts(minutes_ago=40)
        evaluate(django_capture_on_commit_callbacks)
    finally:
        targets.webhook_secret = ""
    trigger = RetrainingTrigger.objects.get()
    assert trigger.state == TriggerState.SENT and trigger.run_id == f"hook-{trigger.pk}"


# -- accuracy from feedback ----------------------------------------------------------------------

def ab_test(users, clf, production, serving):
    candidate = registry.register_version(users["contributor"], clf,
                                          io.BytesIO(random_classifier_bytes(2)), metadata())
    spec = deployments._spec("ab", {}, clf.name, candidate, serving)
    state = rollout.RolloutState(status=rollout.Status.PROGRESSING, generation=2,
                                 base_generation=1)
    deployment = Deployment.objects.create(
        environment=production, model=clf, candidate=candidate, stable=serving,
        endpoint=clf.name, strategy="ab", spec=spec.to_dict(), state=state.to_dict(),
        status="progressing")
    return Experiment.objects.create(deployment=deployment, kind="binary", metric="correct",
                                     split=0.5, key_id="k1", generation=2), candidate


def test_accuracy_measured_from_feedback_below_the_threshold_fires(
        users, clf, production, serving, targets, django_capture_on_commit_callbacks):
    experiment, candidate = ab_test(users, clf, production, serving)
    now = timezone.now()
    OutcomeBucket.objects.create(experiment=experiment, variant="stable", starts_at=now,
                                 n=300, total=280, total_sq=280)
    OutcomeBucket.objects.create(experiment=experiment, variant="candidate", starts_at=now,
                                 n=60, total=30, total_sq=30)  # 0.5, but too few outcomes
    rule(users, clf, name="accuracy", condition="accuracy", min_accuracy=0.9,
         min_outcomes=100, for_minutes=60)
    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 0
    OutcomeBucket.objects.filter(variant="candidate").update(n=200, total=150, total_sq=150)
    assert evaluate(django_capture_on_commit_callbacks)["fired"] == 1
    trigger = RetrainingTrigger.objects.get()
    assert trigger.serving_version == candidate
    assert trigger.reason.startswith(f"measured accuracy of v{candidate.number} on "
                                     "tumor-classifier in production is 0.750 over 200 outcomes")
    assert {m["variant"]: m["accuracy"] for m in trigger.evidence["measured"]} == {
        "stable": pytest.approx(280 / 300), "candidate": 0.75}


# -- lineage: the version the run registered -----------------------------------------------------

def test_a_version_registered_with_its_trigger_says_why_on_its_page(
        api, users, clf, production, serving, targets, django_capture_on_commit_callbacks,
        artifact_root):
    rule(users, clf)
    drift_alerts(minutes_ago=40)
    evaluate(django_capture_on_commit_callbacks)
    trigger = RetrainingTrigger.objects.get()
    before = (ModelVersion.objects.count(), stored_files(artifact_root))
    wrong = api("contributor").upload(clf.pk, random_classifier_bytes(3),
                                      metadata(triggered_by=trigger.pk + 1000))
    assert wrong.status_code == 400, wrong.content
    assert wrong.json()["code"] == "unknown_trigger" and wrong.json()["field"] == "triggered_by"
    assert (ModelVersion.objects.count(), stored_files(artifact_root)) == before

    made = api("contributor").upload(clf.pk, random_classifier_bytes(3),
                                     metadata(triggered_by=trigger.pk))
    assert made.status_code == 201, made.content
    version = ModelVersion.objects.get(pk=made.json()["id"])
    assert RetrainedVersion.objects.get(version=version).trigger == trigger
    client = Client()
    client.force_login(users["viewer"])
    page = client.get(version.get_absolute_url()).content.decode()
    assert "Retrained because of alert" in page and "ModelgateFeatureDriftCritical" in page
    assert f"trigger #{trigger.pk}" in page
    answer = api("viewer").get(f"/api/v1/retraining-triggers/{trigger.pk}/")
    listed = answer.json()
    assert listed["versions"] == [version.pk] and listed["state"] == "sent"
    document = schema_of_retraining()
    assert not [*matches_schema(document, answer, "get", "/api/v1/retraining-triggers/{id}/"),
                *matches_schema(document, api("viewer").get("/api/v1/retraining-triggers/"),
                                "get", "/api/v1/retraining-triggers/")]
    model_page = client.get(clf.get_absolute_url()).content.decode()
    assert f"v{version.number}</a>" in model_page and trigger.run_url in model_page


def test_rules_are_added_from_the_model_page(users, clf, targets):
    client = Client()
    client.force_login(users["contributor"])
    answer = client.post(f"/p/{clf.project.slug}/m/{clf.name}/retraining/new/", {
        "name": "nightly drift", "condition": "drift", "environment": "", "for_minutes": 30,
        "min_outcomes": 100, "target": "airflow", "params": '{"dag_id": "retrain"}',
        "cooldown_minutes": 60})
    assert answer.status_code == 200 and "Rule nightly drift added" in answer.content.decode()
    assert answer.headers["Cache-Control"] == "no-store"  # its secret, shown once: no copy
    bad = client.post(f"/p/{clf.project.slug}/m/{clf.name}/retraining/new/", {
        "name": "x", "condition": "drift", "for_minutes": 30, "min_outcomes": 100,
        "target": "airflow", "params": '{"dag": "retrain"}', "cooldown_minutes": 60})
    assert "unknown parameters for a airflow target: dag" in bad.content.decode()
    page = client.get(clf.get_absolute_url()).content.decode()
    assert "nightly drift" in page and "critical drift for 30 min" in page
    viewer = Client()
    viewer.force_login(users["viewer"])
    assert viewer.get(f"/p/{clf.project.slug}/m/{clf.name}/retraining/new/").status_code == 403


def test_a_webhook_target_checks_the_address_it_connects_to_unless_private_is_allowed(
        settings):
    from requests.adapters import HTTPAdapter

    from portal.retraining import targets as retraining_targets

    def adapter(target):
        return type(target.session.get_adapter("https://receiver.example/hook"))

    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = False
    checked = retraining_targets.build("webhook", rule_id=1, project="p")
    assert adapter(checked).__name__ == "PublicOnlyAdapter"
    settings.MODELGATE_WEBHOOK_ALLOW_PRIVATE = True
    allowed = retraining_targets.build("webhook", rule_id=1, project="p")
    assert adapter(allowed) is HTTPAdapter
