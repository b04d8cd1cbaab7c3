"""Sign-in lockout and API rate limits."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

pytestmark = [pytest.mark.integration, pytest.mark.django_db]
# No cache.clear(): on Redis it would flush the whole database. Failed sign-ins are rows
# (django-axes) in the test database, and throttle counts are keyed by user ids that are new
# in every test.


def test_the_token_login_locks_an_account_after_repeated_failures(users, settings):
    client = APIClient()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        answer = client.post("/api/v1/auth/token/", {"username": "vera", "password": "nope"},
                             format="json")
        assert answer.status_code == 401
    locked = client.post("/api/v1/auth/token/", {"username": "vera", "password": "nope"},
                         format="json")
    assert locked.status_code == 429 and locked.json()["code"] == "locked_out"
    right = client.post("/api/v1/auth/token/", {"username": "vera", "password": "pw-vera"},
                        format="json")
    assert right.status_code == 429  # even the right password, until the cool-off
    other = client.post("/api/v1/auth/token/", {"username": "alice", "password": "pw-alice"},
                        format="json")
    assert other.status_code == 201  # only that account from here


def test_the_login_page_locks_too(client, users, settings):
    for _ in range(settings.AXES_FAILURE_LIMIT):
        client.post("/login/", {"username": "carlos", "password": "wrong"})
    answer = client.post("/login/", {"username": "carlos", "password": "pw-carlos"})
    assert answer.status_code == 429 and b"Too many failed sign-ins" in answer.content


def test_token_creation_is_rate_limited_per_user(api, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "tokens": "3/hour"}}
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    before = SimpleRateThrottle.THROTTLE_RATES
    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        viewer = api("viewer")
        codes = [viewer.post("/api/v1/tokens/", {"name": f"t{i}"}, format="json").status_code
                 for i in range(4)]
        assert codes == [201, 201, 201, 429]
        assert viewer.get("/api/v1/tokens/").status_code == 200  # reads are not limited
        assert api("contributor").post("/api/v1/tokens/", {"name": "x"},
                                       format="json").status_code == 201  # per user
    finally:
        # The rates of before: reloading here would read this test's 3/hour again (the
        # settings fixture restores them only after the test) and leak it into later tests.
        SimpleRateThrottle.THROTTLE_RATES = before


def test_one_account_can_be_given_its_own_rate_without_lifting_it_for_others(api, users,
                                                                             settings):
    from django.core.exceptions import ValidationError
    from rest_framework.settings import api_settings
    from rest_framework.throttling import SimpleRateThrottle

    from portal.accounts.models import RateLimit

    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "tokens": "2/hour"}}
    before = SimpleRateThrottle.THROTTLE_RATES
    api_settings.reload()
    SimpleRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        raised = RateLimit(user=users["contributor"], scope="tokens", rate="4/hour",
                           reason="the CI pipeline's account")
        raised.full_clean()
        raised.save()
        contributor, viewer = api("contributor"), api("viewer")
        mine = [contributor.post("/api/v1/tokens/", {"name": f"c{i}"}, format="json")
                .status_code for i in range(5)]
        theirs = [viewer.post("/api/v1/tokens/", {"name": f"v{i}"}, format="json")
                  .status_code for i in range(3)]
        assert mine == [201, 201, 201, 201, 429]
        assert theirs == [201, 201, 429]
    finally:
        SimpleRateThrottle.THROTTLE_RATES = before
    for scope, rate, field in [("tokens", "lots", "rate"), ("tokens", "0/min", "rate"),
                               ("downloads", "5/min", "scope")]:
        with pytest.raises(ValidationError) as refused:
            RateLimit(user=users["viewer"], scope=scope, rate=rate).full_clean()
        assert field in refused.value.message_dict
