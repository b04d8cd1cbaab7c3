"""Every API operation of the OpenAPI schema, for every kind of caller, with the status each
must get. A fresh project per cell, so what one allowed call changes never decides another.

Callers: anonymous, a viewer, a contributor, an approver and the owner of the project, and
the owner of another project (an outsider here). Requests are well-formed, so the answer
is decided by who asks: 401 for anonymous, 404 for outsiders on the project's objects (no
leak of what exists), 403 below the needed role, and for allowed callers the operation's
own answer (2xx, or 409 when the object's state forbids it, e.g. resuming a running
rollout). A new API operation without a row here fails ``test_every_operation_is_covered``.
"""

from __future__ import annotations

import io
import json

import pytest

from portal.accounts.services import create_token
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration]

ROLES = ["anonymous", "viewer", "contributor", "approver", "owner", "outsider"]
RANK = {"viewer": 1, "contributor": 2, "approver": 3, "owner": 4}
USERS = {"viewer": "viewer", "contributor": "contributor", "approver": "approver",
         "owner": "owner", "outsider": "outsider"}


def allowed(minimum):
    """Expected status per caller for a project object needing ``minimum`` role, where an
    allowed caller gets ``ok``."""
    def expect(role, ok):
        if role == "anonymous":
            return 401
        if role == "outsider":
            return 404
        return ok if RANK[role] >= RANK[minimum] else 403
    return expect


def everyone(ok, outsider=None):
    """Any signed-in caller; ``outsider`` when one who is not in the project differs."""
    def expect(role, ok_=ok):
        if role == "anonymous":
            return 401
        if role == "outsider" and outsider is not None:
            return outsider
        return ok_
    return expect


