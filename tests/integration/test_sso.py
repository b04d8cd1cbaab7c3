"""Single sign-on through OpenID Connect against a real provider process-side (an HTTP
server in tests/integration/oidc_provider.py): the whole authorization code flow, account
matching and creation, and every way a sign-in must be refused."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
import requests
from django.test import Client

from portal.audit.models import AuditEvent
from tests.integration.oidc_provider import Provider

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


@pytest.fixture
def provider(settings):
    server = Provider("modelgate-portal", "s3cret-client").start()
    for name, value in server.settings().items():
        setattr(settings, name, value)
    settings.AUTHENTICATION_BACKENDS = [*settings.AUTHENTICATION_BACKENDS,
                                        "portal.accounts.oidc.PortalOIDCBackend"]
    yield server
    server.stop()


def sign_in(provider: Provider, client: Client | None = None, next_url: str = ""):
    """Click "Sign in with…", let the provider send the browser back; the client and the
    portal's last answer."""
    client = client or Client()
    start = client.get("/oidc/authenticate/" + (f"?next={next_url}" if next_url else ""))
    assert start.status_code == 302 and start["Location"].startswith(provider.url)
    asked = parse_qs(urlparse(start["Location"]).query)
    assert asked["response_type"] == ["code"] and "openid" in asked["scope"][0]
    assert asked["nonce"] and asked["state"]
    back = requests.get(start["Location"], allow_redirects=False, timeout=10)
    assert back.status_code == 302
    callback = urlparse(back.headers["Location"])
    return client, client.get(f"{callback.path}?{callback.query}")


def test_a_first_sign_in_creates_an_account_with_no_roles_and_no_password(provider):
    from django.contrib.auth import get_user_model

    client, answer = sign_in(provider)
    assert answer.status_code == 302 and answer["Location"] == "/"
    user = get_user_model().objects.get(email="dana@example.com")
    assert (user.username, user.first_name, user.last_name) == ("dana", "Dana", "Scully")
    assert not user.has_usable_password()
    page = client.get("/")
    assert page.status_code == 200 and b"dana" in page.content
    assert client.get("/api/v1/projects/").json()["results"] == []  # roles come from owners
    assert AuditEvent.objects.filter(action="account.sso_created", object_repr="dana").exists()
    # The next sign-in finds the same account.
    sign_in(provider)
    assert get_user_model().objects.filter(email__iexact="dana@example.com").count() == 1
    assert AuditEvent.objects.filter(action="account.sso_login").count() == 2


def test_an_existing_account_is_matched_by_its_email(provider, users, project):
    users["approver"].email = "Alice@Example.com"
    users["approver"].save()
    provider.claims.update(email="alice@example.com", preferred_username="alice.w")
    client, answer = sign_in(provider, next_url="/models/")
    assert answer.status_code == 302 and answer["Location"] == "/models/"
    projects = client.get("/api/v1/projects/").json()["results"]
    assert [p["slug"] for p in projects] == [project.slug]  # alice's own roles


def test_a_deactivated_account_is_refused_and_no_new_one_is_made(provider, users):
    from django.contrib.auth import get_user_model

    users["viewer"].email, users["viewer"].is_active = "dana@example.com", False
    users["viewer"].save()
    client, answer = sign_in(provider)
    assert answer["Location"] == "/login/?sso=failed"
    assert get_user_model().objects.filter(email__iexact="dana@example.com").count() == 1
    assert not AuditEvent.objects.filter(action="account.sso_login").exists()


@pytest.mark.parametrize("misbehave", ["another audience", "unknown key", "unverified email"])
def test_a_sign_in_that_cannot_be_trusted_is_refused(provider, misbehave):
    from django.contrib.auth import get_user_model

    if misbehave == "another audience":
        provider.audience = "some-other-client"
    elif misbehave == "unknown key":
        provider.sign_with_rogue_key = True
    else:
        provider.claims["email_verified"] = False
    client, answer = sign_in(provider)
    assert answer.status_code == 302 and answer["Location"] == "/login/?sso=failed"
    assert not get_user_model().objects.filter(email="dana@example.com").exists()
    assert client.get("/").status_code == 302  # not signed in
    page = client.get(answer["Location"])
    assert b"Single sign-on did not complete" in page.content


def test_a_provider_failing_at_the_token_exchange_sends_back_to_the_login_page(provider):
    provider.token_status = 503
    client, answer = sign_in(provider)
    assert answer["Location"] == "/login/?sso=failed"


def test_without_account_creation_an_unknown_person_is_refused(provider, settings):
    settings.OIDC_CREATE_USER = False
    _, answer = sign_in(provider)
    assert answer["Location"] == "/login/?sso=failed"


def test_the_login_page_offers_single_sign_on_only_when_configured(provider, settings):
    page = Client().get("/login/")
    assert b"Sign in with Example SSO" in page.content
    settings.OIDC_RP_CLIENT_ID = ""
    assert b"Sign in with" not in Client().get("/login/").content
    assert Client().get("/oidc/authenticate/").status_code == 404
    assert Client().get("/oidc/callback/?code=x&state=y").status_code == 404
