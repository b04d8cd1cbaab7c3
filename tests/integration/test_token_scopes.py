"""API tokens carry scopes (read, write, approve) and always expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from portal.accounts.services import create_token
from portal.errors import ValidationFailed
from portal.registry import services as registry
from portal.releases import services as releases
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def client_with(user, **kwargs) -> APIClient:
    _, key = create_token(user, "scoped", **kwargs)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


@pytest.fixture
def request_to_review(users, project, clf):
    import io
    version = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(1)), metadata()).pk)
    environment = releases.create_environment(users["owner"], project, name="staging",
                                              required_approvals=2)
    return releases.request_approval(users["contributor"], version, environment)


def test_a_read_token_reads_and_changes_nothing(users, project):
    client = client_with(users["owner"], scopes=["read"])
    assert client.get("/api/v1/models/").status_code == 200
    answer = client.post("/api/v1/models/", {"project": project.pk, "name": "m2",
                                             "task": "classification"}, format="json")
    assert answer.status_code == 403 and "lacks the 'write' scope" in answer.json()["detail"]


def test_approving_needs_the_approve_scope_and_the_role(users, request_to_review):
    url = f"/api/v1/approval-requests/{request_to_review.pk}/approve/"
    default = client_with(users["approver"])  # read and write
    answer = default.post(url, {"comment": "ok"}, format="json")
    assert answer.status_code == 403 and "'approve' scope" in answer.json()["detail"]
    viewer = client_with(users["viewer"], scopes=["read", "write", "approve"])
    assert viewer.post(url, {"comment": "ok"}, format="json").status_code == 403  # role
    approver = client_with(users["approver"], scopes=["read", "approve"])
    assert approver.post(url, {"comment": "ok"}, format="json").status_code == 200


def test_tokens_expire_by_default_and_never_beyond_the_limit(users, settings):
    token, _ = create_token(users["viewer"], "ci")
    assert abs(token.expires_at - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    assert token.scopes == ["read", "write"]
    with pytest.raises(ValidationFailed):
        create_token(users["viewer"], "forever", expires_at=timezone.now() + timedelta(days=400))
    with pytest.raises(ValidationFailed):
        create_token(users["viewer"], "odd", scopes=["admin"])
    token, key = create_token(users["viewer"], "short")
    type(token).objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/models/").status_code == 401


def test_scopes_are_chosen_when_a_token_is_made_through_the_api(users):
    client = client_with(users["viewer"])
    answer = client.post("/api/v1/tokens/", {"name": "reader", "scopes": ["read"]},
                         format="json")
    assert answer.status_code == 201 and answer.json()["scopes"] == ["read"]
    bad = client.post("/api/v1/tokens/", {"name": "x", "scopes": ["root"]}, format="json")
    assert bad.status_code == 400