# (method, path, body or None, expectation(role) -> status, allowed status)
def operations(w) -> list[tuple]:
    m, v, e, d, dep, exp = w["model"], w["version"], w["env"], w["dataset"], w["deployment"], \
        w["experiment"]
    return [
        ("GET", "/api/v1/projects/", None, everyone(200), 200),
        ("POST", "/api/v1/projects/", {"name": "New", "slug": "new-project"}, everyone(201), 201),
        ("GET", f"/api/v1/projects/{w['project'].pk}/", None, allowed("viewer"), 200),
        ("PATCH", f"/api/v1/projects/{w['project'].pk}/", {"description": "x"},
         allowed("owner"), 200),
        # Archiving (decision 58): the world's rollouts run, so the project's is refused;
        # restoring what is not archived changes nothing.
        ("POST", f"/api/v1/projects/{w['project'].pk}/archive/", {}, allowed("owner"), 409),
        ("POST", f"/api/v1/projects/{w['project'].pk}/restore/", {}, allowed("owner"), 200),
        ("POST", f"/api/v1/models/{w['retired_model'].pk}/archive/", {},
         allowed("contributor"), 200),
        ("POST", f"/api/v1/models/{w['retired_model'].pk}/restore/", {}, allowed("owner"), 200),
        ("POST", f"/api/v1/datasets/{w['retired_dataset'].pk}/archive/", {},
         allowed("contributor"), 200),
        ("POST", f"/api/v1/datasets/{w['retired_dataset'].pk}/restore/", {}, allowed("owner"),
         200),
        ("POST", f"/api/v1/environments/{w['retired_env'].pk}/archive/", {}, allowed("owner"),
         200),
        ("POST", f"/api/v1/environments/{w['retired_env'].pk}/restore/", {}, allowed("owner"),
         200),
        # People: staff only (none of the matrix's callers is staff).
        ("GET", "/api/v1/users/", None, staff_only, 200),
        ("POST", "/api/v1/users/", {"username": "new-person"}, staff_only, 201),
        ("GET", f"/api/v1/users/{w['membership'].user_id}/", None, staff_only, 200),
        ("POST", f"/api/v1/users/{w['membership'].user_id}/deactivate/", {}, staff_only, 200),
        ("GET", "/api/v1/memberships/", None, everyone(200), 200),
        ("GET", f"/api/v1/memberships/{w['membership'].pk}/", None, allowed("viewer"), 200),
        ("PATCH", f"/api/v1/memberships/{w['membership'].pk}/", {"role": "contributor"},
         allowed("owner"), 200),
        ("DELETE", f"/api/v1/memberships/{w['membership'].pk}/", None, allowed("owner"), 204),
        ("GET", "/api/v1/models/", None, everyone(200), 200),
        ("POST", "/api/v1/models/", {"project": w["project"].pk, "name": "another",
                                     "task": "classification"}, allowed("contributor"), 201),
        ("GET", f"/api/v1/models/{m.pk}/", None, allowed("viewer"), 200),
        ("PATCH", f"/api/v1/models/{m.pk}/", {"description": "x"}, allowed("contributor"), 200),
        ("GET", f"/api/v1/models/{m.pk}/aliases/", None, allowed("viewer"), 200),
        ("PUT", f"/api/v1/models/{m.pk}/aliases/champion/", {"version": v.number},
         allowed("approver"), 200),
        ("DELETE", f"/api/v1/models/{m.pk}/aliases/challenger/", None, allowed("contributor"),
         204),
        ("GET", f"/api/v1/models/{m.pk}/monitoring/", None, allowed("viewer"), 200),
        ("PATCH", f"/api/v1/models/{m.pk}/monitoring/", {"max_error_rate": 0.1},
         allowed("approver"), 200),
        ("GET", f"/api/v1/models/{m.pk}/versions/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/models/{m.pk}/versions/", "UPLOAD", allowed("contributor"), 201),
        # MLflow (decision 66): its server is away here, so an import stays queued.
        ("POST", f"/api/v1/models/{m.pk}/versions/import-mlflow/",
         {"tracking_uri": "http://127.0.0.1:9", "name": "tumor", "version": "2"},
         allowed("contributor"), 202),
        ("GET", "/api/v1/mlflow-imports/", None, everyone(200), 200),
        ("GET", f"/api/v1/mlflow-imports/{w['mlflow_import'].pk}/", None, allowed("viewer"),
         200),
        ("GET", "/api/v1/mlflow-follows/", None, everyone(200), 200),
        ("POST", "/api/v1/mlflow-follows/", {"model": m.pk, "tracking_uri": "http://127.0.0.1:9",
                                             "registered_name": "tumor", "tag_key": "stage",
                                             "tag_value": "prod"}, allowed("contributor"), 201),
        ("GET", f"/api/v1/mlflow-follows/{w['mlflow_follow'].pk}/", None, allowed("viewer"),
         200),
        # MLflow's webhook takes no token: an unsigned delivery is refused for anyone.
        ("POST", f"/api/v1/mlflow-follows/{w['mlflow_follow'].pk}/webhook/", {},
         lambda role, ok: 401, 401),
        ("DELETE", f"/api/v1/mlflow-follows/{w['mlflow_follow'].pk}/", None,
         allowed("contributor"), 204),
        ("GET", "/api/v1/versions/", None, everyone(200), 200),
        ("GET", f"/api/v1/versions/{v.pk}/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/versions/{w['spare'].pk}/archive/", {}, allowed("contributor"), 200),
        ("POST", f"/api/v1/versions/{w['spare'].pk}/restore/", {}, allowed("owner"), 200),
        ("GET", f"/api/v1/versions/{v.pk}/artifact/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/versions/{v.pk}/explain/", {"instances": [[1.0] * 5]},
         allowed("viewer"), 200),  # the worker runs eagerly here: ready at once
        ("GET", f"/api/v1/versions/{v.pk}/explain/{w['instance_explanation'].pk}/", None,
         allowed("viewer"), 200),
        ("GET", f"/api/v1/versions/{v.pk}/explanation/", None, allowed("viewer"), 404),
        ("GET", f"/api/v1/versions/{v.pk}/lineage/", None, allowed("viewer"), 200),
        ("GET", f"/api/v1/versions/{v.pk}/evaluations/", None, allowed("viewer"), 200),
        ("GET", "/api/v1/about/", None, everyone(200), 200),
        ("GET", "/api/v1/datasets/", None, everyone(200), 200),
        ("POST", "/api/v1/datasets/", "DATASET", allowed("contributor"), 201),
        ("GET", f"/api/v1/datasets/{d.pk}/", None, allowed("viewer"), 200),
        ("GET", "/api/v1/environments/", None, everyone(200), 200),
        ("POST", "/api/v1/environments/", {"project": w["project"].pk, "name": "qa",
                                           "backend": "local", "settings": {}},
         allowed("owner"), 201),
        ("GET", f"/api/v1/environments/{e.pk}/", None, allowed("viewer"), 200),
        ("PATCH", f"/api/v1/environments/{e.pk}/", {"description": "x"}, allowed("owner"), 200),
        ("GET", "/api/v1/multimodel-endpoints/", None, everyone(200), 200),
        ("POST", "/api/v1/multimodel-endpoints/", {"environment": e.pk, "name": "more",
                                                   "memory_budget_mb": 16},
         allowed("owner"), 201),
        ("GET", f"/api/v1/multimodel-endpoints/{w['multimodel'].pk}/", None, allowed("viewer"),
         200),
        ("POST", f"/api/v1/multimodel-endpoints/{w['multimodel'].pk}/members/",
         {"model": m.pk, "version": w["spare"].pk}, allowed("owner"), 409),  # a member already
        ("DELETE", f"/api/v1/multimodel-endpoints/{w['multimodel'].pk}/members/"
                   f"{w['multimodel_member'].pk}/", None, allowed("owner"), 204),
        ("POST", f"/api/v1/multimodel-endpoints/{w['multimodel'].pk}/apply/", {},
         allowed("owner"), 200),
        ("GET", "/api/v1/approval-requests/", None, everyone(200), 200),
        ("POST", "/api/v1/approval-requests/", {"version": w["spare2"].pk, "environment": e.pk,
                                                "strategy": "canary"},
         allowed("contributor"), 201),
        ("GET", f"/api/v1/approval-requests/{w['request'].pk}/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/approval-requests/{w['request'].pk}/approve/", {"comment": "ok"},
         allowed("approver"), 200),
        ("POST", f"/api/v1/approval-requests/{w['request_b'].pk}/reject/", {"comment": "no"},
         allowed("approver"), 200),
        # The requester (the contributor here) or an owner cancels; not another approver.
        ("POST", f"/api/v1/approval-requests/{w['request_c'].pk}/cancel/", {},
         lambda role, ok: {"anonymous": 401, "outsider": 404, "viewer": 403,
                           "approver": 403}.get(role, ok), 200),
        ("GET", "/api/v1/deployments/", None, everyone(200), 200),
        ("GET", f"/api/v1/deployments/{dep.pk}/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/deployments/{w['rollouts']['pause'].pk}/pause/", {},
         allowed("contributor"), 200),
        ("POST", f"/api/v1/deployments/{w['rollouts']['resume'].pk}/resume/", {},
         allowed("approver"), 200),
        ("POST", f"/api/v1/deployments/{w['rollouts']['promote'].pk}/promote/", {},
         allowed("approver"), 200),
        ("POST", f"/api/v1/deployments/{w['rollouts']['rollback'].pk}/rollback/", {},
         allowed("contributor"), 200),
        ("POST", f"/api/v1/deployments/{w['rollouts']['keep'].pk}/keep/", {},
         allowed("approver"), 200),
        ("GET", "/api/v1/experiments/", None, everyone(200), 200),
        ("GET", f"/api/v1/experiments/{exp.pk}/", None, allowed("viewer"), 200),
        ("GET", f"/api/v1/experiments/{exp.pk}/readout/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/experiments/{exp.pk}/decide/", {"decision": "extend",
                                                           "comment": "more data",
                                                           "extend_hours": 24},
         allowed("approver"), 201),
        ("POST", "/api/v1/feedback/", {"prediction_id": w["prediction_id"], "outcome": 1},
         allowed("contributor"), 201),
        ("GET", "/api/v1/alerts/", None, everyone(200), 200),
        ("GET", f"/api/v1/alerts/{w['alert'].pk}/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/alerts/{w['alert'].pk}/acknowledge/", {"comment": "on it"},
         allowed("contributor"), 200),
        ("POST", f"/api/v1/alerts/{w['alert'].pk}/silence/",
         {"until": "2099-01-01T00:00:00Z", "reason": "maintenance"}, allowed("contributor"),
         400),  # silences are at most 30 days: the body is refused after the role check
        ("POST", f"/api/v1/alerts/{w['alert'].pk}/unsilence/", {}, allowed("contributor"), 200),
        ("POST", "/api/v1/alerts/alertmanager/", {"alerts": []},
         lambda role, ok: 503, 503),  # its own bearer secret, unset here: off for everyone
        # An incident is named by any of its alerts' ids (the world's alert is one alone).
        ("GET", "/api/v1/incidents/", None, everyone(200), 200),
        ("GET", f"/api/v1/incidents/{w['alert'].pk}/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/incidents/{w['alert'].pk}/acknowledge/", {"comment": "on it"},
         allowed("contributor"), 200),
        ("POST", f"/api/v1/incidents/{w['alert'].pk}/silence/",
         {"until": "2099-01-01T00:00:00Z", "reason": "maintenance"}, allowed("contributor"),
         400),  # as an alert's: at most 30 days, refused after the role check
        ("POST", f"/api/v1/incidents/{w['alert'].pk}/unsilence/", {}, allowed("contributor"),
         200),
        ("GET", "/api/v1/webhooks/", None, everyone(200), 200),
        ("POST", "/api/v1/webhooks/", {"project": w["project"].pk, "name": "alerts",
                                       "url": "http://127.0.0.1:9/x",
                                       "events": ["release.approved"]}, allowed("owner"), 201),
        # Members read a project's webhooks (URL shortened, secret never shown) and their
        # deliveries; owners change them.
        ("GET", f"/api/v1/webhooks/{w['webhook'].pk}/", None, allowed("viewer"), 200),
        ("GET", f"/api/v1/webhooks/{w['webhook'].pk}/deliveries/", None, allowed("viewer"), 200),
        ("POST", f"/api/v1/webhooks/{w['webhook'].pk}/test/", {}, allowed("owner"), 202),
        ("PATCH", f"/api/v1/webhooks/{w['webhook'].pk}/", {"active": False}, allowed("owner"),
         200),
        ("DELETE", f"/api/v1/webhooks/{w['webhook'].pk}/", None, allowed("owner"), 204),
        # Retraining (decision 67): members read rules and triggers; contributors manage rules.
        ("GET", "/api/v1/retraining-rules/", None, everyone(200), 200),
        ("POST", "/api/v1/retraining-rules/", {"model": m.pk, "name": "accuracy",
                                               "condition": "accuracy", "min_accuracy": 0.8,
                                               "target": "webhook",
                                               "params": {"url": "http://127.0.0.1:9/h"}},
         allowed("contributor"), 201),
        ("GET", f"/api/v1/retraining-rules/{w['retraining_rule'].pk}/", None,
         allowed("viewer"), 200),
        ("PATCH", f"/api/v1/retraining-rules/{w['retraining_rule'].pk}/", {"for_minutes": 45},
         allowed("contributor"), 200),
        ("DELETE", f"/api/v1/retraining-rules/{w['retraining_rule'].pk}/", None,
         allowed("contributor"), 204),
        ("GET", "/api/v1/retraining-triggers/", None, everyone(200), 200),
        ("GET", f"/api/v1/retraining-triggers/{w['retraining_trigger'].pk}/", None,
         allowed("viewer"), 200),
        ("GET", "/api/v1/tokens/", None, everyone(200), 200),
        ("POST", "/api/v1/tokens/", {"name": "ci"}, everyone(201), 201),
        ("GET", f"/api/v1/tokens/{w['token'].pk}/", None, everyone(404), 404),
        ("DELETE", f"/api/v1/tokens/{w['token'].pk}/", None, everyone(404), 404),
        ("GET", "/api/v1/audit-events/", None, everyone(200), 200),
        ("GET", f"/api/v1/audit-events/{w['audit_event'].pk}/", None, allowed("viewer"), 200),
        ("POST", "/api/v1/auth/token/", {"username": "nobody", "password": "wrong"},
         lambda role, ok: 401, 401),  # open to all: wrong credentials are a 401
        # Members join by invitation. Owners invite (the same 201 whoever is named) and
        # revoke; the list is everyone's own; an invitation is read by its project's owners
        # and the invited person (the outsider here), and answered by that person only.
        ("GET", "/api/v1/invitations/", None, everyone(200), 200),
        ("POST", "/api/v1/invitations/", {"project": w["project"].pk, "username": "extra",
                                          "role": "viewer"}, allowed("owner"), 201),
        ("GET", f"/api/v1/invitations/{w['invitation'].pk}/", None, allowed("owner"), 200),
        ("GET", f"/api/v1/invitations/{w['invitation_to_decline'].pk}/", None,
         lambda role, ok: {"anonymous": 401, "viewer": 403, "contributor": 403,
                           "approver": 403}.get(role, ok), 200),
        ("POST", f"/api/v1/invitations/{w['invitation'].pk}/revoke/", {}, allowed("owner"),
         200),
        # Last: accepting makes the outsider a member (of another project of the owner's).
        ("POST", f"/api/v1/invitations/{w['invitation_to_decline'].pk}/decline/", {},
         invitee_only, 200),
        ("POST", f"/api/v1/invitations/{w['invitation_to_accept'].pk}/accept/", {},
         invitee_only, 200),
    ]


