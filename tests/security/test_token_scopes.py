"""Issue 18, item 4: scopes are a ceiling.

A token only creates tokens with scopes it holds (token creation needs a signed-in session
or a token holding every scope asked for), and every API route needs the scope its action
does. The route test walks every URL pattern under /api/v1/ and every method each action
allows, so a route added without a scope decision (``ROUTE_SCOPES``) fails it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from datetime import timedelta

import pytest
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone
from rest_framework.test import APIClient

from portal.accounts.authentication import ApiTokenAuthentication
from portal.accounts.models import ApiToken
from portal.accounts.permissions import TokenScopes
from portal.accounts.services import create_token
from portal.api.permissions import required_scope
from portal.api.urls import ROUTE_SCOPES  # the table, declared next to the routes
from portal.audit.models import AuditEvent
from portal.errors import NotAllowed
from portal.registry import services as registry
from portal.registry.models import Alias
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

API = "api/v1/"
SAFE = {"GET", "HEAD", "OPTIONS"}
ALL = ["read", "write", "approve"]
SCOPE_CODES = {"scope_required", "scope_undeclared"}

# The approver's acts (decisions 8 and 33): written here independently of ROUTE_SCOPES, so
# the two must agree. Every other change needs write; every safe method needs read.
APPROVER_ACTS = {
    ("approval-request", "approve"), ("approval-request", "reject"),
    ("deployment", "promote"), ("deployment", "resume"), ("deployment", "keep"),
    ("experiment", "decide"),
    ("model", "monitoring"),  # thresholds: PATCH (GET is a read)
}
PROTECTED_ALIASES = {"champion"}  # moving or removing it is an approver's act
# Routes that take no API token at all: a password, or Alertmanager's shared secret.
TOKENLESS = {"token-login", "alertmanager", "mlflow-webhook"}  # the last: HMAC-signed
# A value for each URL argument; the alias route is walked for a protected and a plain one.
ARGUMENTS = {"pk": ["999999"], "explanation_id": ["1"], "format": ["json"],
             "alias": ["champion", "challenger"], "member_id": ["1"]}


@dataclass
class Case:
    path: str  # the pattern, as the resolver chain spells it
    name: str  # the URL name
    route: str  # as ROUTE_SCOPES names it: the router's basename, or the URL name
    method: str
    action: str
    kwargs: dict = field(default_factory=dict)
    accepts_tokens: bool = True
    checks_scopes: bool = True

    def __str__(self):
        args = f" {self.kwargs}" if self.kwargs else ""
        return f"{self.method} {self.path}{args} ({self.route}.{self.action})"

    @property
    def expected(self) -> str:
        if self.method in SAFE:
            return "read"
        if (self.route, self.action) == ("model", "alias"):
            return "approve" if self.kwargs.get("alias") in PROTECTED_ALIASES else "write"
        return "approve" if (self.route, self.action) in APPROVER_ACTS else "write"


def api_patterns():
    """Every URL pattern of the project's urlconf under /api/v1/ (the router's and the
    plain views'), with its full path."""
    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                yield from walk(pattern.url_patterns, prefix + str(pattern.pattern))
            else:
                yield prefix + str(pattern.pattern), pattern
    return [(path, p) for path, p in walk(get_resolver().url_patterns, "") if path.startswith(API)]


def methods_of(callback) -> dict[str, str]:
    """HTTP method -> action (a viewset's) or handler (a plain view's), as DRF picks them."""
    actions = getattr(callback, "actions", None)
    if actions is not None:  # a router viewset: DRF adds HEAD for GET and OPTIONS itself
        found = {m.upper(): a for m, a in actions.items()}
        if "GET" in found:
            found.setdefault("HEAD", found["GET"])
        found["OPTIONS"] = "metadata"
        return found
    cls = callback.view_class
    found = {m.upper(): m for m in cls.http_method_names if hasattr(cls, m)}
    if "GET" in found:
        found["HEAD"] = "get"  # Django serves HEAD with get
    return found


def route_cases() -> list[Case]:
    cases = []
    for path, pattern in api_patterns():
        callback = pattern.callback
        cls = callback.cls
        initkwargs = dict(getattr(callback, "initkwargs", {}) or {})
        basename = initkwargs.get("basename")
        route = basename or pattern.name
        arg_names = sorted(pattern.pattern.regex.groupindex)
        unknown = [a for a in arg_names if a not in ARGUMENTS]
        assert not unknown, f"{path}: give ARGUMENTS a sample value for {unknown}"
        variants = [{}]
        for arg in arg_names:
            variants = [{**v, arg: value} for v in variants for value in ARGUMENTS[arg]]
        for method, action in methods_of(callback).items():
            view = cls(**initkwargs)
            view.action = action
            view.request = None
            accepts = any(isinstance(a, ApiTokenAuthentication)
                          for a in view.get_authenticators())
            checks = any(isinstance(p, TokenScopes) for p in view.get_permissions())
            scope_action = action if basename else ("get" if action == "head" else action)
            for kwargs in variants:
                cases.append(Case(path, pattern.name, route, method, scope_action, kwargs,
                                  accepts, checks))
    return cases


