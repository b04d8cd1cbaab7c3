"""Approval requests: gates against the champion, four-eyes, roles, expiry, and the pages."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.registry import services as registry
from portal.releases import services
from portal.releases.models import ApprovalRequest
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rollouts_started(task_queue):
    """Approval queues the rollout; these tests stop at that boundary (the rollouts
    themselves run against real model servers in test_deployments.py)."""
    return task_queue.hold("workers.releases.start_deployment")


@pytest.fixture
def versions(api, clf):
    client = api("contributor")
    ids = [client.upload(clf.pk, random_classifier_bytes(seed),
                         metadata(metrics={"roc_auc": auc})).json()["id"]
           for seed, auc in ((1, 0.95), (2, 0.97), (3, 0.90))]
    return ids


@pytest.fixture
def production(api, project):
    response = api("owner").post("/api/v1/environments/", {
        "project": project.pk, "name": "production", "required_approvals": 1,
        "gates": [{"metric": "roc_auc", "min": 0.85}, {"metric": "roc_auc", "max_drop": 0.02}],
    }, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def _request(api, who, version, environment, **extra):
    return api(who).post("/api/v1/approval-requests/", {
        "version": version, "environment": environment["id"], "strategy": "canary", **extra},
        format="json")


def test_only_owners_create_environments_and_bad_gates_are_refused(api, project):
    payload = {"project": project.pk, "name": "staging"}
    assert api("approver").post("/api/v1/environments/", payload,
                                format="json").status_code == 403
    assert api("outsider").post("/api/v1/environments/", payload,
                                format="json").status_code == 404
    bad = api("owner").post("/api/v1/environments/", {**payload, "gates": [{"metric": "x"}]},
                            format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "gates"
    assert api("owner").post("/api/v1/environments/", payload, format="json").status_code == 201
    again = api("owner").post("/api/v1/environments/", payload, format="json")
    assert again.status_code == 409 and again.json()["code"] == "duplicate_environment"


def test_gates_are_judged_against_the_champion(api, clf, users, versions, production):
    registry.set_alias(users["approver"], clf, "champion", clf.versions.get(pk=versions[1]))
    better = _request(api, "contributor", versions[0], production).json()
    assert better["champion"] == 2 and better["gates_passed"] is True
    worse = _request(api, "contributor", versions[2], production).json()
    assert worse["gates_passed"] is False
    failed = [g for g in worse["gate_results"] if not g["passed"]]
    assert failed[0]["rule"] == "max_drop" and failed[0]["champion"] == 0.97
    response = api("approver").post(f"/api/v1/approval-requests/{worse['id']}/approve/",
                                    {"comment": "looks fine"}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "gates_failed"


def test_four_eyes_and_required_comment(api, users, project, versions, production,
                                       rollouts_started):
    # The approver requests a release: they cannot approve it themselves.
    request = _request(api, "approver", versions[1], production).json()
    own = api("approver").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                               {"comment": "mine"}, format="json")
    assert own.status_code == 403 and own.json()["code"] == "own_request"
    blank = api("owner").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                              {"comment": "  "}, format="json")
    assert blank.status_code == 400 and blank.json()["field"] == "comment"
    viewer = api("viewer").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                                {"comment": "ok"}, format="json")
    assert viewer.status_code == 403
    done = api("owner").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                             {"comment": "metrics beat the baseline"}, format="json")
    assert done.status_code == 200 and done.json()["status"] == "approved"
    assert rollouts_started.args_of("workers.releases.start_deployment") == [(request["id"],)]
    assert done.json()["reviews"][0]["reviewer"] == "olivia"
    closed = api("owner").post(f"/api/v1/approval-requests/{request['id']}/reject/",
                               {"comment": "changed my mind"}, format="json")
    assert closed.status_code == 409 and closed.json()["code"] == "request_closed"
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {"approval_request.create", "approval_request.approve",
            "approval_request.decide"} <= actions


def test_two_approvals_needed_and_a_rejection_closes(api, users, project, versions, production):
    api("owner").patch(f"/api/v1/environments/{production['id']}/", {"required_approvals": 2},
                       format="json")
    request = _request(api, "contributor", versions[1], production).json()
    first = api("approver").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                                 {"comment": "ok"}, format="json").json()
    assert first["status"] == "open"
    twice = api("approver").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                                 {"comment": "ok again"}, format="json")
    assert twice.status_code == 409 and twice.json()["code"] == "already_reviewed"
    second = api("owner").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                               {"comment": "ok"}, format="json").json()
    assert second["status"] == "approved"

    other = _request(api, "contributor", versions[0], production).json()
    rejected = api("approver").post(f"/api/v1/approval-requests/{other['id']}/reject/",
                                    {"comment": "wait for the new data"}, format="json").json()
    assert rejected["status"] == "rejected"


def test_one_open_request_per_version_and_environment(api, versions, production):
    assert _request(api, "contributor", versions[1], production).status_code == 201
    again = _request(api, "contributor", versions[1], production)
    assert again.status_code == 409 and again.json()["code"] == "duplicate_request"


def test_invalid_version_cannot_be_requested(api, clf, production):
    from tests.portal_fixtures import schema

    bad = api("contributor").upload(clf.pk, random_classifier_bytes(9),
                                    metadata(input_schema=schema(["a"]))).json()
    response = _request(api, "contributor", bad["id"], production)
    assert response.status_code == 409 and response.json()["code"] == "version_not_ready"


PYTHON_WORDS = ("__init__", "argument", "TypeError", "not supported between", "iterable",
                "NoneType", "object has no", "<class")


@pytest.mark.parametrize("strategy, params, field, words", [
    ("canary", {"steps": [{"weight": 0.5, "bake_seconds": 60}]}, "strategy_params",
     "end with weight 1.0"),
    ("canary", {"steps": [{"weight": 1.0, "bake": 60}]}, "strategy_params.steps[0].bake",
     "unknown parameter steps[0].bake; valid here: bake_seconds, weight"),
    ("canary", {"steps": [[0.5, 60], {"weight": 1.0, "bake_seconds": 60, "pause": True}]},
     "strategy_params.steps[1].pause", "unknown parameter steps[1].pause"),
    ("canary", {"thresholds": {"max_error_rate": "high"}},
     "strategy_params.thresholds.max_error_rate", 'max_error_rate must be a number, not "high"'),
    ("canary", {"thresholds": {"max_errors": 0.1}}, "strategy_params.thresholds.max_errors",
     "unknown parameter thresholds.max_errors"),
    ("canary", {"bake_seconds": 60}, "strategy_params.bake_seconds",
     "unknown parameter bake_seconds"),
    ("canary", {"steps": "fast"}, "strategy_params.steps", "steps must be a non-empty list"),
    ("canary", {"steps": [{"weight": 0.5}, {"weight": "all"}]},
     "strategy_params.steps[1].weight", "steps[1].weight must be a number"),
    ("canary", {"steps": [{"weight": 0.5, "bake_seconds": 0}, {"weight": 1.0, "bake_seconds": 0}]},
     "strategy_params", "step 1 bakes 0 s, less than the 30 s one analysis reads"),
    ("canary", {"steps": [{"weight": 0.5, "bake_seconds": 60}, {"weight": 0.25, "bake_seconds": 60},
                          {"weight": 1.0, "bake_seconds": 60}]},
     "strategy_params", "strictly increasing, each above 0 and at most 1"),
    ("canary", {"steps": [{"weight": (i + 1) / 25, "bake_seconds": 60} for i in range(25)]},
     "strategy_params", "a canary has at most 20 steps, not 25"),
    ("ab", {"split": "half"}, "strategy_params.split", 'split must be a number, not "half"'),
    ("ab", {"split": 0.5, "outcome": {"metric": "conversion", "colour": "red"}},
     "strategy_params", "unknown outcome settings"),
    ("bluegreen", {"warm_seconds": None}, "strategy_params.warm_seconds",
     "warm_seconds must be a number, not null"),
])
def test_strategy_parameters_the_rollout_would_refuse_are_refused_at_request_time(
        api, versions, production, strategy, params, field, words):
    """Before: an unknown key surfaced as "CanaryStep.__init__() got an unexpected keyword
    argument 'bake'", a string as "'<' not supported between instances of..."."""
    response = api("contributor").post("/api/v1/approval-requests/", {
        "version": versions[1], "environment": production["id"], "strategy": strategy,
        "strategy_params": params}, format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid_strategy_params"
    assert body["field"] == field and words in body["detail"], body
    assert not any(w in body["detail"] for w in PYTHON_WORDS), body["detail"]
    assert not ApprovalRequest.objects.exists()


def test_the_request_form_takes_strategy_parameters_and_names_the_bad_one(users, versions,
                                                                          production):
    requester = Client()
    requester.force_login(users["contributor"])
    url = "/p/clinical-ml/m/tumor-classifier/v/2/release/"
    page = requester.post(url, {"environment": production["id"], "strategy": "canary",
                                "strategy_params": '{"steps": [{"weight": 1.0, "bake": 9}]}'})
    assert page.status_code == 200 and not ApprovalRequest.objects.exists()
    field = page.context["form"]["strategy_params"]
    assert field.errors == ["strategy parameters: unknown parameter steps[0].bake; valid here: "
                            "bake_seconds, weight"]
    zero = requester.post(url, {"environment": production["id"], "strategy": "canary",
                                "strategy_params": '{"steps": [{"weight": 0.5, "bake_seconds": '
                                                   '0}, {"weight": 1.0, "bake_seconds": 0}]}'})
    assert "step 1 bakes 0 s" in zero.context["form"]["strategy_params"].errors[0]
    made = requester.post(url, {"environment": production["id"], "strategy": "canary",
                                "strategy_params": '{"steps": [{"weight": 0.5, "bake_seconds": '
                                                   '60}, {"weight": 1.0, "bake_seconds": 60}]}'})
    assert made.status_code == 302
    assert ApprovalRequest.objects.get().strategy_params["steps"][0]["bake_seconds"] == 60


def test_environment_settings_are_checked_per_backend_naming_the_setting(api, users, project,
                                                                       settings):
    settings.MODELGATE_TARGETS = {
        "local": {"backend": "local", "ports": "9100-9199"},
        "cluster": {"backend": "kubernetes", "namespace": "ml",
                    "allowed": {"namespace": ["ml", "ml-dev"]}}}
    payload = {"project": project.pk, "name": "staging"}
    cases = [
        ({"target": "local", "settings": {"port": 9100}}, "settings.port",
         "port cannot be set here: a local environment sets nothing"),
        ({"target": "cluster", "settings": {"namespace": "ml", "kubeconfig": "/etc/x"}},
         "settings.kubeconfig", "kubeconfig cannot be set here: a kubernetes environment may "
                                "set only env, namespace"),
        ({"target": "cluster", "settings": {"namespace": "kube-system"}}, "settings.namespace",
         "settings.namespace must be one of ml, ml-dev"),
        ({"target": "cluster", "settings": {"env": {"LD_PRELOAD": "x"}}},
         "settings.env.LD_PRELOAD", "settings.env: LD_PRELOAD cannot be set; valid: "),
        ({"target": "cluster", "settings": {"env": {"MODELGATE_THREADS": 4}}},
         "settings.env.MODELGATE_THREADS", "settings.env.MODELGATE_THREADS must be a string"),
    ]
    for extra, field, words in cases:
        response = api("owner").post("/api/v1/environments/", {**payload, **extra},
                                     format="json")
        assert response.status_code == 400, response.json()
        body = response.json()
        assert body["code"] == "invalid_settings" and body["field"] == field, body
        assert words in body["detail"], body["detail"]
        assert not any(w in body["detail"] for w in ("['", "is not of type")), body["detail"]
    owner = Client()
    owner.force_login(users["owner"])
    page = owner.post("/p/clinical-ml/environments/new/", {
        "name": "staging", "target": "cluster", "required_approvals": 1,
        "approval_ttl_hours": 72, "settings": '{"namespace": "ml", "image": "evil"}'})
    assert page.status_code == 200
    assert "image cannot be set here" in page.context["form"]["settings"].errors[0]
    ok = api("owner").post("/api/v1/environments/", {
        **payload, "target": "cluster", "settings": {"namespace": "ml-dev"}}, format="json")
    assert ok.status_code == 201, ok.json()


def test_old_requests_expire(api, versions, production):
    request = _request(api, "contributor", versions[1], production).json()
    ApprovalRequest.objects.filter(pk=request["id"]).update(
        created_at=timezone.now() - timedelta(hours=100))
    assert services.expire_requests() == 1
    assert ApprovalRequest.objects.get(pk=request["id"]).status == "expired"
    late = api("approver").post(f"/api/v1/approval-requests/{request['id']}/approve/",
                                {"comment": "ok"}, format="json")
    assert late.status_code == 409


def test_release_pages(api, users, versions, production):
    request = _request(api, "contributor", versions[1], production).json()
    approver = Client()
    approver.force_login(users["approver"])
    dashboard = approver.get("/").content.decode()
    assert "Releases awaiting review" in dashboard and f"/releases/{request['id']}/" in dashboard
    queue = approver.get("/releases/").content.decode()
    assert f"/releases/{request['id']}/" in queue
    page = approver.get(f"/releases/{request['id']}/").content.decode()
    assert "Approve" in page and "roc_auc" in page
    response = approver.post(f"/releases/{request['id']}/review/",
                             {"decision": "approve", "comment": ""}, follow=True)
    assert b"Write a comment" in response.content
    response = approver.post(f"/releases/{request['id']}/review/",
                             {"decision": "approve", "comment": "good"}, follow=True)
    assert b"the request is approved" in response.content
    requester = Client()
    requester.force_login(users["contributor"])
    page = requester.get(f"/releases/{request['id']}/").content.decode()
    assert 'value="approve"' not in page
    form = requester.get("/p/clinical-ml/m/tumor-classifier/v/1/release/")
    assert form.status_code == 200 and b"production" in form.content
    assert Client().get("/releases/").status_code == 302
    page = requester.get("/p/clinical-ml/environments/production/").content.decode()
    assert "<title>production · Modelgate</title>" in page
    assert "roc_auc ≥ 0.85" in page and "Rollout history" in page and "Serving now" in page
    assert "/p/clinical-ml/environments/production/" in requester.get(
        "/p/clinical-ml/environments/").content.decode()


def test_an_environment_names_the_alias_its_releases_move(api, users, project, production):
    assert production["release_alias"] == "champion"  # production's default
    staging = api("owner").post("/api/v1/environments/", {"project": project.pk,
                                                          "name": "staging"}, format="json")
    assert staging.status_code == 201 and staging.json()["release_alias"] == ""
    bad = api("owner").post("/api/v1/environments/", {
        "project": project.pk, "name": "canary-lab", "release_alias": "Not An Alias"},
        format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "release_alias", bad.json()
    named = api("owner").patch(f"/api/v1/environments/{staging.json()['id']}/",
                               {"release_alias": "staging"}, format="json")
    assert named.status_code == 200 and named.json()["release_alias"] == "staging"
    assert AuditEvent.objects.filter(action="environment.update").latest("pk").changes == {
        "release_alias": {"from": "", "to": "staging"}}
    assert api("approver").patch(f"/api/v1/environments/{production['id']}/",
                                 {"release_alias": ""}, format="json").status_code == 403

    owner = Client()
    owner.force_login(users["owner"])
    form = {"target": "local", "required_approvals": 1, "approval_ttl_hours": 72}
    assert owner.post("/p/clinical-ml/environments/new/",
                      {**form, "name": "qa", "release_alias": "qa-pick"}).status_code == 302
    assert owner.post("/p/clinical-ml/environments/new/",
                      {**form, "name": "sandbox", "release_alias": ""}).status_code == 302
    page = owner.get("/p/clinical-ml/environments/qa/").content.decode()
    assert 'id="release-alias">the <span class="mono">qa-pick</span> alias' in page
    page = owner.get("/p/clinical-ml/environments/sandbox/").content.decode()
    assert 'id="release-alias">no alias' in page
    page = owner.get("/p/clinical-ml/environments/production/").content.decode()
    assert '<span class="mono">champion</span> alias to the version released' in page


# The browser's release form -----------------------------------------------------------------

RELEASE_FORM = "/p/clinical-ml/m/tumor-classifier/v/2/release/"


def _contributor(users) -> Client:
    client = Client()
    client.force_login(users["contributor"])
    return client


def test_the_release_form_sends_only_the_chosen_strategys_parameters(users, versions,
                                                                     production):
    """Fieldsets of other strategies are hidden, not emptied: what they still hold (steps
    typed before choosing A/B; a split typed before choosing canary) is neither judged nor
    stored."""
    made = _contributor(users).post(RELEASE_FORM, {
        "environment": production["id"], "strategy": "ab", "outcome_metric": "correct",
        "canary_steps": "10, 50%x", "reason": "A/B after all"})
    assert made.status_code == 302, made.context["form"].errors
    ApprovalRequest.objects.get().delete()
    made = _contributor(users).post(RELEASE_FORM, {
        "environment": production["id"], "strategy": "canary", "outcome_metric": "correct",
        "split_percent": "20", "duration_hours": "5"})
    assert made.status_code == 302, made.context["form"].errors
    assert set(ApprovalRequest.objects.get().strategy_params) <= {"steps", "thresholds"}


def test_a_bake_too_short_is_said_on_the_bake_field(users, versions, production):
    page = _contributor(users).post(RELEASE_FORM, {
        "environment": production["id"], "strategy": "canary", "bake_minutes": "0.05"})
    form = page.context["form"]
    assert form["bake_minutes"].errors and not form["canary_steps"].errors, form.errors