def staff_only(role, ok):
    return 401 if role == "anonymous" else 403


def invitee_only(role, ok):
    """An invitation's answers: its invited person (the outsider here) only; 404 to anyone
    else, its project's owner too."""
    return {"anonymous": 401, "outsider": ok}.get(role, 404)


@pytest.fixture
def world(matrix_world):
    """A fresh world per test (tests/integration/matrix_fixtures.py): these tests change it."""
    return matrix_world


def call(api, role, method, path, body):
    client = api(None if role == "anonymous" else USERS[role])
    if body == "UPLOAD":
        return client.upload(path.split("/")[4], random_classifier_bytes(99), metadata())
    if body == "DATASET":
        from portal.registry.models import Project
        project = Project.objects.get(slug="clinical-ml")
        csv = io.BytesIO(b"a,b,target\n1,2,0\n3,4,1\n")
        csv.name = "d.csv"
        return client.post(path, {"project": project.pk, "name": "d2", "target": "target",
                                  "file": csv}, format="multipart")
    kwargs = {"format": "json"} if body is not None else {}
    return getattr(client, method.lower())(path, body, **kwargs) if body is not None \
        else getattr(client, method.lower())(path)





@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
def test_matrix(world, api, role):
    """One caller against every operation; a fresh world per operation would be exact but
    slow, so operations that change what later ones read run last in their own worlds."""
    failures = []
    for method, path, body, expect, ok in operations(world):
        wanted = expect(role, ok)
        answer = call(api, role, method, path, body)
        if answer.status_code != wanted:
            detail = answer.content[:200].decode(errors="replace")
            failures.append(f"{role:<11} {method:<6} {path:<60} got {answer.status_code}, "
                            f"expected {wanted}: {detail}")
    assert not failures, "\n" + "\n".join(failures)