def scope_mistakes(cases) -> list[str]:
    wrong = []
    for case in cases:
        if not case.accepts_tokens:
            if case.name not in TOKENLESS:
                wrong.append(f"{case}: takes no API token; add it to TOKENLESS if meant")
            continue
        if not case.checks_scopes:
            wrong.append(f"{case}: takes API tokens but its permissions skip TokenScopes")
            continue
        got = required_scope(case.route, case.action, case.method, case.kwargs)
        if got != case.expected:
            wrong.append(f"{case}: needs {got or 'no decision'!r}, should need "
                         f"{case.expected!r}")
    return wrong


def client_with(user, scopes=None, **kwargs) -> tuple[APIClient, ApiToken]:
    token, key = create_token(user, "scoped", scopes=scopes, **kwargs)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client, token


def code_of(response) -> str | None:
    if "json" not in response.get("Content-Type", ""):
        return None
    body = response.json()
    return body.get("code") if isinstance(body, dict) else None


# Every route -----------------------------------------------------------------------------

def test_every_api_route_needs_the_scope_its_action_needs():
    cases = route_cases()
    paths = {c.path for c in cases}
    assert len(paths) > 80, "the walk should see every router route (and format suffixes)"
    assert {"api/v1/^models/(?P<pk>[0-9]+)/aliases/(?P<alias>[a-z0-9._-]+)/$",
            "api/v1/feedback/", "api/v1/auth/token/"} <= paths
    assert not scope_mistakes(cases), "\n".join(scope_mistakes(cases))
    alias_moves = [c for c in cases if c.route == "model" and c.action == "alias"]
    assert {(c.method, c.kwargs["alias"], required_scope(c.route, c.action, c.method, c.kwargs))
            for c in alias_moves if "format" not in c.kwargs} == {
        ("PUT", "champion", "approve"), ("DELETE", "champion", "approve"),
        ("PUT", "challenger", "write"), ("DELETE", "challenger", "write")}


def test_every_scope_decision_names_a_route_that_exists():
    walked = {(c.route, c.action) for c in route_cases()}
    stale = [(route, action) for route, actions in ROUTE_SCOPES.items() for action in actions
             if (route, action) not in walked]
    assert not stale, f"ROUTE_SCOPES names routes or actions that do not exist: {stale}"


def test_a_route_without_a_scope_decision_fails_the_walk_and_is_refused(users, project, clf,
                                                                         monkeypatch):
    monkeypatch.delitem(ROUTE_SCOPES["model"], "alias")
    monkeypatch.delitem(ROUTE_SCOPES, "audit-event")
    wrong = scope_mistakes(route_cases())
    assert any("(model.alias)" in line and "no decision" in line for line in wrong)
    assert any("(audit-event.list)" in line for line in wrong)
    client, _ = client_with(users["owner"], scopes=ALL)
    answer = client.put(f"/api/v1/models/{clf.pk}/aliases/champion/", {"version": 1},
                        format="json")
    assert answer.status_code == 403 and answer.json()["code"] == "scope_undeclared"
    answer = client.get("/api/v1/audit-events/")
    assert answer.status_code == 403 and answer.json()["code"] == "scope_undeclared"
    client.force_authenticate(users["owner"])  # a session is not limited by scopes
    assert client.get("/api/v1/audit-events/").status_code == 200


def test_every_route_refuses_a_token_without_its_scope_and_admits_one_with_it(users):
    """Real requests through the whole stack, one per route, method and alias kind. Ids
    that do not exist: the scope is checked before any object is looked up, and an
    admitted request changes nothing (404 or a refused body)."""
    owner = users["owner"]
    only = {scope: client_with(owner, scopes=[scope])[0] for scope in ALL}
    without = {scope: client_with(owner, scopes=[s for s in ALL if s != scope])[0]
               for scope in ALL}
    wrong, seen = [], 0
    for case in route_cases():
        if (not case.accepts_tokens or case.method in ("HEAD", "OPTIONS")
                or "format" in case.kwargs):
            continue
        seen += 1
        url = reverse(f"api:{case.name}", kwargs=case.kwargs)
        refused = without[case.expected].generic(case.method, url)
        if refused.status_code != 403 or code_of(refused) != "scope_required":
            wrong.append(f"{case} without {case.expected!r}: {refused.status_code} "
                         f"{code_of(refused)}")
        admitted = only[case.expected].generic(case.method, url)
        if admitted.status_code >= 500 or code_of(admitted) in SCOPE_CODES:
            wrong.append(f"{case} with only {case.expected!r}: {admitted.status_code} "
                         f"{code_of(admitted)}")
    assert seen > 40
    assert not wrong, "\n".join(wrong)


# Moving champion -------------------------------------------------------------------------

@pytest.fixture
def ready_version(users, clf):
    return registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(1)), metadata()).pk)


