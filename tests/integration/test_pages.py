"""Server-rendered pages: who sees what, and what the forms do with bad input."""

import io
import re

import pytest
from django.test import Client

from portal.audit.models import AuditEvent
from tests.portal_fixtures import metadata

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser_for(users):
    def make(who):
        client = Client()
        client.force_login(users[who])
        return client
    return make


@pytest.fixture
def version(api, clf, skops_bytes):
    return api("contributor").upload(clf.pk, skops_bytes, metadata(label="1.0.0")).json()


def test_anonymous_visitors_are_sent_to_sign_in(db):
    response = Client().get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.parametrize("who, status", [("viewer", 200), ("owner", 200), ("staff", 200),
                                         ("outsider", 404)])
def test_project_model_and_version_pages_by_role(browser_for, clf, version, who, status):
    client = browser_for(who)
    for url in ("/p/clinical-ml/", "/p/clinical-ml/m/tumor-classifier/",
                "/p/clinical-ml/m/tumor-classifier/v/1/"):
        response = client.get(url)
        assert response.status_code == status, url
    if status == 200:
        page = client.get("/p/clinical-ml/m/tumor-classifier/v/1/").content.decode()
        assert "roc_auc" in page and version["artifact"]["sha256"] in page
        assert 'data-chart="lineage-graph"' in page and "version.create" in page


@pytest.mark.parametrize("url", ["/p/clinical-ml/settings/", "/p/clinical-ml/models/new/",
                                 "/p/clinical-ml/m/tumor-classifier/versions/new/",
                                 "/p/clinical-ml/datasets/new/"])
def test_viewer_is_refused_write_pages_with_a_reason(browser_for, clf, url):
    response = browser_for("viewer").get(url)
    assert response.status_code == 403
    assert b"you are viewer" in response.content


def test_searches_filter_lists(browser_for, clf):
    client = browser_for("viewer")
    assert b"tumor-classifier" in client.get("/models/?q=tumor").content
    assert b"No model matches" in client.get("/models/?q=zzz").content
    assert b"Clinical ML" in client.get("/projects/?q=clinical").content


def test_create_project_and_model_from_the_browser(browser_for):
    client = browser_for("outsider")
    response = client.post("/projects/new/", {"name": "Fraud", "slug": "fraud"})
    assert response.status_code == 302 and response["Location"] == "/p/fraud/"
    response = client.post("/p/fraud/models/new/", {"name": "BAD NAME", "task": "regression"})
    assert response.status_code == 200 and b"Use lowercase letters" in response.content
    response = client.post("/p/fraud/models/new/", {"name": "amount", "task": "regression"})
    assert response.status_code == 302


def test_owner_manages_members_in_the_browser(browser_for, project, users):
    client = browser_for("owner")
    page = client.post("/p/clinical-ml/invitations/", {"username": "oscar", "role": "viewer"},
                       follow=True).content.decode()
    assert "If that account exists, it has been invited." in page
    assert 'id="open-invitations"' in page and ">oscar</td>" in page
    assert not project.memberships.filter(user=users["outsider"]).exists()
    invitee = browser_for("outsider")
    listed = invitee.get("/invitations/").content.decode()
    assert "Clinical ML" in listed and "Accept" in listed
    invitation = users["outsider"].invitations.get()
    answer = invitee.post(f"/invitations/{invitation.pk}/accept/", follow=True)
    assert b"You are now viewer of Clinical ML" in answer.content
    membership = project.memberships.get(user=users["outsider"])
    assert membership.role == "viewer"
    client.post(f"/members/{membership.pk}/", {"role": "contributor"})
    membership.refresh_from_db()
    assert membership.role == "contributor"
    assert AuditEvent.objects.filter(action="membership.update", via="ui").exists()
    response = browser_for("viewer").post(f"/members/{membership.pk}/", {"remove": "1"},
                                          follow=True)
    assert b"you need the owner role" in response.content
    assert project.memberships.filter(pk=membership.pk).exists()
    # The owner's Remove asks why, on the server too: no reason, no removal.
    response = client.post(f"/members/{membership.pk}/", {"remove": "1", "comment": " "},
                           follow=True)
    assert b"Say why they are removed" in response.content
    assert project.memberships.filter(pk=membership.pk).exists()
    client.post(f"/members/{membership.pk}/", {"remove": "1", "comment": "left the team"})
    assert not project.memberships.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.get(action="membership.delete").changes["comment"] == \
        "left the team"


