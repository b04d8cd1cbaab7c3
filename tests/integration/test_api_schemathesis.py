"""schemathesis against the portal's own OpenAPI schema, in process, as every kind of caller.

For each operation hypothesis generates requests from the schema (valid and invalid
parameters and bodies, real and made-up ids) and every answer is held to the schema:
no server error (5xx), a documented status code, a documented content type and headers,
and a body that matches the documented schema. The world is the permission matrix's (a
project with versions, a rollout, an A/B test, an alert, a webhook), so ids hit real
objects some of the time.

Depth per caller: the coverage phase (boundary values, missing and malformed fields, about
80 % of the requests) runs as the owner and the contributor, the callers that pass the
permission checks and reach the validation and business code; the viewer, approver (the
owner's rights cover approving), outsider and anonymous callers get the fuzzing phase, which
is enough to show that each refusal is documented and well-formed. Every caller still
reaches every operation. Splitting it so took about 9 minutes off the whole suite.

The world is built once for the module (``shared_matrix_world``) and each case runs in a
transaction rolled back to it, with the world's files put back and a cache of its own, so a
case still sees the world as built whatever the cases before it wrote; building it for each
of the 438 cases took half of the module's time.

Not checked: whether invalid requests are refused (``negative_data_rejection``) — the API
is lenient where DRF is (an unknown filter value or a bad ``page_size`` is ignored, not a
400) — and ``positive_data_acceptance``, which counts a 404 for a made-up id against a
well-formed request.
"""

from __future__ import annotations

import pytest
import schemathesis
from django.core.wsgi import get_wsgi_application
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.accounts.services import create_token

# Django's WSGI handler, not portal.wsgi: importing that makes the process refuse pickles
# (it is the web process), and this test process also plays the worker.
application = get_wsgi_application()
# Retraining's operations (decision 67) are held to the schema by test_retraining.py, which
# validates their answers against the generated components, and their refusals by the
# permission matrix: generating cases for them here cost about a minute of the suite.
RETRAINING = "^/api/v1/retraining-"
# MLflow imports and follows (decision 66) reach whatever tracking server a case names (the
# worker runs eagerly here): test_mlflow_import.py drives them against a real one, and the
# permission matrix holds their refusals.
RETRAINING += "|^/api/v1/mlflow-|/versions/import-mlflow/$"
schema = schemathesis.openapi.from_wsgi("/api/schema/", application).exclude(
    path_regex=RETRAINING)
fuzzing_only = schemathesis.openapi.from_wsgi(
    "/api/schema/", application,
    config=SchemathesisConfig.from_dict({"phases": {"coverage": {"enabled": False}}})).exclude(
    path_regex=RETRAINING)
pytestmark = [pytest.mark.integration, pytest.mark.django_db]
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
ROLES = ["anonymous", "viewer", "contributor", "approver", "owner", "outsider"]
DEEP_ROLES = ["contributor", "owner"]
SETTINGS = hypothesis_settings(max_examples=8, deadline=None,
                               suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(autouse=True)
def keep_connection():
    """Like Django's test client: a request must not close the test's connection."""
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(autouse=True)
def world(shared_matrix_world, restore_world_files, fresh_cache):
    """The world as built, its files as it left them, a cache of this case's own."""
    return shared_matrix_world


@pytest.fixture
def tokens(world, settings):
    settings.MODELGATE_ALERTMANAGER_TOKEN = "alertmanager-secret"  # the receiver is on
    users = world["users"]
    return {role: create_token(users[role], "schemathesis", scopes=["read", "write", "approve"])[1]
            for role in ROLES if role != "anonymous"}


def _call(case, role, tokens):
    headers = {"Authorization": f"Token {tokens[role]}"} if role in tokens else {}
    if case.path == "/api/v1/alerts/alertmanager/":
        headers = {"Authorization": "Bearer alertmanager-secret"}
    case.call_and_validate(headers=headers, checks=CHECKS)


@pytest.mark.parametrize("role", DEEP_ROLES)
@schema.parametrize()
@SETTINGS
def test_every_answer_matches_the_schema(case, role, tokens):
    _call(case, role, tokens)


@pytest.mark.parametrize("role", [r for r in ROLES if r not in DEEP_ROLES])
@fuzzing_only.parametrize()
@SETTINGS
def test_every_refusal_matches_the_schema(case, role, tokens):
    _call(case, role, tokens)
