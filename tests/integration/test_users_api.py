"""People managed by staff (``/api/v1/users/``, ``manage.py createuser``): created with a
password or a one-time link, deactivated (never deleted), audited; nobody else may."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from portal.accounts.models import Membership
from portal.audit.models import AuditEvent

pytestmark = [pytest.mark.integration]

User = get_user_model()


def test_staff_create_a_person_with_a_password_and_a_membership(api, users, project):
    answer = api("staff").post("/api/v1/users/", {
        "username": "ci-bot", "email": "ci@example.com", "password": "a long pass phrase 42",
        "project": project.pk, "role": "contributor"}, format="json")
    assert answer.status_code == 201, answer.content
    body = answer.json()
    assert body["username"] == "ci-bot" and body["is_active"] and not body["is_staff"]
    assert body["set_password_url"] is None and "password" not in body
    person = User.objects.get(username="ci-bot")
    assert person.check_password("a long pass phrase 42")
    assert Membership.objects.get(user=person, project=project).role == "contributor"
    login = APIClient().post("/api/v1/auth/token/", {"username": "ci-bot",
                                                     "password": "a long pass phrase 42"})
    assert login.status_code in (200, 201), login.content
    events = list(AuditEvent.objects.filter(action__in=["user.create", "membership.create"],
                                            actor_name="sam").values_list("action", flat=True))
    assert sorted(events) == ["membership.create", "user.create"]


def test_without_a_password_the_answer_carries_a_link_that_works_once(api, client):
    answer = api("staff").post("/api/v1/users/", {"username": "dana"}, format="json")
    assert answer.status_code == 201, answer.content
    url = answer.json()["set_password_url"]
    assert url.startswith("http://testserver/password/set/")
    person = User.objects.get(username="dana")
    assert not person.has_usable_password()
    path = url.removeprefix("http://testserver")
    form = client.get(path, follow=True)
    assert b"Set your password" in form.content
    done = client.post(form.redirect_chain[-1][0], {"new_password1": "correct horse 17 battery",
                                                    "new_password2": "correct horse 17 battery"})
    assert done.status_code == 302 and done.headers["Location"] == "/login/"
    person.refresh_from_db()
    assert person.check_password("correct horse 17 battery")
    again = client.get(path, follow=True)
    assert b"This link no longer works" in again.content


def test_refusals_name_the_rule(api, users):
    duplicate = api("staff").post("/api/v1/users/", {"username": "vera"}, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["code"] == "duplicate_user"
    weak = api("staff").post("/api/v1/users/", {"username": "eve", "password": "123"},
                             format="json")
    assert weak.status_code == 400 and weak.json()["field"] == "password"
    bad = api("staff").post("/api/v1/users/", {"username": "not ok!"}, format="json")
    assert bad.status_code == 400 and bad.json()["field"] == "username"
    lonely = api("staff").post("/api/v1/users/", {"username": "eve", "role": "viewer"},
                               format="json")
    assert lonely.status_code == 400 and lonely.json()["field"] == "project"
    assert not User.objects.filter(username__in=["eve", "not ok!"]).exists()


def test_only_staff_manage_people(api, users):
    for who in ("owner", "viewer", "outsider"):
        for method, path, body in (("get", "/api/v1/users/", None),
                                   ("post", "/api/v1/users/", {"username": "x"}),
                                   ("post", f"/api/v1/users/{users['viewer'].pk}/deactivate/",
                                    {})):
            answer = getattr(api(who), method)(path, body, format="json")
            assert answer.status_code == 403, (who, method, path)
            assert answer.json()["code"] == "staff_required"
    assert api(None).get("/api/v1/users/").status_code == 401
    assert User.objects.get(pk=users["viewer"].pk).is_active


def test_staff_list_and_deactivate_never_delete(api, users):
    listed = api("staff").get("/api/v1/users/?is_active=true").json()["results"]
    assert {u["username"] for u in listed} >= {"olivia", "vera", "sam"}
    viewer_api = api("viewer")  # a token made before: it stops working too
    answer = api("staff").post(f"/api/v1/users/{users['viewer'].pk}/deactivate/")
    assert answer.status_code == 200 and answer.json()["is_active"] is False
    assert viewer_api.get("/api/v1/projects/").status_code == 401
    again = api("staff").post(f"/api/v1/users/{users['viewer'].pk}/deactivate/")
    assert again.status_code == 200
    assert AuditEvent.objects.filter(action="user.deactivate").count() == 1
    inactive = api("staff").get("/api/v1/users/?is_active=false").json()["results"]
    assert [u["username"] for u in inactive] == ["vera"]
    own = api("staff").post(f"/api/v1/users/{users['staff'].pk}/deactivate/")
    assert own.status_code == 409 and own.json()["code"] == "self_deactivation"
    assert api("staff").delete(f"/api/v1/users/{users['viewer'].pk}/").status_code == 405
    assert User.objects.filter(pk=users["viewer"].pk).exists()


def test_createuser_command_makes_a_member_with_a_role(users, project):
    out = io.StringIO()
    call_command("createuser", "erin", "--email", "erin@example.com", "--project",
                 project.slug, "--role", "approver", stdout=out)
    person = User.objects.get(username="erin")
    assert Membership.objects.get(user=person, project=project).role == "approver"
    assert "created erin, approver of clinical-ml" in out.getvalue()
    assert "/password/set/" in out.getvalue() and not person.has_usable_password()
    assert AuditEvent.objects.filter(action="user.create", object_repr="user erin",
                                     actor=None).exists()

    call_command("createuser", "finn", "--password-stdin", stdin=io.StringIO("a fine pass 99\n"),
                 stdout=io.StringIO())
    assert User.objects.get(username="finn").check_password("a fine pass 99")
    with pytest.raises(CommandError, match="no project with slug"):
        call_command("createuser", "gil", "--project", "nowhere", "--role", "viewer")
    with pytest.raises(CommandError, match="exists already"):
        call_command("createuser", "erin", stdout=io.StringIO())
