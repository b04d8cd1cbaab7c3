"""Multi-model endpoints in the portal (decision 68): owners add and remove models through
the API, audited; a model over the budget is refused; unready members are named in the
catalog; two owners changing one endpoint at once get distinct generations; the worker's
apply starts a real local server that answers for the members and 404s for the rest."""

from __future__ import annotations

import io
import threading
import time

import pytest
import requests
from django.db import connection

from ops.backends.multimodel import get_multimodel_backend
from portal.audit.models import AuditEvent
from portal.registry import services as registry
from portal.registry.models import ModelVersion
from portal.registry.services.aliases import set_alias
from portal.releases import multimodel
from portal.releases import services as releases
from portal.releases.models import MultiModelEndpoint
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import local_target, metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration]
ROW = [[14.0, 20.0, 90.0, 600.0, 0.1]]


def ready_version(users, model, seed):
    return registry.validate_version(registry.register_version(
        users["contributor"], model, io.BytesIO(random_classifier_bytes(seed)), metadata()).pk)


def actions_on(obj):
    return list(AuditEvent.objects.filter(object_type=obj._meta.label_lower,
                                          object_id=str(obj.pk)).order_by("id")
                .values_list("action", flat=True))


@pytest.fixture
def staging(users, project, settings):
    local_target(settings, free_port())
    return releases.create_environment(users["owner"], project, name="staging",
                                       backend="local")


def pending_version(users, model, seed):
    return registry.register_version(users["contributor"], model,
                                     io.BytesIO(random_classifier_bytes(seed)), metadata())


@pytest.fixture
def queued(task_queue):
    """Nothing queued runs (validations' follow-ups, applies): each test runs what it needs."""
    return task_queue.hold()


def test_owners_add_and_remove_models_through_the_api_and_it_is_audited(
        api, users, clf, staging, queued):
    version = ready_version(users, clf, 1)
    set_alias(users["approver"], clf, "champion", version)
    owner = api("owner")
    created = owner.post("/api/v1/multimodel-endpoints/", {
        "environment": staging.pk, "name": "tenants", "memory_budget_mb": 64}, format="json")
    assert created.status_code == 201, created.json()
    url = f"/api/v1/multimodel-endpoints/{created.json()['id']}/"
    refused = api("contributor").post(f"{url}members/", {"model": clf.pk, "alias": "champion"},
                                      format="json")
    assert refused.status_code == 403
    added = owner.post(f"{url}members/", {"model": clf.pk, "alias": "champion"}, format="json")
    assert added.status_code == 201, added.json()
    assert added.json()["memory_bytes"] > version.artifact_size
    twice = owner.post(f"{url}members/", {"model": clf.pk, "version": version.pk},
                       format="json")
    assert twice.status_code == 409
    shown = api("viewer").get(url).json()
    assert [m["model_name"] for m in shown["members"]] == [clf.name]
    assert shown["generation"] == 2
    assert owner.delete(f"{url}members/{added.json()['id']}/").status_code == 204
    assert api("outsider").get(url).status_code == 404
    endpoint = MultiModelEndpoint.objects.get(pk=created.json()["id"])
    assert endpoint.generation == 3
    assert actions_on(endpoint) == ["multimodel.create", "multimodel.member_add",
                                    "multimodel.member_remove"]
    assert len(queued.args_of(multimodel.APPLY_TASK)) == 3


def test_a_model_that_cannot_fit_the_budget_is_refused_when_added(users, clf, staging, queued):
    version = pending_version(users, clf, 2)
    ModelVersion.objects.filter(pk=version.pk).update(artifact_size=600 * 1024)
    version.refresh_from_db()
    endpoint = multimodel.create_endpoint(users["owner"], staging, name="small",
                                          memory_budget_mb=1)
    with pytest.raises(multimodel.ValidationFailed, match="whole memory budget is 1 MiB") as e:
        multimodel.add_member(users["owner"], endpoint, clf, version=version)
    assert e.value.code == "over_budget"
    endpoint.refresh_from_db()
    assert endpoint.members.count() == 0 and endpoint.generation == 1


