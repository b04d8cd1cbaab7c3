"""Archiving projects, models, datasets and environments (decision 58): hidden from lists,
readable by id, refusing anything new, refused while work is in progress, restored by an
owner, audited; and races that end with one winner and nothing half-done."""

from __future__ import annotations

import io
import threading
import time

import pytest
from django.db import connection

from ops import rollout
from portal.audit.models import AuditEvent
from portal.registry import services as registry
from portal.registry.models import Dataset, RegisteredModel
from portal.releases import archive as releases_archive
from portal.releases import deployments
from portal.releases import services as releases
from portal.releases.models import ApprovalRequest, Deployment, Environment
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration]

CSV = b"mean radius,mean texture,mean perimeter,mean area,mean smoothness,target\n" \
      b"1,2,3,4,5,0\n2,3,4,5,6,1\n"


def ready_version(users, model, seed):
    return registry.validate_version(registry.register_version(
        users["contributor"], model, io.BytesIO(random_classifier_bytes(seed)), metadata()).pk)


def upload(users, project, name="train", content=CSV):
    return registry.upload_dataset(users["contributor"], project, name=name,
                                   file=io.BytesIO(content), filename=f"{name}.csv",
                                   target="target")


@pytest.fixture
def staging(users, project):
    return releases.create_environment(users["owner"], project, name="staging", backend="local")


def rollout_in_progress(environment, model, candidate, stable):
    spec = deployments._spec("canary", {}, model.name, candidate, stable)
    state = rollout.RolloutState(status=rollout.Status.PROGRESSING, generation=2,
                                 base_generation=1, step_started_at=time.time())
    return Deployment.objects.create(
        environment=environment, model=model, candidate=candidate, stable=stable,
        endpoint=model.name, strategy="canary", spec=spec.to_dict(), state=state.to_dict(),
        status="progressing")


def actions_on(obj):
    return list(AuditEvent.objects.filter(object_type=obj._meta.label_lower,
                                          object_id=str(obj.pk)).order_by("id")
                .values_list("action", flat=True))


# -- lists, reads, roles, audit ---------------------------------------------------------------

def test_an_archived_model_leaves_lists_stays_readable_and_an_owner_restores_it(api, clf):
    answer = api("contributor").post(f"/api/v1/models/{clf.pk}/archive/")
    assert answer.status_code == 200, answer.content
    assert answer.json()["archived_at"] and answer.json()["archived_by"] == "carlos"
    listed = [m["id"] for m in api("viewer").get("/api/v1/models/").json()["results"]]
    assert clf.pk not in listed
    archived = api("viewer").get("/api/v1/models/?archived=true").json()["results"]
    assert [m["id"] for m in archived] == [clf.pk]
    assert api("viewer").get(f"/api/v1/models/{clf.pk}/").status_code == 200
    refused = api("contributor").post(f"/api/v1/models/{clf.pk}/restore/")
    assert refused.status_code == 403 and refused.json()["code"] == "role_required"
    restored = api("owner").post(f"/api/v1/models/{clf.pk}/restore/")
    assert restored.status_code == 200 and restored.json()["archived_at"] is None
    assert clf.pk in [m["id"] for m in api("viewer").get("/api/v1/models/").json()["results"]]
    assert actions_on(clf)[-2:] == ["model.archive", "model.restore"]
    assert api("viewer").get("/api/v1/models/?archived=maybe").status_code == 400


def test_who_may_archive_each_kind(api, users, project, clf, staging):
    dataset = upload(users, project)
    cases = [(f"/api/v1/projects/{project.pk}/archive/", "approver", 403),
             (f"/api/v1/environments/{staging.pk}/archive/", "approver", 403),
             (f"/api/v1/models/{clf.pk}/archive/", "viewer", 403),
             (f"/api/v1/datasets/{dataset.pk}/archive/", "viewer", 403),
             (f"/api/v1/datasets/{dataset.pk}/archive/", "outsider", 404),
             (f"/api/v1/datasets/{dataset.pk}/archive/", "contributor", 200),
             (f"/api/v1/environments/{staging.pk}/archive/", "owner", 200),
             (f"/api/v1/projects/{project.pk}/archive/", "owner", 200),
             (f"/api/v1/projects/{project.pk}/restore/", "approver", 403),
             (f"/api/v1/projects/{project.pk}/restore/", "owner", 200)]
    for path, who, status in cases:
        assert api(who).post(path).status_code == status, (path, who)
    assert actions_on(dataset) == ["dataset.create", "dataset.archive"]
    assert actions_on(staging)[-1] == "environment.archive"


