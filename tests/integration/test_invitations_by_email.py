"""Issue 15, item 4 — owners invite a person by e-mail address.

The invitation carries a one-time link (32 random bytes, stored as a sha256, dying with the
invitation) with which the person creates an account and joins with the invited role. With
mail configured the link is mailed and the owner is told nothing more; without, the owner
is shown the link once. The answer is the same whether or not an account has the address;
that account also finds a normal invitation on its Invitations page.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from portal.accounts.models import Invitation, Membership
from portal.audit.models import AuditEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

URL = "/api/v1/invitations/"
CONSOLE = "django.core.mail.backends.console.EmailBackend"
LOCMEM = "django.core.mail.backends.locmem.EmailBackend"
PASSWORD = "a long enough passphrase 7"


@pytest.fixture
def no_mail(settings):
    settings.EMAIL_BACKEND = CONSOLE


@pytest.fixture
def with_mail(settings):
    settings.EMAIL_BACKEND = LOCMEM
    mail.outbox = []


def invite(client, project, email, role="contributor"):
    return client.post(URL, {"project": project.pk, "email": email, "role": role},
                       format="json")


def join_path(url: str) -> str:
    return re.search(r"(/invitations/join/[^/\s]+/)", url).group(1)


def join(path, username="nina", password=PASSWORD):
    return Client().post(path, {"username": username, "password": password})


def test_without_mail_the_owner_is_shown_the_link_once(api, project, no_mail):
    owner = api("owner")
    answer = invite(owner, project, "nina@example.com")
    assert answer.status_code == 201
    body = answer.json()
    assert set(body) == {"detail", "accept_url"} and "No mail is configured" in body["detail"]
    assert answer.headers["Cache-Control"] == "no-store"
    key = join_path(body["accept_url"]).split("/")[-2]
    assert len(key) >= 43  # 32 random bytes, base64
    invitation = Invitation.objects.get(project=project, username="nina@example.com")
    assert invitation.by_email and invitation.user is None
    assert key not in invitation.token_hash and len(invitation.token_hash) == 64

    # Read again, in the list or alone, the invitation has no link any more.
    again = owner.get(f"{URL}{invitation.pk}/").json()
    assert "accept_url" not in again and key not in str(again)
    assert key not in str(owner.get(URL, {"project": project.pk}).json())
    assert mail.outbox == []

    page = Client().get(join_path(body["accept_url"]))
    assert page.status_code == 200
    assert b"Clinical ML" in page.content and b"contributor" in page.content
    answer = join(join_path(body["accept_url"]))
    assert answer.status_code == 302 and answer.headers["Location"] == "/login/"
    nina = Membership.objects.select_related("user").get(project=project,
                                                         user__username="nina")
    assert nina.role == "contributor" and nina.user.email == "nina@example.com"
    assert nina.user.check_password(PASSWORD)
    invitation.refresh_from_db()
    assert invitation.status == "accepted"
    actions = set(AuditEvent.objects.filter(actor_name="nina").values_list("action", flat=True))
    assert {"user.create", "membership.create", "invitation.accept"} <= actions


def test_the_page_shows_the_link_once_when_no_mail_is_configured(project, users, no_mail):
    owner = Client()
    owner.force_login(users["owner"])
    answer = owner.post("/p/clinical-ml/invitations/",
                        {"username": "nina@example.com", "role": "viewer"})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "No mail is configured" in page and "/invitations/join/" in page
    assert "/invitations/join/" not in owner.get("/p/clinical-ml/").content.decode()


def test_with_mail_the_link_is_mailed_and_the_owner_shown_nothing(api, project, with_mail):
    answer = invite(api("owner"), project, "nina@example.com")
    assert answer.status_code == 201
    assert answer.json() == {"detail": "An invitation has been sent to that address."}
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["nina@example.com"] and "Clinical ML" in message.subject
    assert join(join_path(message.body)).status_code == 302
    assert Membership.objects.get(project=project, user__username="nina").role == "contributor"


def test_a_mailed_link_starts_with_the_configured_address_not_the_requests_host(
        api, project, with_mail, settings):
    # A Host header the portal accepts (behind a proxy ALLOWED_HOSTS is often wide) must
    # not choose where the key in the invitee's mailbox leads.
    settings.ALLOWED_HOSTS = ["*"]
    settings.MODELGATE_BASE_URL = "https://models.example.org"
    answer = api("owner").post(URL, {"project": project.pk, "email": "nina@example.com",
                                     "role": "viewer"}, format="json",
                               HTTP_HOST="attacker.example.net")
    assert answer.status_code == 201
    body = mail.outbox[0].body
    assert "https://models.example.org/invitations/join/" in body
    assert "attacker.example.net" not in body


def test_in_production_without_an_address_the_link_is_shown_not_mailed_to_loopback(
        api, project, with_mail, settings):
    # Review: an HTTPS install needs neither MODELGATE_BASE_URL nor trusted origins for its
    # own forms; the default address is loopback, and a link to it would have been mailed.
    from django.core.checks import run_checks

    settings.MODELGATE_PRODUCTION = True
    settings.MODELGATE_BASE_URL = "http://127.0.0.1:8000"
    assert "modelgate.W103" in {m.id for m in run_checks()}
    answer = api("owner").post(URL, {"project": project.pk, "email": "nina@example.com",
                                     "role": "viewer"}, format="json")
    body = answer.json()
    assert answer.status_code == 201 and mail.outbox == []
    assert "MODELGATE_BASE_URL" in body["detail"] and "nothing was sent" in body["detail"]
    assert body["accept_url"].startswith("http://testserver/invitations/join/")
    assert Client().get(join_path(body["accept_url"])).status_code == 200
    settings.MODELGATE_BASE_URL = "https://models.example.org"  # set: mailed, no warning
    assert "modelgate.W103" not in {m.id for m in run_checks()}
    invite(api("owner"), project, "omar@example.com")
    assert "https://models.example.org/invitations/join/" in mail.outbox[0].body


def test_a_link_works_once(api, project, no_mail):
    path = join_path(invite(api("owner"), project, "nina@example.com").json()["accept_url"])
    assert join(path).status_code == 302
    again = join(path, username="nina2")
    assert again.status_code == 409 and b"used already" in again.content
    assert not Membership.objects.filter(user__username="nina2").exists()
    assert Client().get(path).status_code == 409


def test_an_expired_link_is_refused(api, project, no_mail):
    path = join_path(invite(api("owner"), project, "nina@example.com").json()["accept_url"])
    Invitation.objects.filter(username="nina@example.com").update(
        expires_at=timezone.now() - timedelta(seconds=1))
    answer = join(path)
    assert answer.status_code == 409 and b"expired" in answer.content
    assert not Membership.objects.filter(user__username="nina").exists()


def test_a_revoked_link_is_refused(api, project, no_mail):
    owner = api("owner")
    path = join_path(invite(owner, project, "nina@example.com").json()["accept_url"])
    invitation = Invitation.objects.get(username="nina@example.com")
    assert owner.post(f"{URL}{invitation.pk}/revoke/").status_code == 200
    answer = join(path)
    assert answer.status_code == 409 and b"revoked" in answer.content
    assert not Membership.objects.filter(user__username="nina").exists()


def test_an_unknown_key_is_not_found(project):
    assert Client().get("/invitations/join/" + "x" * 43 + "/").status_code == 404


def test_the_new_account_is_validated(api, project, users, no_mail):
    path = join_path(invite(api("owner"), project, "nina@example.com").json()["accept_url"])
    taken = join(path, username="oscar")
    assert taken.status_code == 200 and b"exists already" in taken.content
    weak = join(path, username="nina", password="123")
    assert weak.status_code == 200 and b"too short" in weak.content
    assert Invitation.objects.get(username="nina@example.com").status == "open"


def test_an_existing_accounts_address_becomes_a_normal_invitation(api, project, users,
                                                                  with_mail):
    users["outsider"].email = "oscar@example.com"
    users["outsider"].save()
    owner = api("owner")
    known = invite(owner, project, "Oscar@example.com")
    unknown = invite(owner, project, "nobody@example.com")
    assert known.status_code == unknown.status_code == 201
    assert known.json() == unknown.json()
    assert len(mail.outbox) == 2
    invitation = Invitation.objects.get(username="Oscar@example.com")
    assert invitation.user == users["outsider"]
    oscar = api("outsider")
    listed = oscar.get(URL).json()["results"]
    assert [i["id"] for i in listed] == [invitation.pk]
    assert oscar.post(f"{URL}{invitation.pk}/accept/").status_code == 200
    assert Membership.objects.get(project=project, user=users["outsider"]).role == "contributor"
    # ...and its link is then used.
    assert join(join_path(mail.outbox[0].body)).status_code == 409


def test_without_mail_an_existing_accounts_address_gets_a_link_too(api, project, users,
                                                                   no_mail):
    users["outsider"].email = "oscar@example.com"
    users["outsider"].save()
    owner = api("owner")
    known, unknown = (invite(owner, project, a).json()
                      for a in ("oscar@example.com", "nobody@example.com"))
    assert set(known) == set(unknown) == {"detail", "accept_url"}
    assert known["detail"] == unknown["detail"]
    # Its holder, signed in, joins with their own account.
    oscar = Client()
    oscar.force_login(users["outsider"])
    path = join_path(known["accept_url"])
    assert b"Join as oscar" in oscar.get(path).content
    assert oscar.post(path).status_code == 302
    assert Membership.objects.get(project=project, user=users["outsider"]).role == "contributor"


@pytest.mark.parametrize("who", ["approver", "contributor", "viewer", "outsider"])
def test_only_owners_invite_by_email(api, project, with_mail, who):
    answer = invite(api(who), project, "nina@example.com")
    assert answer.status_code == (404 if who == "outsider" else 403)
    assert not Invitation.objects.filter(username="nina@example.com").exists()
    assert mail.outbox == []


def test_a_username_or_an_address_one_of_them(api, project):
    answer = api("owner").post(URL, {"project": project.pk, "email": "a@example.com",
                                     "username": "oscar", "role": "viewer"}, format="json")
    assert answer.status_code == 400


def test_inviting_an_address_again_renews_its_link(api, project, no_mail):
    owner = api("owner")
    first = join_path(invite(owner, project, "nina@example.com").json()["accept_url"])
    second = join_path(invite(owner, project, "NINA@example.com").json()["accept_url"])
    assert first != second
    assert Invitation.objects.filter(by_email=True).count() == 1
    assert join(first).status_code == 404
    assert join(second).status_code == 302


def test_a_members_address_still_gets_a_working_link(api, project, users, no_mail):
    users["viewer"].email = "vera@example.com"
    users["viewer"].save()
    body = invite(api("owner"), project, "vera@example.com").json()
    assert set(body) == {"detail", "accept_url"}
    assert Invitation.objects.get(username="vera@example.com").user is None
    assert Client().get(join_path(body["accept_url"])).status_code == 200