def test_moving_champion_needs_the_approve_scope(users, clf, ready_version):
    url = f"/api/v1/models/{clf.pk}/aliases/champion/"
    read_write, _ = client_with(users["approver"], scopes=["read", "write"])
    answer = read_write.put(url, {"version": ready_version.number}, format="json")
    assert answer.status_code == 403
    assert answer.json()["code"] == "scope_required" and "'approve'" in answer.json()["detail"]
    assert not Alias.objects.filter(model=clf, name="champion").exists()

    # Other aliases are a contributor's, so write is enough for them.
    answer = read_write.put(f"/api/v1/models/{clf.pk}/aliases/challenger/",
                            {"version": ready_version.number}, format="json")
    assert answer.status_code == 200

    approving, _ = client_with(users["approver"], scopes=["read", "write", "approve"])
    answer = approving.put(url, {"version": ready_version.number}, format="json")
    assert answer.status_code == 200 and answer.json()["version"] == ready_version.number
    assert Alias.objects.get(model=clf, name="champion").version == ready_version

    assert read_write.delete(url).status_code == 403
    assert Alias.objects.filter(model=clf, name="champion").exists()
    # The scope never widens the role: a contributor's approve token still cannot.
    contributor, _ = client_with(users["contributor"], scopes=ALL)
    answer = contributor.delete(url)
    assert answer.status_code == 403 and answer.json()["code"] == "role_required"


# Minting tokens --------------------------------------------------------------------------

def test_a_write_token_cannot_mint_an_approve_token(users):
    """The attack of issue 18: a write token asked for read, write and approve (201)."""
    user = users["contributor"]
    client, parent = client_with(user, scopes=["read", "write"])
    before = ApiToken.objects.count()
    answer = client.post("/api/v1/tokens/", {"name": "wider", "scopes": ALL}, format="json")
    assert answer.status_code == 403
    body = answer.json()
    assert body["code"] == "scope_ceiling" and body["field"] == "scopes"
    assert "approve" in body["detail"] and "holds read, write" in body["detail"]
    answer = client.post("/api/v1/tokens/", {"name": "other", "scopes": ["approve"]},
                         format="json")
    assert answer.status_code == 403 and answer.json()["code"] == "scope_ceiling"
    assert ApiToken.objects.count() == before

    # Within the ceiling it works, and the audit says which token made it.
    answer = client.post("/api/v1/tokens/", {"name": "narrower", "scopes": ["read"]},
                         format="json")
    assert answer.status_code == 201 and answer.json()["scopes"] == ["read"]
    answer = client.post("/api/v1/tokens/", {"name": "same"}, format="json")
    assert answer.status_code == 201 and answer.json()["scopes"] == ["read", "write"]
    event = AuditEvent.objects.filter(action="token.create", object_id=str(answer.json()["id"]))
    assert event.get().changes["created_with"] == parent.prefix


def test_token_creation_needs_a_session_or_a_token_holding_every_scope(users):
    user = users["approver"]
    write_only, _ = client_with(user, scopes=["write"])
    # The default scopes are read and write: a write-only token cannot give read.
    answer = write_only.post("/api/v1/tokens/", {"name": "defaults"}, format="json")
    assert answer.status_code == 403 and answer.json()["code"] == "scope_ceiling"
    read_only, _ = client_with(user, scopes=["read"])
    answer = read_only.post("/api/v1/tokens/", {"name": "r", "scopes": ["read"]},
                            format="json")
    assert answer.status_code == 403 and answer.json()["code"] == "scope_required"

    full, _ = client_with(user, scopes=ALL)
    answer = full.post("/api/v1/tokens/", {"name": "approver ci", "scopes": ALL},
                       format="json")
    assert answer.status_code == 201 and answer.json()["scopes"] == ALL

    session = APIClient()
    session.force_login(user)
    answer = session.post("/api/v1/tokens/", {"name": "from the browser", "scopes": ALL},
                          format="json")
    assert answer.status_code == 201 and answer.json()["scopes"] == ALL

    parent = ApiToken.objects.get(name="scoped", scopes=["write"])
    with pytest.raises(NotAllowed) as refused:
        create_token(user, "direct", scopes=["write", "approve"], via=parent)
    assert refused.value.code == "scope_ceiling"


def test_a_token_cannot_mint_a_token_that_outlives_it(users):
    user = users["contributor"]
    client, parent = client_with(user, expires_at=timezone.now() + timedelta(days=1))
    answer = client.post("/api/v1/tokens/", {"name": "child"}, format="json")
    assert answer.status_code == 201
    child = ApiToken.objects.get(pk=answer.json()["id"])
    assert child.expires_at == parent.expires_at
    later = (timezone.now() + timedelta(days=30)).isoformat()
    answer = client.post("/api/v1/tokens/", {"name": "longer", "expires_at": later},
                         format="json")
    assert answer.status_code == 403
    assert answer.json()["code"] == "expiry_ceiling" and answer.json()["field"] == "expires_at"