def test_a_project_archive_hides_what_is_in_it(api, users, project, clf, staging):
    dataset = upload(users, project)
    assert api("owner").post(f"/api/v1/projects/{project.pk}/archive/").status_code == 200
    for kind in ("projects", "models", "datasets", "environments"):
        live = api("viewer").get(f"/api/v1/{kind}/").json()["results"]
        gone = api("viewer").get(f"/api/v1/{kind}/?archived=true").json()["results"]
        assert live == [] and len(gone) == 1, kind
    assert api("viewer").get(f"/api/v1/datasets/{dataset.pk}/").status_code == 200
    assert RegisteredModel.objects.get(pk=clf.pk).archived_at is None  # nothing cascades


# -- nothing new goes into something archived --------------------------------------------------

def test_nothing_new_goes_into_an_archived_object(api, users, project, clf, staging):
    version = ready_version(users, clf, 1)
    registry.archive_model(users["contributor"], clf)
    answer = api("contributor").upload(clf.pk, random_classifier_bytes(2), metadata())
    assert answer.status_code == 409 and answer.json()["code"] == "archived"
    request = api("contributor").post("/api/v1/approval-requests/", {
        "version": version.pk, "environment": staging.pk, "strategy": "direct"}, format="json")
    assert request.status_code == 409 and request.json()["code"] == "archived"
    assert "an owner may restore it" in request.json()["detail"]
    registry.restore_model(users["owner"], clf)

    dataset = upload(users, project)
    registry.archive_dataset(users["contributor"], dataset)
    named = api("contributor").upload(clf.pk, random_classifier_bytes(3),
                                      metadata(dataset=dataset.pk))
    assert named.status_code == 409 and named.json()["field"] == "dataset"

    releases_archive.archive_environment(users["owner"], staging)
    into = api("contributor").post("/api/v1/approval-requests/", {
        "version": version.pk, "environment": staging.pk, "strategy": "direct"}, format="json")
    assert into.status_code == 409 and into.json()["code"] == "archived"

    registry.archive_project(users["owner"], project)
    for path, body in (("/api/v1/models/", {"project": project.pk, "name": "m2",
                                            "task": "classification"}),
                       ("/api/v1/environments/", {"project": project.pk, "name": "qa",
                                                  "backend": "local"})):
        refused = api("owner").post(path, body, format="json")
        assert refused.status_code == 409 and refused.json()["code"] == "archived", path
    csv = io.BytesIO(CSV)
    csv.name = "d.csv"
    refused = api("contributor").post("/api/v1/datasets/", {
        "project": project.pk, "name": "d2", "target": "target", "file": csv},
        format="multipart")
    assert refused.status_code == 409 and refused.json()["code"] == "archived"
    assert ApprovalRequest.objects.count() == 0 and Dataset.objects.count() == 1


# -- refused while work is in progress ------------------------------------------------------

def test_archiving_is_refused_while_a_rollout_runs_or_a_request_is_open(api, users, project,
                                                                        clf, staging):
    v1, v2 = ready_version(users, clf, 1), ready_version(users, clf, 2)
    deployment = rollout_in_progress(staging, clf, v2, v1)
    for path in (f"/api/v1/environments/{staging.pk}/archive/",
                 f"/api/v1/models/{clf.pk}/archive/", f"/api/v1/projects/{project.pk}/archive/"):
        answer = api("owner").post(path)
        assert answer.status_code == 409 and answer.json()["code"] == "rollout_in_progress", path
        assert f"deployment {deployment.pk}" in answer.json()["detail"]
    Deployment.objects.filter(pk=deployment.pk).update(status="succeeded")
    request = releases.request_approval(users["contributor"], v2, staging, strategy="direct")
    answer = api("owner").post(f"/api/v1/models/{clf.pk}/archive/")
    assert answer.status_code == 409 and answer.json()["code"] == "open_release_request"
    # Approved but not started yet (the start task delayed): still busy, or a restore would
    # start it later on an old approval.
    from portal.releases.models import ApprovalRequest
    ApprovalRequest.objects.filter(pk=request.pk).update(status="approved")
    answer = api("owner").post(f"/api/v1/models/{clf.pk}/archive/")
    assert answer.status_code == 409 and answer.json()["code"] == "open_release_request"
    ApprovalRequest.objects.filter(pk=request.pk).update(status="open")
    releases.cancel_request(users["contributor"], request)
    assert api("owner").post(f"/api/v1/models/{clf.pk}/archive/").status_code == 200
    assert api("owner").post(f"/api/v1/environments/{staging.pk}/archive/").status_code == 200
    # An endpoint that serves keeps serving: nothing is torn down.
    assert Deployment.objects.get(pk=deployment.pk).status == "succeeded"


# -- races ------------------------------------------------------------------------------