def test_token_page_shows_a_new_key_once_and_revokes(browser_for, users):
    client = browser_for("viewer")
    page = client.post("/tokens/", {"name": "notebook"}).content.decode()
    token = users["viewer"].api_tokens.get(name="notebook")
    assert "copy it now" in page and token.prefix in page
    assert "copy it now" not in client.get("/tokens/").content.decode()
    client.post(f"/tokens/{token.pk}/revoke/")
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_alias_form_refuses_champion_for_a_contributor(browser_for, clf, version):
    response = browser_for("contributor").post(
        "/p/clinical-ml/m/tumor-classifier/aliases/", {"name": "champion",
                                                       "version": version["id"]}, follow=True)
    assert b"you need the approver role" in response.content
    approver = browser_for("approver")
    response = approver.post("/p/clinical-ml/m/tumor-classifier/aliases/",
                             {"name": "champion", "version": version["id"]}, follow=True)
    assert b"Point <span class=\"badge alias\">champion</span> at v1 (1.0.0)?" in response.content
    assert not clf.aliases.exists()  # a confirmation, with the reason, comes first
    response = approver.post("/p/clinical-ml/m/tumor-classifier/aliases/", {
        "name": "champion", "version": version["id"], "confirmed": "on", "comment": ""})
    assert b"Say why it moves" in response.content and not clf.aliases.exists()
    response = approver.post("/p/clinical-ml/m/tumor-classifier/aliases/", {
        "name": "champion", "version": version["id"], "confirmed": "on",
        "comment": "validated on the new data"}, follow=True)
    assert b"champion now points at v1" in response.content


def test_confirming_an_alias_move_refuses_when_it_moved_since_the_page(users, clf, version):
    """The confirmation page showed "champion: v1 → v3"; someone moved it to v2 meanwhile:
    confirming must not silently replace v2, a move the person never saw."""
    from portal.registry import services
    from portal.registry.models import Alias, ModelVersion
    from tests.portal_fixtures import random_classifier_bytes

    first = ModelVersion.objects.get(pk=version["id"])
    others = [services.validate_version(services.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(seed)), metadata()).pk)
        for seed in (2, 3)]
    services.set_alias(users["approver"], clf, "champion", first)
    client = Client()
    client.force_login(users["approver"])
    url = "/p/clinical-ml/m/tumor-classifier/aliases/"
    page = client.post(url, {"name": "champion", "version": others[1].pk}).content.decode()
    shown = re.search(r'name="current" value="(\d*)"', page).group(1)
    assert shown == str(first.pk)
    services.set_alias(users["owner"], clf, "champion", others[0])  # moved meanwhile
    answer = client.post(url, {"name": "champion", "version": others[1].pk, "confirmed": "on",
                               "current": shown, "comment": "v3 beats v1"}, follow=True)
    assert b"moved to v2 since you were shown it" in answer.content
    assert Alias.objects.get(model=clf, name="champion").version_id == others[0].pk
    client.post(url, {"name": "champion", "version": others[1].pk, "confirmed": "on",
                      "current": str(others[0].pk), "comment": "v3 beats v2"})
    assert Alias.objects.get(model=clf, name="champion").version_id == others[1].pk