def test_unready_members_are_named_in_the_catalog(users, project, clf, staging, queued):
    ready = ready_version(users, clf, 3)
    pending_model = registry.create_model(users["contributor"], project, name="late-model",
                                          task="classification")
    pending = pending_version(users, pending_model, 4)
    endpoint = multimodel.create_endpoint(users["owner"], staging, name="mixed",
                                          memory_budget_mb=64)
    multimodel.add_member(users["owner"], endpoint, clf, version=ready)
    multimodel.add_member(users["owner"], endpoint, pending_model, version=pending)
    catalog = multimodel.build_catalog(endpoint)
    assert list(catalog.models) == [clf.name]
    assert "validating" in catalog.unready["late-model"]
    assert catalog.endpoint == f"mme-mixed-env-{staging.pk}" and catalog.generation == 3
    # A version that no longer fits (an alias moved to a bigger one, say) is not served.
    ModelVersion.objects.filter(pk=ready.pk).update(artifact_size=40 * 1024 * 1024)
    catalog = multimodel.build_catalog(endpoint)
    assert not catalog.models
    assert "more than the endpoint's budget of 64 MiB" in catalog.unready[clf.name]


@pytest.mark.django_db(transaction=True)
def test_two_owners_adding_at_once_get_distinct_generations(users, project, staging, queued):
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; the row lock is PostgreSQL's to prove")
    models = [registry.create_model(users["contributor"], project, name=f"tenant-{i}",
                                    task="classification") for i in range(3)]
    versions = [pending_version(users, m, 10 + i) for i, m in enumerate(models)]
    endpoint = multimodel.create_endpoint(users["owner"], staging, name="race",
                                          memory_budget_mb=64)
    barrier = threading.Barrier(len(models))
    errors = []

    def add(model, version):
        try:
            barrier.wait()
            multimodel.add_member(users["owner"], endpoint, model, version=version)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=add, args=pair) for pair in zip(models, versions,
                                                                      strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    endpoint.refresh_from_db()
    assert endpoint.generation == 1 + len(models)
    generations = sorted(e.changes["generation"] for e in AuditEvent.objects.filter(
        action="multimodel.member_add", object_id=str(endpoint.pk)))
    assert generations == [2, 3, 4]


def test_the_worker_starts_a_local_server_that_serves_the_members(users, clf, staging,
                                                                  queued):
    version = ready_version(users, clf, 5)
    endpoint = multimodel.create_endpoint(users["owner"], staging, name="live",
                                          memory_budget_mb=16)
    multimodel.add_member(users["owner"], endpoint, clf, version=version)
    assert multimodel.apply_endpoint(endpoint.pk).startswith("generation 2 applied")
    endpoint.refresh_from_db()
    backend = get_multimodel_backend("local", multimodel._options(endpoint))
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            state = backend.observe_catalog(endpoint.backend_endpoint)
            if state.ready and state.generation == endpoint.generation:
                break
            time.sleep(0.2)
        assert state.ready, state.detail
        assert endpoint.applied == endpoint.generation
        served = requests.post(f"{state.url}/v2/models/{clf.name}/infer",
                               json={"instances": ROW}, timeout=30)
        assert served.status_code == 200, served.text
        assert served.json()["model_version"] == str(version.number)
        other = requests.post(f"{state.url}/v2/models/not-a-member/infer",
                              json={"instances": ROW}, timeout=30)
        assert other.status_code == 404 and "not-a-member" in other.json()["error"]
    finally:
        backend.delete_catalog(endpoint.backend_endpoint)


def test_owners_manage_an_endpoint_from_the_environment_page(users, clf, staging, queued,
                                                            django_capture_on_commit_callbacks):
    from django.test import Client

    version = ready_version(users, clf, 6)
    owner, viewer = Client(), Client()
    owner.force_login(users["owner"])
    viewer.force_login(users["viewer"])
    base = f"/p/{staging.project.slug}/environments/{staging.name}/"
    assert "Multi-model endpoints" in owner.get(base).content.decode()
    created = owner.post(f"{base}multimodel/new/",
                         {"name": "shops", "memory_budget_mb": 32, "top_models": 5})
    assert created.status_code == 302 and created["Location"] == f"{base}multimodel/shops/"
    added = owner.post(created["Location"], {"model": clf.pk, "version": version.number})
    assert added.status_code == 302
    page = viewer.get(created["Location"]).content.decode()
    assert clf.name in page and f"v{version.number}" in page and "Remove" not in page
    assert viewer.post(created["Location"], {"model": clf.pk, "alias": "x"}).status_code == 403
    member = MultiModelEndpoint.objects.get(name="shops").members.get()
    removed = owner.post(f"{base}multimodel/shops/members/{member.pk}/remove/")
    assert removed.status_code == 302
    assert not MultiModelEndpoint.objects.get(name="shops").members.exists()