def in_threads(*calls):
    """Run each call in a thread of its own (its own connection), all started at once;
    their results or exceptions, in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as e:  # noqa: BLE001 - the answer is what the test looks at
            results[i] = e
        finally:
            connection.close()
    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


@pytest.mark.django_db(transaction=True)
def test_two_archives_at_once_both_succeed_and_one_is_recorded(users, project, clf):
    results = in_threads(lambda: registry.archive_model(users["contributor"], clf),
                         lambda: registry.archive_model(users["owner"], clf))
    assert all(isinstance(r, RegisteredModel) and r.archived_at for r in results), results
    assert actions_on(clf).count("model.archive") == 1
    clf.refresh_from_db()
    assert clf.archived_by in (users["contributor"], users["owner"])


class Paused:
    """Holds a thread at a point (inside its transaction, after its row locks) until
    released, so the other side of a race provably meets the locks."""

    def __init__(self):
        self.reached, self.go = threading.Event(), threading.Event()

    def __call__(self, *args, **kwargs):
        self.reached.set()
        assert self.go.wait(20)


@pytest.mark.django_db(transaction=True)
def test_archive_first_then_a_release_request_is_refused_whole(users, project, clf, staging):
    version = ready_version(users, clf, 1)
    pause = Paused()
    registry.refuse_archive_when("model", pause)  # runs under the model's row lock
    try:
        def archive():
            return registry.archive_model(users["contributor"], clf)

        def request():
            assert pause.reached.wait(20)
            threading.Timer(0.5, pause.go.set).start()  # the request waits on the lock
            return releases.request_approval(users["contributor"], version, staging,
                                             strategy="direct")
        archived, requested = in_threads(archive, request)
    finally:
        registry.archive._REFUSALS["model"].remove(pause)
    assert isinstance(archived, RegisteredModel) and archived.archived_at
    assert getattr(requested, "code", None) == "archived", requested
    assert ApprovalRequest.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_a_release_request_first_then_the_archive_is_refused_whole(users, project, clf,
                                                                  staging, monkeypatch):
    version = ready_version(users, clf, 1)
    pause = Paused()
    original = releases.lock_open

    def lock_then_pause(*objects):
        original(*objects)
        pause()
    monkeypatch.setattr(releases, "lock_open", lock_then_pause)

    def request():
        return releases.request_approval(users["contributor"], version, staging,
                                         strategy="direct")

    def archive():
        assert pause.reached.wait(20)
        threading.Timer(0.5, pause.go.set).start()  # the archive waits on the lock
        return registry.archive_model(users["owner"], clf)
    requested, archived = in_threads(request, archive)
    assert isinstance(requested, ApprovalRequest), requested
    assert getattr(archived, "code", None) == "open_release_request", archived
    clf.refresh_from_db()
    assert clf.archived_at is None and "model.archive" not in actions_on(clf)


# -- pages -----------------------------------------------------------------------------

def test_pages_archive_with_a_confirmation_and_list_archived_apart(client, users, project,
                                                                   clf, staging):
    client.force_login(users["owner"])
    page = client.get(clf.get_absolute_url()).content.decode()
    assert 'id="archive-action"' in page and "Yes, archive it" in page
    answer = client.post(f"/p/{project.slug}/m/{clf.name}/archive/")
    assert answer.status_code == 302
    link = f'href="{clf.get_absolute_url()}"'
    assert link not in client.get("/models/").content.decode()
    assert link in client.get("/models/?archived=1").content.decode()
    project_page = client.get(project.get_absolute_url()).content.decode()
    assert 'id="archived"' in project_page and clf.name in project_page
    model_page = client.get(clf.get_absolute_url()).content.decode()
    assert 'id="archived-notice"' in model_page and "Yes, restore it" in model_page
    client.post(f"/p/{project.slug}/environments/{staging.name}/archive/")
    environments = client.get(f"/p/{project.slug}/environments/").content.decode()
    assert 'id="archived"' in environments
    assert Environment.objects.get(pk=staging.pk).archived_at is not None
    client.post(f"/p/{project.slug}/archive/")
    link = f'href="{project.get_absolute_url()}"'
    assert link not in client.get("/projects/").content.decode()
    assert link in client.get("/projects/?archived=1").content.decode()
    client.post(f"/p/{project.slug}/restore/")
    client.post(f"/p/{project.slug}/m/{clf.name}/restore/")
    assert f'href="{clf.get_absolute_url()}"' in client.get("/models/").content.decode()


def test_a_contributor_sees_no_restore_button(client, users, clf):
    registry.archive_model(users["contributor"], clf)
    client.force_login(users["contributor"])
    page = client.get(clf.get_absolute_url()).content.decode()
    assert 'id="archived-notice"' in page and "Yes, restore it" not in page
    assert "An owner of the project may restore it" in page


def test_the_dashboard_leaves_out_what_is_archived(client, users, clf):
    from portal.registry.services import archive

    client.force_login(users["viewer"])
    assert client.get("/").context["model_count"] == 1
    archive.archive_model(users["contributor"], clf)
    page = client.get("/")
    assert page.context["model_count"] == 0 and clf.name not in [
        m.name for m in page.context["models"]]