def test_admin_changes_are_audited(users, project):
    client = Client()
    users["staff"].is_superuser = True
    users["staff"].save()
    client.force_login(users["staff"])
    response = client.post(f"/admin/registry/project/{project.pk}/change/", {
        "name": "Clinical ML (renamed)", "slug": "clinical-ml", "description": "",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0"})
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(action="project.update")
    assert event.via == "admin" and event.changes["name"]["to"] == "Clinical ML (renamed)"


def test_the_dashboard_costs_the_same_queries_however_many_rows_it_shows(browser_for, users,
                                                                        project, clf):
    """Its lists read only the columns they show; a column left out would cost a query
    per row (Django loads a deferred column on first use), which this catches."""
    import io
    import time

    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from ops import rollout
    from portal.monitoring.models import Alert
    from portal.registry import services as registry
    from portal.releases import deployments
    from portal.releases import services as releases
    from portal.releases.models import Deployment
    from tests.portal_fixtures import random_classifier_bytes

    owner, contributor = users["owner"], users["contributor"]
    environment = releases.create_environment(owner, project, name="production")
    seeds = iter(range(1, 100))

    def add_rows(n):
        model = registry.create_model(contributor, project, name=f"model-{next(seeds)}",
                                      task="classification")
        for target in (clf, model):
            for _ in range(n):
                pending = registry.register_version(  # not validated: needs attention
                    contributor, target, io.BytesIO(random_classifier_bytes(next(seeds))),
                    metadata())
                ready = registry.validate_version(registry.register_version(
                    contributor, target, io.BytesIO(random_classifier_bytes(next(seeds))),
                    metadata()).pk)
                registry.set_alias(owner, target, f"alias-{pending.pk}", ready)
                releases.request_approval(contributor, ready, environment, strategy="direct")
                spec = deployments._spec("direct", {}, target.name, ready, None)
                state = rollout.RolloutState(status=rollout.Status.PROGRESSING, generation=2,
                                             base_generation=1, step_started_at=time.time())
                Deployment.objects.create(environment=environment, model=target,
                                          candidate=ready, endpoint=target.name,
                                          strategy="direct", spec=spec.to_dict(),
                                          state=state.to_dict(), status="progressing")
                now = timezone.now()
                Alert.objects.create(fingerprint=f"{pending.pk:064d}", name="ErrorRateHigh",
                                     severity="warning", state="firing", source="prometheus",
                                     project=project, model=target, environment=environment,
                                     endpoint=target.name, starts_at=now, last_seen_at=now,
                                     acknowledged_by=owner, acknowledged_at=now)

    browser = browser_for("viewer")
    counts = []
    for n in (1, 3):
        add_rows(n)
        with CaptureQueriesContext(connection) as queries:
            page = browser.get("/").content.decode()
        counts.append(len(queries.captured_queries))
        for section in ('id="firing-alerts"', 'id="open-requests"', 'id="active-rollouts"',
                        "Needs attention", "Latest versions", "→ v"):
            assert section in page, section
    assert counts[0] == counts[1], counts


def test_the_model_page_costs_the_same_queries_however_many_versions_it_lists(
        browser_for, users, project, clf, cancer_frame):
    """Its table reads only the columns it shows (see the dashboard's test): versions with
    a parent (all but the first), a dataset, an alias and metrics: two, then six."""
    import io

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from portal.registry import services as registry
    from tests.portal_fixtures import random_classifier_bytes

    contributor = users["contributor"]
    dataset = registry.upload_dataset(contributor, project, name="train",
                                      file=io.BytesIO(cancer_frame.to_csv().encode()),
                                      filename="train.csv", target="target")
    seeds = iter(range(1, 100))
    parent = None
    browser = browser_for("viewer")
    counts = []
    for n in (2, 4):
        for _ in range(n):
            version = registry.validate_version(registry.register_version(
                contributor, clf, io.BytesIO(random_classifier_bytes(next(seeds))),
                metadata(dataset=dataset.pk, **({"parent": parent.number} if parent else {})),
            ).pk)
            registry.set_alias(contributor, clf, f"alias-{version.number}", version)
            parent = version
        with CaptureQueriesContext(connection) as queries:
            page = browser.get(f"/p/{project.slug}/m/{clf.name}/").content.decode()
        counts.append(len(queries.captured_queries))
        assert f"alias-{parent.number}" in page and ">train</a>" in page
        assert "0.97" in page  # a metric column
        if parent.number > 1:
            assert f"<td>v{parent.number - 1}</td>" in page  # its parent
    assert counts[0] == counts[1], counts


def test_the_upload_form_takes_class_names_or_the_parents(clf, version):
    from portal.registry.forms import VersionForm
    from portal.registry.models import ModelVersion

    def form(**fields):
        made = VersionForm({"schema_from": "auto", **fields}, model=clf)
        made.is_valid()
        return made

    bad = form(classes="0 malignant")
    assert "not value=name" in " ".join(bad.errors.get("classes", []))
    named = form(classes="0=malignant, 1=benign")
    assert named.cleaned_data["classes"] == {"0": "malignant", "1": "benign"}
    parent = ModelVersion.objects.get(pk=version["id"])
    ModelVersion.objects.filter(pk=parent.pk).update(  # as if declared at its upload
        output_schema={**(parent.output_schema or {}), "classes": {"1": "benign"}})
    inherited = form(parent=parent.pk)
    assert "classes" not in inherited.errors
    assert inherited.metadata()["classes"] == {"1": "benign"}
