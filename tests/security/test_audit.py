"""Issue 18, item 6: everything that changes who can do what is audited.

Driven as people do it: the Django admin's user, group and membership forms as a staff
member, the login page and the token login API with wrong passwords until the lockout,
tokens using their approve scope, webhook pings. Feedback and explanation requests are
counted in the portal's metrics. Every test ends with the audit chain still verifying.
"""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from portal.accounts.models import ApiToken, Membership
from portal.accounts.services import create_token
from portal.audit.models import AuditEvent
from portal.audit.services import verify_chain
from tests.integration.test_sso import provider, sign_in  # noqa: F401 - a fixture
from tests.portal_fixtures import metadata

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

NEW_PASSWORD = "correct horse battery 42"


@pytest.fixture(autouse=True)
def chain_verifies():
    yield
    count, problems = verify_chain()
    assert problems == [] and count > 0


@pytest.fixture
def admin_client(users):
    users["staff"].is_superuser = True
    users["staff"].save()
    client = Client()
    client.force_login(users["staff"])
    return client


def events(action, **filters):
    return list(AuditEvent.objects.filter(action=action, **filters).order_by("id"))


def metric(name, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def user_form(user, groups=(), permissions=(), **flags) -> dict:
    """The admin's change form for ``user`` as the browser posts it, with ``flags``
    (is_active, is_staff, is_superuser) set as given, else as they are."""
    if user.date_joined.microsecond:  # the form shows seconds: saving would change it
        type(user).objects.filter(pk=user.pk).update(
            date_joined=user.date_joined.replace(microsecond=0))
        user.refresh_from_db()
    joined = timezone.localtime(user.date_joined)
    data = {"username": user.username, "first_name": user.first_name,
            "last_name": user.last_name, "email": user.email,
            "date_joined_0": joined.strftime("%Y-%m-%d"),
            "date_joined_1": joined.strftime("%H:%M:%S"),
            "last_login_0": "", "last_login_1": "",
            "groups": [g.pk for g in groups], "user_permissions": [p.pk for p in permissions]}
    for flag in ("is_active", "is_staff", "is_superuser"):
        if flags.get(flag, getattr(user, flag)):
            data[flag] = "on"
    return data


# The admin ----------------------------------------------------------------------------------

def test_making_a_user_superuser_in_the_admin_records_flags_groups_and_permissions(
        admin_client, users):
    vera = users["viewer"]
    operators = Group.objects.create(name="operators")
    view_users = Permission.objects.get(codename="view_user", content_type__app_label="auth")
    answer = admin_client.post(f"/admin/auth/user/{vera.pk}/change/", user_form(
        vera, groups=[operators], permissions=[view_users], is_staff=True, is_superuser=True))
    assert answer.status_code == 302, answer.content[:3000]
    vera.refresh_from_db()
    assert vera.is_superuser and vera.is_staff

    [event] = events("user.update")
    assert (event.actor_id, event.actor_name, event.via) == (users["staff"].pk, "sam", "admin")
    assert (event.object_type, event.object_id, event.object_repr) == ("auth.user", str(vera.pk),
                                                                        "vera")
    assert event.changes == {
        "is_staff": {"from": False, "to": True},
        "is_superuser": {"from": False, "to": True},
        "groups": {"from": [], "to": ["operators"]},
        "user_permissions": {"from": [], "to": ["auth.view_user"]},
    }

    # Taking them away again is recorded the same way; an unchanged save records nothing new.
    admin_client.post(f"/admin/auth/user/{vera.pk}/change/",
                      user_form(vera, is_staff=False, is_superuser=False, is_active=False))
    last = events("user.update")[-1]
    assert last.changes == {
        "is_active": {"from": True, "to": False},
        "is_staff": {"from": True, "to": False},
        "is_superuser": {"from": True, "to": False},
        "groups": {"from": ["operators"], "to": []},
        "user_permissions": {"from": ["auth.view_user"], "to": []},
    }


def test_a_password_set_in_the_admin_is_recorded_as_changed_never_as_its_hash(
        admin_client, users):
    vera = users["viewer"]
    answer = admin_client.post(f"/admin/auth/user/{vera.pk}/password/", {
        "usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert answer.status_code == 302, answer.content[:3000]
    vera.refresh_from_db()
    assert vera.check_password(NEW_PASSWORD)
    [event] = events("user.update")
    assert event.changes == {"password_changed": True} and event.via == "admin"
    # A refused form (passwords differ) changes nothing and records nothing.
    admin_client.post(f"/admin/auth/user/{vera.pk}/password/", {
        "usable_password": "true", "password1": NEW_PASSWORD, "password2": "something else"})
    assert len(events("user.update")) == 1
    for e in AuditEvent.objects.all():
        assert vera.password not in json.dumps(e.changes)
        assert "pbkdf2" not in json.dumps(e.changes) and "md5$" not in json.dumps(e.changes)


def test_creating_and_deleting_a_user_in_the_admin_are_recorded(admin_client, users, project):
    answer = admin_client.post("/admin/auth/user/add/", {
        "username": "newcomer", "usable_password": "true",
        "password1": NEW_PASSWORD, "password2": NEW_PASSWORD})
    assert answer.status_code == 302, answer.content[:3000]
    newcomer = get_user_model().objects.get(username="newcomer")
    [created] = events("user.create")
    assert created.actor_name == "sam" and created.object_id == str(newcomer.pk)
    assert created.changes == {"username": {"from": None, "to": "newcomer"},
                               "password_changed": True}
    assert newcomer.password not in json.dumps(created.changes)

    # Deleting an account that signed in before (its events keep their actor's name) and
    # holds a role: the event keeps what it could do.
    alice = users["approver"]
    alice.is_staff = True
    alice.save()
    assert Client().post("/login/", {"username": "alice", "password": "pw-alice"}).status_code == 302
    answer = admin_client.post(f"/admin/auth/user/{alice.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302, answer.content[:3000]
    assert not get_user_model().objects.filter(pk=alice.pk).exists()
    [deleted] = events("user.delete")
    assert deleted.actor_name == "sam" and deleted.object_repr == "alice"
    assert deleted.changes == {
        "is_active": {"from": True, "to": None}, "is_staff": {"from": True, "to": None},
        "is_superuser": {"from": False, "to": None}, "groups": {"from": [], "to": None},
        "user_permissions": {"from": [], "to": None},
        "memberships": {"from": ["clinical-ml: approver"], "to": None}}
    [login] = events("account.login", object_repr="alice")
    assert login.actor_id is None and login.actor_name == "alice"  # the row outlived the user


def test_deleting_users_with_the_bulk_action_records_each(admin_client, users):
    answer = admin_client.post("/admin/auth/user/", {
        "action": "delete_selected", "post": "yes",
        "_selected_action": [users["viewer"].pk, users["outsider"].pk]})
    assert answer.status_code == 302, answer.content[:3000]
    assert sorted(e.object_repr for e in events("user.delete")) == ["oscar", "vera"]


def test_group_permissions_changed_in_the_admin_are_recorded(admin_client):
    group = Group.objects.create(name="auditors")
    view_events = Permission.objects.get(codename="view_auditevent")
    answer = admin_client.post(f"/admin/auth/group/{group.pk}/change/", {
        "name": "auditors", "permissions": [view_events.pk]})
    assert answer.status_code == 302, answer.content[:3000]
    [event] = events("group.update")
    assert event.changes == {"permissions": {"from": [], "to": ["audit.view_auditevent"]}}


def test_memberships_are_audited_in_the_admin_and_the_api(admin_client, api, users, project):
    membership = Membership.objects.get(project=project, user=users["viewer"])
    answer = admin_client.post(f"/admin/accounts/membership/{membership.pk}/change/", {
        "project": project.pk, "user": users["viewer"].pk, "role": "owner"})
    assert answer.status_code == 302, answer.content[:3000]
    [event] = events("membership.update")
    assert (event.via, event.project_id) == ("admin", project.pk)
    assert event.changes == {"role": {"from": "viewer", "to": "owner"}}

    answer = api("owner").patch(f"/api/v1/memberships/{membership.pk}/", {"role": "viewer"},
                                format="json")
    assert answer.status_code == 200, answer.content
    carlos = Membership.objects.get(project=project, user=users["contributor"])
    assert api("owner").delete(f"/api/v1/memberships/{carlos.pk}/").status_code == 204
    assert [(e.action, e.via, e.changes["role"]) for e in AuditEvent.objects.filter(
        action__startswith="membership.", via="api").order_by("id")] == [
        ("membership.update", "api", {"from": "owner", "to": "viewer"}),
        ("membership.delete", "api", {"from": "contributor", "to": None})]


# Sign-ins -----------------------------------------------------------------------------------

def test_the_login_page_records_sign_ins_failures_and_one_lockout(users, settings):
    before = metric("modelgate_signins_total", outcome="failed")
    client = Client()
    signed_in = client.post("/login/", {"username": "alice", "password": "pw-alice"})
    assert signed_in.status_code == 302
    [login] = events("account.login")
    assert (login.actor_id, login.via, login.remote_addr) == (users["approver"].pk, "ui",
                                                              "127.0.0.1")
    assert login.changes == {"username": "alice", "path": "/login/", "method": "password"}

    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for _ in range(settings.AXES_FAILURE_LIMIT):
        answer = attacker.post("/login/", {"username": "carlos", "password": "wrong"})
    assert answer.status_code == 429
    failures = events("account.login_failed")
    assert len(failures) == settings.AXES_FAILURE_LIMIT
    assert {(e.actor_id, e.object_repr, e.remote_addr, e.via) for e in failures} == {
        (None, "carlos", "203.0.113.9", "ui")}
    assert failures[0].changes == {"username": "carlos", "path": "/login/",
                                   "method": "password"}
    [locked] = events("account.locked_out")
    assert locked.id > failures[-1].id  # the attempt that locked, then the lockout
    assert (locked.object_repr, locked.remote_addr) == ("carlos", "203.0.113.9")
    assert locked.changes["minutes"] == settings.AXES_COOLOFF_TIME.total_seconds() // 60

    # Attempts refused during the lockout, even with the right password, add no rows.
    for password in ("wrong", "pw-carlos"):
        assert attacker.post("/login/", {"username": "carlos",
                                         "password": password}).status_code == 429
    assert len(events("account.login_failed")) == settings.AXES_FAILURE_LIMIT
    assert len(events("account.locked_out")) == 1
    assert metric("modelgate_signins_total", outcome="failed") == \
        before + settings.AXES_FAILURE_LIMIT + 2


def test_an_unknown_username_is_recorded_as_typed_with_no_account(client):
    answer = client.post("/login/", {"username": "no-such-person", "password": "guess"})
    assert answer.status_code == 200  # the form again, with its error
    [failed] = events("account.login_failed")
    assert (failed.actor_id, failed.actor_name, failed.object_id) == (None, "", "")
    assert failed.object_repr == "no-such-person"
    assert failed.changes["username"] == "no-such-person"


def test_the_admin_login_is_recorded_too(users):
    users["staff"].is_superuser = True
    users["staff"].save()
    client = Client()
    client.post("/admin/login/?next=/admin/", {"username": "sam", "password": "nope"})
    client.post("/admin/login/?next=/admin/", {"username": "sam", "password": "pw-sam"})
    [failed] = events("account.login_failed")
    [login] = events("account.login")
    assert failed.via == login.via == "admin" and login.actor_name == "sam"


def test_the_token_login_api_records_failures_lockout_and_sign_in(users, settings):
    client = APIClient()
    url = "/api/v1/auth/token/"
    right = client.post(url, {"username": "vera", "password": "pw-vera"}, format="json")
    assert right.status_code == 201
    [login] = events("account.login")
    assert (login.actor_id, login.via) == (users["viewer"].pk, "api")
    assert login.changes == {"username": "vera", "path": url, "method": "password"}
    [token] = events("token.create", actor=users["viewer"])
    assert token.changes["name"] == "API login" and right.json()["prefix"] in token.object_repr

    for _ in range(settings.AXES_FAILURE_LIMIT):
        answer = client.post(url, {"username": "vera", "password": "nope"}, format="json")
    assert answer.status_code == 429
    assert client.post(url, {"username": "vera", "password": "pw-vera"},
                       format="json").status_code == 429
    assert [e.via for e in events("account.login_failed")] == \
        ["api"] * settings.AXES_FAILURE_LIMIT
    [locked] = events("account.locked_out")
    assert locked.object_repr == "vera" and locked.changes["path"] == url
    assert len(events("account.login")) == 1


def test_single_sign_on_records_its_sign_ins_once_and_its_refusals(provider, users):  # noqa: F811
    sign_in(provider)
    [login] = events("account.sso_login")
    assert login.actor_name == "dana" and not events("account.login")  # one event, not two

    users["viewer"].email, users["viewer"].is_active = "vera@example.com", False
    users["viewer"].save()
    provider.claims.update(email="vera@example.com")
    _, answer = sign_in(provider)
    assert answer["Location"] == "/login/?sso=failed"
    provider.claims.update(email_verified=False)
    sign_in(provider)
    refused = events("account.login_failed")
    assert [(e.object_repr, e.changes["method"], e.changes["path"]) for e in refused] == [
        ("vera", "openid-connect", "/oidc/callback/"),  # the account found, but deactivated
        ("(no username)", "openid-connect", "/oidc/callback/")]  # claims not trusted
    assert len(events("account.sso_login")) == 1


def test_failures_from_one_address_are_bounded_in_the_trail_but_all_counted(settings):
    """Guessing a different username each time never meets a lockout; the trail (kept for
    ever, one append at a time) stops recording the address after a budget."""
    settings.MODELGATE_AUDIT_SIGNIN_FAILURES = 3
    before = metric("modelgate_signins_total", outcome="failed")
    attacker, neighbour = Client(REMOTE_ADDR="198.51.100.7"), Client(REMOTE_ADDR="198.51.100.8")
    for n in range(8):
        attacker.post("/login/", {"username": f"guess-{n}", "password": "x"})
    neighbour.post("/login/", {"username": "someone", "password": "x"})
    assert [e.object_repr for e in events("account.login_failed",
                                          remote_addr="198.51.100.7")] == [
        "guess-0", "guess-1", "guess-2"]
    [note] = events("account.login_failures_suppressed")
    assert note.remote_addr == "198.51.100.7" and note.changes["events"] == 3
    assert len(events("account.login_failed", remote_addr="198.51.100.8")) == 1
    assert metric("modelgate_signins_total", outcome="failed") == before + 9


def test_a_long_username_is_recorded_cut_short():
    answer = APIClient().post("/api/v1/auth/token/", {"username": "z" * 200, "password": "p"},
                              format="json")
    assert answer.status_code == 401
    [failed] = events("account.login_failed")
    assert failed.object_repr == failed.changes["username"] == "z" * 150


# Tokens, webhooks ---------------------------------------------------------------------------

def test_every_use_of_the_approve_scope_by_a_token_is_recorded(api, users, clf):
    url = f"/api/v1/models/{clf.pk}/monitoring/"
    approver = api("approver")  # a token with read, write and approve
    assert approver.get(url).status_code == 200  # a read: not a use of approve
    answer = approver.patch(url, {"max_error_rate": 0.02}, format="json")
    assert answer.status_code == 200, answer.content
    refused = approver.patch(url, {"max_error_rate": 7}, format="json")
    assert refused.status_code == 400
    uses = events("token.approve_use")
    assert [(e.changes["action"], e.changes["status"], e.changes["method"]) for e in uses] == [
        ("model.monitoring", 200, "PATCH"), ("model.monitoring", 400, "PATCH")]
    token = ApiToken.objects.get(user=users["approver"], name="tests")
    first = uses[0]
    assert first.actor_id == users["approver"].pk and first.via == "api"
    assert (first.object_type, first.object_id) == ("accounts.apitoken", str(token.pk))
    assert first.changes["prefix"] == token.prefix and first.changes["path"] == url

    # A token without the scope is refused before anything runs: nothing to record.
    _, key = create_token(users["approver"], "ci", scopes=["read", "write"])
    plain = APIClient()
    plain.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert plain.patch(url, {"max_error_rate": 0.03}, format="json").status_code == 403
    # A signed-in person is not using a token.
    browser = APIClient()
    browser.force_login(users["approver"])
    assert browser.patch(url, {"max_error_rate": 0.03}, format="json").status_code == 200
    assert len(events("token.approve_use")) == 2


def test_token_creation_is_recorded(api, users):
    answer = api("viewer").post("/api/v1/tokens/", {"name": "notebook", "scopes": ["read"]},
                                format="json")
    assert answer.status_code == 201, answer.content
    [event] = events("token.create", object_id=str(answer.json()["id"]))
    assert event.actor_name == "vera" and event.changes["scopes"] == ["read"]
    assert answer.json()["token"] not in json.dumps(event.changes)


def test_a_webhook_ping_is_recorded(users, project):
    from portal.notifications.services import create_webhook

    webhook, _ = create_webhook(users["owner"], project, name="ops",
                                url="http://127.0.0.1:9/hooks/s3cret-path")
    _, key = create_token(users["owner"], "ci")
    client = APIClient()  # on-commit hooks do not run: nothing is sent
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.post(f"/api/v1/webhooks/{webhook.pk}/test/").status_code == 202
    [ping] = events("webhook.ping")
    assert (ping.actor_name, ping.project_id, ping.object_id) == ("olivia", project.pk,
                                                                  str(webhook.pk))
    assert "s3cret-path" not in json.dumps(ping.changes)  # the host only, as for changes


# Counted, not audited per row -----------------------------------------------------------------

def test_feedback_rows_are_counted_per_project(api, users, project, clf):
    from portal.monitoring.metrics import exposition
    from tests.integration.test_feedback import ids, make_experiment

    experiment = make_experiment(users, project, clf)
    contributor = api("contributor")
    before = metric("modelgate_feedback_rows_total", project="clinical-ml")
    audited = AuditEvent.objects.count()
    items = [{"prediction_id": i, "outcome": 1} for i in ids(experiment, "stable", 3)]
    answer = contributor.post("/api/v1/feedback/", {"items": items + items[:1]},
                                     format="json")
    assert answer.status_code == 200 and answer.json()["accepted"] == 3, answer.content
    assert metric("modelgate_feedback_rows_total", project="clinical-ml") == before + 3
    assert not AuditEvent.objects.filter(action__icontains="feedback").exists()
    assert AuditEvent.objects.count() == audited
    assert b'modelgate_feedback_rows_total{project="clinical-ml"}' in exposition()


def test_explanation_requests_are_counted_and_recorded(api, clf, skops_bytes):
    version = api("contributor").upload(clf.pk, skops_bytes, metadata()).json()
    before = metric("modelgate_explanation_requests_total", project="clinical-ml")
    row = [14.0, 20.0, 90.0, 600.0, 0.1]
    for _ in range(2):  # the same rows twice: the stored answer, still a request
        answer = api("viewer").post(f"/api/v1/versions/{version['id']}/explain/",
                                    {"instances": [row]}, format="json")
        assert answer.status_code in (200, 202), answer.content
    assert metric("modelgate_explanation_requests_total", project="clinical-ml") == before + 2
    requests = events("explanation.request")
    assert [e.changes["new"] for e in requests] == [True, False]
    assert requests[0].actor_name == "vera" and requests[0].project_id == clf.project_id
    assert requests[0].changes["rows"] == 1