def test_every_operation_is_covered(world):
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    documented = {(method.upper(), path) for path, ops in schema["paths"].items()
                  for method in ops}
    covered = set()
    for method, path, *_ in operations(world):
        parts = path.rstrip("/").split("/")
        templated = "/".join("{id}" if p.isdigit() else p for p in parts) + "/"
        covered.add((method, templated))
    normalised = {(m, p.replace("{alias}", "champion").replace("{explanation_id}", "{id}")
                   .replace("{member_id}", "{id}")) for m, p in documented}
    covered = {(m, p.replace("challenger", "champion")) for m, p in covered}
    assert normalised - covered == set(), "operations with no row in the matrix"
    assert json.dumps(sorted(covered))  # printable


# -- pages ---------------------------------------------------------------------------------

def pages(w) -> list[tuple[str, str, object]]:
    """(url name, path, expectation) for every page a browser GETs."""
    slug, name, number = w["project"].slug, w["model"].name, w["version"].number
    env = w["env"].name
    member = allowed("viewer")
    return [
        ("web:dashboard", "/", everyone(200)),
        ("registry:projects", "/projects/", everyone(200)),
        ("registry:project-create", "/projects/new/", everyone(200)),
        ("registry:project", f"/p/{slug}/", member),
        ("registry:project-settings", f"/p/{slug}/settings/", allowed("owner")),
        ("registry:project-audit", f"/p/{slug}/audit/", allowed("owner")),
        ("registry:model-create", f"/p/{slug}/models/new/", allowed("contributor")),
        ("registry:mlflow-import", f"/p/{slug}/m/{name}/import-mlflow/", allowed("contributor")),
        ("registry:dataset-create", f"/p/{slug}/datasets/new/", allowed("contributor")),
        ("registry:models", "/models/", everyone(200)),
        ("registry:model", f"/p/{slug}/m/{name}/", member),
        ("registry:version-create", f"/p/{slug}/m/{name}/versions/new/",
         allowed("contributor")),
        ("registry:version", f"/p/{slug}/m/{name}/v/{number}/", member),
        ("registry:compare", f"/p/{slug}/m/{name}/compare/?v={number}&v={w['spare'].number}",
         member),
        # No explanation is computed in this world: "Show" finds none, for every member.
        ("registry:version-explanation", f"/p/{slug}/m/{name}/v/{number}/explanation/",
         lambda role, ok: 404),
        ("registry:version-explained",
         f"/p/{slug}/m/{name}/v/{number}/explain/{w['instance_explanation'].pk}/", member),
        ("registry:dataset", f"/datasets/{w['dataset'].pk}/", member),
        ("registry:dataset-download", f"/datasets/{w['dataset'].pk}/download/", member),
        ("releases:queue", "/releases/", everyone(200)),
        ("releases:request", f"/releases/{w['request'].pk}/", member),
        ("releases:request-create", f"/p/{slug}/m/{name}/v/{w['spare2'].number}/release/",
         allowed("contributor")),
        ("releases:rollouts", "/rollouts/", everyone(200)),
        ("releases:deployment", f"/deployments/{w['deployment'].pk}/", member),
        ("releases:environments", f"/p/{slug}/environments/", member),
        ("releases:environment-create", f"/p/{slug}/environments/new/", allowed("owner")),
        ("releases:environment-edit", f"/p/{slug}/environments/{env}/edit/", allowed("owner")),
        ("releases:environment", f"/p/{slug}/environments/{env}/", member),
        ("releases:multimodel-create", f"/p/{slug}/environments/{env}/multimodel/new/",
         allowed("owner")),
        ("releases:multimodel", f"/p/{slug}/environments/{env}/multimodel/fleet/", member),
        ("notifications:webhooks", f"/p/{slug}/webhooks/", member),
        ("notifications:webhook", f"/p/{slug}/webhooks/{w['webhook'].pk}/", member),
        ("monitoring:alerts", "/alerts/", everyone(200)),
        ("monitoring:alert", f"/alerts/{w['alert'].pk}/", member),
        ("monitoring:endpoint", f"/p/{slug}/environments/{env}/monitoring/{name}/", member),
        ("monitoring:endpoint-try", f"/p/{slug}/environments/{env}/try/{name}/", member),
        ("experiments:experiments", "/experiments/", everyone(200)),
        ("experiments:experiment", f"/experiments/{w['experiment'].pk}/", member),
        ("retraining:rule-create", f"/p/{slug}/m/{name}/retraining/new/",
         allowed("contributor")),
        ("retraining:trigger", f"/retraining/triggers/{w['retraining_trigger'].pk}/", member),
        ("accounts:tokens", "/tokens/", everyone(200)),
        ("accounts:invitations", "/invitations/", everyone(200)),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
def test_page_matrix(world, client, users, role):
    if role != "anonymous":
        client.force_login(users[USERS[role]])
    failures = []
    for _, path, expect in pages(world):
        answer = client.get(path)
        wanted = expect(role, 200)
        if role == "anonymous":
            ok = answer.status_code == 302 and answer.headers["Location"].startswith("/login/")
        else:
            ok = answer.status_code == wanted
        if not ok:
            failures.append(f"{role:<11} GET {path:<60} got {answer.status_code}, expected "
                            f"{'a redirect to /login/' if role == 'anonymous' else wanted}")
    assert not failures, "\n" + "\n".join(failures)


def actions(w) -> list[tuple[str, str, dict, object]]:
    """(url name, path, form, expectation) for every form a page posts. A post redirects
    (302) back to its page; one below the needed role ("403" here) changes nothing and the
    page says which role it needs; outsiders get 404."""
    slug, name = w["project"].slug, w["model"].name
    member = w["membership"].pk
    return [
        ("registry:alias-set", f"/p/{slug}/m/{name}/aliases/",
         {"name": "champion", "version": w["version"].pk, "confirmed": "on",
          "comment": "it passed staging"}, allowed("approver")),
        # Answers in place (200) with the rows' explanations or what is wrong with them.
        ("registry:version-explain", f"/p/{slug}/m/{name}/v/{w['version'].number}/explain/",
         {"rows": "not, numbers"}, lambda role, ok: allowed("viewer")(role, 200)),
        # Answers in place (200) with the webhook's secret, shown once.
        ("registry:mlflow-follow", f"/p/{slug}/m/{name}/mlflow-follows/",
         {"follow-tracking_uri": "http://127.0.0.1:9", "follow-registered_name": "tumor",
          "follow-alias": "staging"}, lambda role, ok: allowed("contributor")(role, 200)),
        ("registry:mlflow-unfollow",
         f"/p/{slug}/m/{name}/mlflow-follows/{w['mlflow_follow'].pk}/delete/", {},
         allowed("contributor")),
        ("registry:version-archive", f"/p/{slug}/m/{name}/v/{w['spare'].number}/archive/", {},
         allowed("contributor")),
        ("registry:version-restore", f"/p/{slug}/m/{name}/v/{w['spare'].number}/restore/", {},
         allowed("owner")),
        # Refused for the owner too (rollouts run): the page says why, nothing changes.
        ("registry:project-archive", f"/p/{slug}/archive/", {}, allowed("owner")),
        ("registry:project-restore", f"/p/{slug}/restore/", {}, allowed("owner")),
        ("registry:model-archive", f"/p/{slug}/m/retired/archive/", {}, allowed("contributor")),
        ("registry:model-restore", f"/p/{slug}/m/retired/restore/", {}, allowed("owner")),
        ("registry:dataset-archive", f"/datasets/{w['retired_dataset'].pk}/archive/", {},
         allowed("contributor")),
        ("registry:dataset-restore", f"/datasets/{w['retired_dataset'].pk}/restore/", {},
         allowed("owner")),
        ("releases:environment-archive", f"/p/{slug}/environments/retired/archive/", {},
         allowed("owner")),
        ("releases:environment-restore", f"/p/{slug}/environments/retired/restore/", {},
         allowed("owner")),
        ("releases:multimodel-member-remove", f"/p/{slug}/environments/production/multimodel/"
         f"fleet/members/{w['multimodel_member'].pk}/remove/", {}, allowed("owner")),
        ("releases:request-review", f"/releases/{w['request'].pk}/review/",
         {"decision": "approve", "comment": "ok"}, allowed("approver")),
        ("releases:deployment-command", f"/deployments/{w['rollouts']['pause'].pk}/command/",
         {"command": "pause"}, allowed("contributor")),
        ("notifications:webhook-test", f"/p/{slug}/webhooks/{w['webhook'].pk}/test/", {},
         allowed("owner")),
        ("notifications:webhook-toggle", f"/p/{slug}/webhooks/{w['webhook'].pk}/toggle/", {},
         allowed("owner")),
        ("notifications:webhook-delete", f"/p/{slug}/webhooks/{w['webhook'].pk}/delete/", {},
         allowed("owner")),
        ("retraining:rule-toggle",
         f"/p/{slug}/m/{name}/retraining/{w['retraining_rule'].pk}/toggle/", {},
         allowed("contributor")),
        ("retraining:rule-delete",
         f"/p/{slug}/m/{name}/retraining/{w['retraining_rule'].pk}/delete/", {},
         allowed("contributor")),
        ("monitoring:alert-action", f"/alerts/{w['alert'].pk}/acknowledge/",
         {"comment": "looking"}, allowed("contributor")),
        ("monitoring:incident-action", f"/alerts/{w['alert'].pk}/incident/acknowledge/",
         {"comment": "looking"}, allowed("contributor")),
        ("experiments:experiment-decide", f"/experiments/{w['experiment'].pk}/decide/",
         {"decision": "extend", "extend_hours": "24", "comment": "more"}, allowed("approver")),
        ("accounts:invitation-create", f"/p/{slug}/invitations/",
         {"username": "extra", "role": "viewer"}, allowed("owner")),
        ("accounts:invitation-revoke", f"/invitations/{w['invitation'].pk}/revoke/", {},
         allowed("owner")),
        ("accounts:member-change", f"/members/{member}/", {"role": "contributor"},
         allowed("owner")),
        ("accounts:token-revoke", f"/tokens/{w['own_tokens'][0]}/revoke/", {}, everyone(302)),
        ("accounts:invitation-decline", f"/invitations/{w['invitation_to_decline'].pk}/decline/",
         {}, invitee_only),
        ("accounts:invitation-accept", f"/invitations/{w['invitation_to_accept'].pk}/accept/",
         {}, invitee_only),
    ]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("role", ROLES)
def test_form_action_matrix(world, client, users, role):
    if role != "anonymous":
        client.force_login(users[USERS[role]])
        world["own_tokens"] = [create_token(users[USERS[role]], "mine")[0].pk]
    else:
        world["own_tokens"] = [0]
    from django.contrib.messages import get_messages

    failures = []
    for _, path, form, expect in actions(world):
        client.cookies.pop("messages", None)  # only this post's messages
        answer = client.post(path, form)
        wanted = expect(role, 302)
        said = " ".join(str(m) for m in get_messages(answer.wsgi_request))
        if role == "anonymous":
            ok = answer.status_code == 302 and answer.headers["Location"].startswith("/login/")
        elif wanted == 403:
            ok = answer.status_code == 403 or (answer.status_code == 302
                                               and "you need the" in said)
        else:
            ok = answer.status_code == wanted and "you need the" not in said
        if not ok:
            failures.append(f"{role:<11} POST {path:<60} got {answer.status_code} ({said}), "
                            f"expected {wanted}")
    assert not failures, "\n" + "\n".join(failures)


def test_every_page_and_form_is_covered(world):
    from django.urls import URLResolver, get_resolver

    world["own_tokens"] = [0]
    names = set()

    def walk(patterns, namespace=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                if str(p.pattern).startswith(("api/", "admin/")):
                    continue
                walk(p.url_patterns, namespace + (f"{p.namespace}:" if p.namespace else ""))
            elif p.name:
                names.add(namespace + p.name)

    walk(get_resolver().url_patterns)
    outside = {"login", "logout", "schema", "api-docs", "api-redoc", "healthz", "readyz",
               "monitoring:metrics",  # its own bearer token (tests in test_monitoring)
               "registry:project-create",  # GET covered below; POST creates a project
               "oidc-sign-in", "oidc-callback",  # single sign-on: tests in test_sso
               "accounts:set-password",  # a one-time link: tests in test_users_api
               "accounts:invitation-join"}  # one too: tests in test_invitations_by_email
    covered = {n for n, *_ in pages(world)} | {n for n, *_ in actions(world)}
    assert names - covered - outside == set(), "pages or forms with no row in the matrix"
