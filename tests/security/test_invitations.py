"""Issue 18, item 7 — members join by invitation that the invited person accepts.

Adding a member by username used to answer 404 for a name with no account (so it told who
exists) and made anyone a member, even an owner, at once. Now an owner invites; the answer,
the work done (the same SQL statements), the audit event and the project's list of
invitations are the same whether or not the account exists; nobody is a member, nor an
owner, before accepting; only the invited person answers; revoked and expired invitations
cannot be accepted; every step is in the audit trail.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.accounts import services as accounts
from portal.accounts.models import Invitation, Membership
from portal.audit.models import AuditEvent
from tests.portal_fixtures import make_user

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

INVITED = {"detail": "If that account exists, it has been invited."}
PLAIN_404 = {"code": "not_found", "detail": "Not found."}
URL = "/api/v1/invitations/"


def invite(client, project, username, role="viewer"):
    return client.post(URL, {"project": project.pk, "username": username, "role": role},
                       format="json")


def invitation_of(project, username) -> Invitation:
    return Invitation.objects.get(project=project, username=username)


def statements(queries, *names) -> list[str]:
    """The SQL run, with every literal (strings, numbers, NULL) and the names invited
    replaced: what the database was asked to do, not with what."""
    shapes = []
    for query in queries:
        sql = query["sql"]
        for name in names:
            sql = sql.replace(name, "?")
        sql = re.sub(r"'[^']*'", "?", sql)
        sql = re.sub(r'"s\d+_x\d+"', "savepoint", sql)
        sql = re.sub(r"\b(\d+|NULL)\b", "N", sql)
        shapes.append(sql)
    return shapes


# The same answer, the same work ---------------------------------------------------------

def test_inviting_answers_and_works_the_same_whether_the_username_exists(api, project, users):
    owner = api("owner")
    owner.get(URL)  # the token's first use writes last_used_at: not part of the comparison
    answers, work = {}, {}
    for name in ("oscar", "no-such-person"):
        with CaptureQueriesContext(connection) as queries:
            answers[name] = invite(owner, project, name)
        work[name] = statements(queries.captured_queries, name)
    known, unknown = answers["oscar"], answers["no-such-person"]
    assert known.status_code == unknown.status_code == 201
    assert known.json() == unknown.json() == INVITED
    assert dict(known.headers) == dict(unknown.headers)
    assert work["oscar"] == work["no-such-person"]
    assert any(s.startswith('INSERT INTO "accounts_invitation"') for s in work["oscar"])

    # Asked again (an open invitation), for a member, and with a name differing in case:
    # the same answer again, and nothing changes.
    rows = Invitation.objects.count()
    for name in ("oscar", "no-such-person", "vera", "Oscar"):
        again = invite(owner, project, name, role="owner")
        assert (again.status_code, again.json()) == (201, INVITED), name
    assert Invitation.objects.count() == rows + 1  # "Oscar": a name like any other
    assert Membership.objects.get(project=project, user=users["viewer"]).role == "viewer"
    assert set(Invitation.objects.filter(project=project).values_list("role", flat=True)) \
        == {"viewer", "owner"}
    assert not Invitation.objects.filter(user=users["viewer"]).exists()


def test_neither_the_owners_list_nor_the_audit_trail_tells_who_exists(api, project, users):
    owner = api("owner")
    for name in ("oscar", "no-such-person"):
        invite(owner, project, name, role="contributor")
    listed = owner.get(f"{URL}?project={project.pk}").json()["results"]
    assert sorted(row["username"] for row in listed) == ["no-such-person", "oscar"]
    known, unknown = sorted(listed, key=lambda row: row["username"] == "no-such-person")

    def without_names(row):
        return {k: v for k, v in row.items() if k not in ("id", "username", "created_at",
                                                           "expires_at")}
    assert known.keys() == unknown.keys() and "user" not in known
    assert without_names(known) == without_names(unknown)
    assert known["status"] == "open" and known["invited_by"] == "olivia"

    # Members read the project's audit trail: the two events differ only by the name.
    viewer = api("viewer")
    events = viewer.get(f"/api/v1/audit-events/?project={project.pk}").json()["results"]
    created = [e for e in events if e["action"] == "invitation.create"]
    assert len(created) == 2
    a, b = ({k: v for k, v in e.items() if k not in ("id", "object_id", "object_repr",
                                                       "created_at", "changes", "hash",
                                                       "prev_hash")} for e in created)
    assert a == b
    assert {e["changes"]["username"] for e in created} == {"oscar", "no-such-person"}
    assert [sorted(e["changes"]) for e in created] == [["expires_at", "role", "username"]] * 2

    # Only owners see a project's invitations; the invited person sees their own.
    assert viewer.get(f"{URL}?project={project.pk}").json()["results"] == []
    assert viewer.get(f"{URL}{known['id']}/").status_code == 403
    assert api("outsider").get(f"{URL}{unknown['id']}/").json() == PLAIN_404
    mine = api("outsider").get(URL).json()["results"]
    assert [row["id"] for row in mine] == [known["id"]]
    assert api("approver").get(URL).json()["results"] == []


def test_only_owners_invite_and_outsiders_learn_nothing(api, project, other_project):
    for who in ("viewer", "contributor", "approver"):
        answer = invite(api(who), project, "oscar")
        assert answer.status_code == 403 and answer.json()["code"] == "role_required", who
    hostile = api("outsider")  # owner of "elsewhere" only
    assert invite(hostile, project, "vera").json() == PLAIN_404
    answer = hostile.post(URL, {"project": 999999, "username": "vera", "role": "viewer"},
                          format="json")
    assert answer.status_code == 404 and answer.json() == PLAIN_404
    assert not Invitation.objects.exists()
    bad = invite(api("owner"), project, "oscar", role="emperor")
    assert bad.status_code == 400 and bad.json()["field"] == "role"


# Nobody is a member before accepting ----------------------------------------------------

def test_nobody_is_a_member_before_accepting(api, project, users):
    assert invite(api("owner"), project, "oscar", role="contributor").status_code == 201
    oscar = api("outsider")
    assert not Membership.objects.filter(project=project, user=users["outsider"]).exists()
    assert oscar.get(f"/api/v1/projects/{project.pk}/").status_code == 404
    assert oscar.get(f"/api/v1/models/?project={project.pk}").json()["results"] == []

    [row] = oscar.get(URL).json()["results"]
    assert (row["project_slug"], row["project_name"], row["role"], row["status"]) == (
        "clinical-ml", "Clinical ML", "contributor", "open")
    expires = timezone.datetime.fromisoformat(row["expires_at"])
    assert timedelta(days=13) < expires - timezone.now() <= timedelta(days=14)

    accepted = oscar.post(f"{URL}{row['id']}/accept/")
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert Membership.objects.get(project=project, user=users["outsider"]).role == "contributor"
    assert oscar.get(f"/api/v1/projects/{project.pk}/").status_code == 200
    again = oscar.post(f"{URL}{row['id']}/accept/")
    assert again.status_code == 409 and again.json()["code"] == "invitation_accepted"
    assert oscar.get(f"{URL}?status=open").json()["results"] == []


def test_only_the_invited_person_accepts_or_declines(api, project, users):
    invite(api("owner"), project, "oscar", role="approver")
    invitation = invitation_of(project, "oscar")
    make_user("mallory")
    for who in ("owner", "viewer", "approver", "staff"):
        client = api(who)
        for verb in ("accept", "decline"):
            answer = client.post(f"{URL}{invitation.pk}/{verb}/")
            assert answer.status_code == 404 and answer.json() == PLAIN_404, (who, verb)
    invitation.refresh_from_db()
    assert invitation.status == "open"
    assert not Membership.objects.filter(user=users["outsider"], project=project).exists()
    # The same in the browser: a page's form answers 404 to anyone but the invited person.
    browser = Client()
    browser.force_login(users["staff"])
    assert browser.post(f"/invitations/{invitation.pk}/accept/").status_code == 404

    declined = api("outsider").post(f"{URL}{invitation.pk}/decline/")
    assert declined.status_code == 200 and declined.json()["status"] == "declined"
    assert not Membership.objects.filter(user=users["outsider"], project=project).exists()
    late = api("outsider").post(f"{URL}{invitation.pk}/accept/")
    assert late.status_code == 409 and late.json()["code"] == "invitation_declined"


def test_an_owner_invitation_is_not_ownership_until_accepted(api, project, users):
    invite(api("owner"), project, "oscar", role="owner")
    oscar = api("outsider")
    assert oscar.patch(f"/api/v1/projects/{project.pk}/", {"description": "mine"},
                       format="json").status_code == 404
    assert invite(oscar, project, "mallory").status_code == 404
    invitation = invitation_of(project, "oscar")
    assert oscar.post(f"{URL}{invitation.pk}/revoke/").status_code == 404
    assert accounts.role_in(users["outsider"], project) is None

    assert oscar.post(f"{URL}{invitation.pk}/accept/").status_code == 200
    fresh = api("outsider")
    answer = fresh.patch(f"/api/v1/projects/{project.pk}/", {"description": "ours"},
                         format="json")
    assert answer.status_code == 200
    assert Membership.objects.get(project=project, user=users["outsider"]).role == "owner"


def test_revoked_and_expired_invitations_cannot_be_accepted(api, project, users):
    owner = api("owner")
    invite(owner, project, "oscar")
    invitation = invitation_of(project, "oscar")
    assert api("viewer").post(f"{URL}{invitation.pk}/revoke/").json()["code"] == "role_required"
    revoked = owner.post(f"{URL}{invitation.pk}/revoke/")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert owner.post(f"{URL}{invitation.pk}/revoke/").status_code == 200  # nothing more
    answer = api("outsider").post(f"{URL}{invitation.pk}/accept/")
    assert answer.status_code == 409 and answer.json()["code"] == "invitation_revoked"

    invite(owner, project, "oscar")  # a new one, now that none is open
    invitation = Invitation.objects.get(project=project, username="oscar", status="open")
    Invitation.objects.filter(pk=invitation.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1))
    oscar = api("outsider")
    assert oscar.get(f"{URL}?status=open").json()["results"] == []
    [expired] = oscar.get(f"{URL}?status=expired").json()["results"]
    assert expired["id"] == invitation.pk and expired["status"] == "expired"
    answer = oscar.post(f"{URL}{invitation.pk}/accept/")
    assert answer.status_code == 409 and answer.json()["code"] == "invitation_expired"
    answer = oscar.post(f"{URL}{invitation.pk}/decline/")
    assert answer.status_code == 409 and answer.json()["code"] == "invitation_expired"
    assert owner.post(f"{URL}{invitation.pk}/revoke/").json()["code"] == "invitation_expired"
    assert not Membership.objects.filter(project=project, user=users["outsider"]).exists()

    # Inviting again replaces the expired invitation with an open one.
    assert invite(owner, project, "oscar").status_code == 201
    assert Invitation.objects.get(project=project, username="oscar", status="open").pk \
        != invitation.pk


def test_an_account_created_after_its_invitation_can_accept_it(api, project):
    owner = api("owner")
    invite(owner, project, "newcomer")
    assert invitation_of(project, "newcomer").user is None  # nobody can accept it
    newcomer = make_user("newcomer")
    invite(owner, project, "newcomer")  # the owner asks again: the same answer
    invitation = invitation_of(project, "newcomer")
    assert invitation.user == newcomer and Invitation.objects.filter(project=project).count() == 1
    assert accounts.accept_invitation(newcomer, invitation).status == "accepted"
    assert accounts.role_in(newcomer, project) == "viewer"


# Every step is audited -------------------------------------------------------------------

def test_every_step_is_audited(api, project, users):
    owner = api("owner")
    for name in ("oscar", "vera", "alice", "carlos", "mallory"):
        invite(owner, project, name)  # vera, alice, carlos are members: nothing happens
    mallory = make_user("mallory")
    to_oscar = invitation_of(project, "oscar")
    to_mallory = invitation_of(project, "mallory")
    api("outsider").post(f"{URL}{to_oscar.pk}/accept/")
    owner.post(f"{URL}{to_mallory.pk}/revoke/")
    invite(owner, project, "mallory", role="contributor")
    again = Invitation.objects.get(project=project, username="mallory", status="open")
    accounts.decline_invitation(mallory, again)  # no request: recorded as the system's

    events = list(AuditEvent.objects.filter(action__startswith="invitation.")
                  .order_by("id").values_list("action", "actor_name", "object_id", "via",
                                              "project_id"))
    assert events == [
        ("invitation.create", "olivia", str(to_oscar.pk), "api", project.pk),
        ("invitation.create", "olivia", str(to_mallory.pk), "api", project.pk),
        ("invitation.accept", "oscar", str(to_oscar.pk), "api", project.pk),
        ("invitation.revoke", "olivia", str(to_mallory.pk), "api", project.pk),
        ("invitation.create", "olivia", str(again.pk), "api", project.pk),
        ("invitation.decline", "mallory", str(again.pk), "system", project.pk),
    ]
    accept = AuditEvent.objects.get(action="invitation.accept")
    assert accept.changes == {"status": {"from": "open", "to": "accepted"}, "role": "viewer"}
    membership = AuditEvent.objects.get(action="membership.create")
    assert membership.actor_name == "oscar" and membership.changes["invitation"] == to_oscar.pk
    assert membership.changes["role"] == {"from": None, "to": "viewer"}


# Pages -----------------------------------------------------------------------------------

def test_the_pages_invite_list_and_answer_with_csrf_protected_forms(project, users):
    owner = Client(enforce_csrf_checks=True)
    owner.force_login(users["owner"])
    page = owner.get("/p/clinical-ml/").content.decode()
    assert 'action="/p/clinical-ml/invitations/"' in page and ">Invite</button>" in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    # Without the token the form is refused; with it, the same words for both names.
    assert owner.post("/p/clinical-ml/invitations/", {"username": "oscar",
                                                      "role": "owner"}).status_code == 403
    said = []
    for name in ("oscar", "no-such-person"):
        answer = owner.post("/p/clinical-ml/invitations/", {"username": name, "role": "owner",
                                                            "csrfmiddlewaretoken": token},
                            follow=True)
        assert answer.status_code == 200
        said.append([str(m) for m in answer.context["messages"]])
    assert said[0] == said[1] and INVITED["detail"] in said[0][0]
    page = owner.get("/p/clinical-ml/").content.decode()
    assert ">oscar</td>" in page and ">no-such-person</td>" in page and "Revoke" in page
    assert not Membership.objects.filter(project=project, user=users["outsider"]).exists()

    invitee = Client(enforce_csrf_checks=True)
    invitee.force_login(users["outsider"])
    assert 'href="/invitations/"' in invitee.get("/").content.decode()
    dashboard = invitee.get("/").content.decode()
    assert 'id="invitations"' in dashboard and "Clinical ML" in dashboard
    page = invitee.get("/invitations/").content.decode()
    invitation = invitation_of(project, "oscar")
    assert f'action="/invitations/{invitation.pk}/accept/"' in page
    assert f'action="/invitations/{invitation.pk}/decline/"' in page
    assert "no-such-person" not in page
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    assert invitee.post(f"/invitations/{invitation.pk}/accept/").status_code == 403
    assert not Membership.objects.filter(project=project, user=users["outsider"]).exists()
    answer = invitee.post(f"/invitations/{invitation.pk}/accept/",
                          {"csrfmiddlewaretoken": token}, follow=True)
    assert answer.redirect_chain[-1][0] == "/p/clinical-ml/"
    assert b"You are now owner of Clinical ML" in answer.content
    assert Membership.objects.get(project=project, user=users["outsider"]).role == "owner"
    assert "Earlier" in invitee.get("/invitations/").content.decode()

    # An expired one is not offered, and answering it says so.
    invite_ghost = invitation_of(project, "no-such-person")
    Invitation.objects.filter(pk=invite_ghost.pk).update(user=users["contributor"],
                                                         expires_at=timezone.now())
    carlos = Client()
    carlos.force_login(users["contributor"])
    assert f"/invitations/{invite_ghost.pk}/accept/" not in carlos.get("/invitations/").content.decode()
    answer = carlos.post(f"/invitations/{invite_ghost.pk}/accept/", follow=True)
    assert b"this invitation expired" in answer.content
