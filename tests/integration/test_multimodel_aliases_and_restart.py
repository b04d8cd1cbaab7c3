"""Multi-model endpoints follow their aliases and come back after a restart (decision 68): a
moved (or deleted) alias re-applies, as a new generation and audited, every endpoint with a
member following it and no other; a move racing a member change never applies a catalog
that holds the old version under the newer generation; ``restore_local_servers`` starts a
stopped multi-model server again on its last catalog."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

import pytest
import requests
from django.conf import settings as django_settings
from django.db import connection, transaction

from ops.backends.multimodel import get_multimodel_backend
from portal.audit.models import AuditEvent
from portal.registry import services as registry
from portal.registry.models import Alias
from portal.registry.services.aliases import delete_alias, move_alias_for_release, set_alias
from portal.releases import deployments, multimodel
from portal.releases import services as releases
from portal.releases.models import MultiModelEndpoint
from tests.integration.local_fixtures import free_port
from tests.portal_fixtures import local_target, metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration]
ROW = [[14.0, 20.0, 90.0, 600.0, 0.1]]


def ready_version(users, model, seed):
    return registry.validate_version(registry.register_version(
        users["contributor"], model, io.BytesIO(random_classifier_bytes(seed)), metadata()).pk)


@pytest.fixture
def staging(users, project, settings):
    local_target(settings, free_port())
    return releases.create_environment(users["owner"], project, name="staging",
                                       backend="local")


def endpoint_with(users, environment, name, model, **member):
    endpoint = multimodel.create_endpoint(users["owner"], environment, name=name,
                                          memory_budget_mb=64)
    multimodel.add_member(users["owner"], endpoint, model, **member)
    endpoint.refresh_from_db()
    return endpoint


def served_version(endpoint, name: str) -> int | None:
    found = multimodel.build_catalog(endpoint).models.get(name)
    return found.spec.version_number if found else None


def alias_moves(endpoint) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="multimodel.alias_moved",
                                          object_id=str(endpoint.pk)).order_by("id"))


def test_a_moved_alias_reapplies_the_endpoints_following_it_and_no_other(
        users, clf, staging, task_queue, django_capture_on_commit_callbacks):
    queued = task_queue.hold()
    v1, v2 = ready_version(users, clf, 1), ready_version(users, clf, 2)
    set_alias(users["approver"], clf, "champion", v1)
    set_alias(users["contributor"], clf, "challenger", v1)
    follows = endpoint_with(users, staging, "follows", clf, alias="champion")
    also = endpoint_with(users, staging, "also", clf, alias="champion")
    pinned = endpoint_with(users, staging, "pinned", clf, version=v1)
    other = endpoint_with(users, staging, "other", clf, alias="challenger")
    before = {e.pk: e.generation for e in (follows, also, pinned, other)}
    queued.sent.clear()

    with django_capture_on_commit_callbacks(execute=True):
        set_alias(users["approver"], clf, "champion", v2, comment="better recall")
    generations = dict(MultiModelEndpoint.objects.values_list("pk", "generation"))
    assert generations[follows.pk] == before[follows.pk] + 1
    assert generations[also.pk] == before[also.pk] + 1
    assert generations[pinned.pk] == before[pinned.pk]
    assert generations[other.pk] == before[other.pk]
    assert sorted(queued.args_of(multimodel.APPLY_TASK)) == sorted([(follows.pk,), (also.pk,)])
    assert served_version(follows, clf.name) == v2.number
    assert served_version(pinned, clf.name) == v1.number
    moved = alias_moves(follows)[-1]
    assert moved.actor == users["approver"]
    assert moved.changes == {"model": clf.name, "alias": "champion", "version": v2.number,
                             "generation": before[follows.pk] + 1}

    # A release moving the alias re-applies too (no actor: the release's approvals).
    move_alias_for_release(clf, "champion", v1, via="deployment 1")
    assert served_version(follows, clf.name) == v1.number
    assert alias_moves(follows)[-1].actor is None
    # Deleted: the member is unready, saying why, on a new generation.
    delete_alias(users["approver"], Alias.objects.get(model=clf, name="champion"))
    catalog = multimodel.build_catalog(follows)
    assert catalog.generation == before[follows.pk] + 3
    assert "points at no version" in catalog.unready[clf.name]
    assert [e.changes["version"] for e in alias_moves(follows)] == [v2.number, v1.number, None]


def a_race(users, project, clf, staging):
    """What the races below share: champion at v1 (v2 ready to move it to), a second model
    with a ready version to add, and an endpoint following champion."""
    v1, v2 = ready_version(users, clf, 3), ready_version(users, clf, 4)
    set_alias(users["approver"], clf, "champion", v1)
    second = registry.create_model(users["contributor"], project, name="second-model",
                                   task="classification")
    second_v1 = ready_version(users, second, 5)
    return v1, v2, second, second_v1, endpoint_with(users, staging, "raced", clf,
                                                    alias="champion")


@pytest.mark.django_db(transaction=True)
def test_an_alias_move_racing_a_member_change_never_applies_a_stale_catalog(
        users, project, clf, staging, task_queue):
    """The move, a member added and a worker building catalogs, all at once: no catalog of a
    generation at or after the move's holds the old version, each generation is built one
    way only, and the server ends on the newest catalog, the older ones refused."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; the row locks are PostgreSQL's to prove")
    queued = task_queue.hold(multimodel.APPLY_TASK)
    v1, v2, second, second_v1, endpoint = a_race(users, project, clf, staging)
    barrier = threading.Barrier(3)
    stop = threading.Event()
    built, errors = [], []

    def move():
        set_alias(users["approver"], clf, "champion", v2)

    def add():
        multimodel.add_member(users["owner"], endpoint, second, version=second_v1)

    def build():
        while not stop.is_set():
            catalog = multimodel.build_catalog(endpoint)
            built.append((catalog.generation, catalog.to_json()))

    def run(act):
        try:
            barrier.wait()
            act()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    worker = threading.Thread(target=run, args=(build,))
    worker.start()
    acts = [threading.Thread(target=run, args=(act,)) for act in (move, add)]
    for thread in acts:
        thread.start()
    for thread in acts:
        thread.join()
    stop.set()
    worker.join()
    assert errors == []
    endpoint.refresh_from_db()
    assert endpoint.generation == 4  # created 1, first member 2, then the move and the add
    moved_at = alias_moves(endpoint)[0].changes["generation"]
    by_generation: dict[int, set[str]] = {}
    for generation, text in built + [(endpoint.generation,
                                      multimodel.build_catalog(endpoint).to_json())]:
        by_generation.setdefault(generation, set()).add(text)
    assert all(len(texts) == 1 for texts in by_generation.values()), by_generation
    for generation, (text,) in by_generation.items():
        number = multimodel.Catalog.from_json(text).models[clf.name].spec.version_number
        assert number == (v2.number if generation >= moved_at else v1.number), generation

    # The queued applies: the newest generation is what serves.
    applies = queued.args_of(multimodel.APPLY_TASK)
    assert len(applies) >= 2
    backend = get_multimodel_backend("local", multimodel._options(endpoint))
    try:
        assert multimodel.apply_endpoint(endpoint.pk).startswith("generation 4 applied")
        newest = multimodel.build_catalog(endpoint)
        # A worker that built an older generation before applies it only now: refused.
        older = max((g for g in by_generation if g < newest.generation), default=None)
        if older is not None:
            with pytest.raises(multimodel.StalePlan):
                backend.apply_catalog(multimodel.Catalog.from_json(
                    next(iter(by_generation[older]))), wait=False)
        state = wait_served(backend, endpoint.backend_endpoint, newest.generation)
        answer = requests.post(f"{state.url}/v2/models/{clf.name}/infer",
                               json={"instances": ROW}, timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["model_version"] == str(v2.number)
    finally:
        backend.delete_catalog(endpoint.backend_endpoint)


@pytest.mark.django_db(transaction=True)
def test_a_member_added_while_a_move_re_applies_the_endpoint_waits_for_it_not_deadlocks(
        users, project, clf, staging, task_queue):
    """The interleaving the race above met in CI, forced: a member change holds the
    environment (``lock_open``) when a move locks the endpoint. The move must not then wait
    for the environment (it locked the joined environment row too, and PostgreSQL broke the
    deadlock by failing one of them): it commits, and the change waits for it."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; the row locks are PostgreSQL's to prove")
    from portal.registry.services.archive import lock_open

    task_queue.hold(multimodel.APPLY_TASK)
    v1, v2, second, second_v1, endpoint = a_race(users, project, clf, staging)
    held, moved, adding = threading.Event(), threading.Event(), threading.Event()
    errors = []

    def change():
        try:
            with transaction.atomic():
                lock_open(staging)  # as add_member begins
                held.set()
                if not moved.wait(10):
                    errors.append("the move waited for the environment a change held")
                adding.set()
                multimodel.add_member(users["owner"], endpoint, second, version=second_v1)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    def move():
        try:
            held.wait(10)
            with transaction.atomic():
                set_alias(users["approver"], clf, "champion", v2)  # locks the endpoint
                moved.set()
                adding.wait(10)
                time.sleep(0.3)  # the change is waiting for the endpoint now
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
            moved.set()
        finally:
            connection.close()

    threads = [threading.Thread(target=change), threading.Thread(target=move)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    endpoint.refresh_from_db()
    assert endpoint.generation == 4  # the move's, then the change's after it
    assert [e.changes["generation"] for e in alias_moves(endpoint)] == [3]
    assert served_version(endpoint, clf.name) == v2.number


def wait_served(backend, name: str, generation: int, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    state = None
    while time.monotonic() < deadline:
        state = backend.observe_catalog(name)
        if state.ready and state.generation == generation:
            return state
        time.sleep(0.2)
    raise AssertionError(f"not serving generation {generation}: {state}")


def test_a_stopped_multimodel_server_is_started_again_on_its_last_catalog(
        users, clf, staging, task_queue):
    task_queue.hold(multimodel.APPLY_TASK)
    version = ready_version(users, clf, 6)
    endpoint = endpoint_with(users, staging, "restarted", clf, version=version)
    assert multimodel.apply_endpoint(endpoint.pk).startswith("generation 2 applied")
    endpoint.refresh_from_db()
    backend = get_multimodel_backend("local", multimodel._options(endpoint))
    try:
        wait_served(backend, endpoint.backend_endpoint, 2)
        assert deployments.restore_local_servers() == []  # serving: nothing to do
        pidfile = (django_settings.MODELGATE_SERVING_DIR / f"env-{staging.pk}"
                   / endpoint.backend_endpoint / "server.pid")
        os.killpg(int(pidfile.read_text()), signal.SIGTERM)
        restored, deadline = [], time.monotonic() + 15
        while not restored and time.monotonic() < deadline:  # [] while it is still stopping
            restored = deployments.restore_local_servers()
            time.sleep(0.1)
        assert restored == ["staging/restarted (multi-model)"]
        state = wait_served(backend, endpoint.backend_endpoint, 2)
        answer = requests.post(f"{state.url}/v2/models/{clf.name}/infer",
                               json={"instances": ROW}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        backend.delete_catalog(endpoint.backend_endpoint)
    assert deployments.restore_local_servers() == []  # deleted: nothing to start


def test_an_operator_lists_stops_and_starts_a_multimodel_server(users, clf, staging,
                                                                 task_queue):
    """``manage.py model_servers`` shows a multi-model server beside the endpoints' ones,
    with its catalog and the version each member is served at, and stops and starts it
    again by its name, ``environment/mme-<name>`` (no model's endpoint is named so)."""
    from django.core.management import CommandError, call_command

    def run(*args) -> str:
        out = io.StringIO()
        call_command("model_servers", *args, stdout=out)
        return out.getvalue()

    task_queue.hold(multimodel.APPLY_TASK)
    version = ready_version(users, clf, 7)
    endpoint = endpoint_with(users, staging, "shared", clf, version=version)
    assert run("list").strip() == "No local endpoint has been released to."  # not applied
    assert multimodel.apply_endpoint(endpoint.pk).startswith("generation 2 applied")
    endpoint.refresh_from_db()
    backend = get_multimodel_backend("local", multimodel._options(endpoint))
    try:
        state = wait_served(backend, endpoint.backend_endpoint, 2)
        (line,) = run("list").splitlines()
        name, running, url, catalog, members, detail = line.split("\t")
        assert (name, url, catalog, detail) == ("staging/mme-shared", state.url, "catalog 2",
                                                "multi-model")
        assert running.startswith("running (pid ")
        assert members == f"{clf.name} v{version.number}"
        with pytest.raises(CommandError, match=r"no local endpoint named staging/x \(known: "
                                               r"staging/mme-shared\)"):
            run("stop", "staging/x")
        assert run("stop", "staging/mme-shared").strip() == "stopped: staging/mme-shared"
        assert "staging/mme-shared\tstopped\t" in run("list")
        with pytest.raises(requests.ConnectionError):
            requests.get(f"{state.url}/v2/health/ready", timeout=2)
        assert run("start").strip() == "started: staging/mme-shared"
        state = wait_served(backend, endpoint.backend_endpoint, 2)
        answer = requests.post(f"{state.url}/v2/models/{clf.name}/infer",
                               json={"instances": ROW}, timeout=30)
        assert answer.status_code == 200, answer.text
    finally:
        backend.delete_catalog(endpoint.backend_endpoint)


def test_two_projects_servers_of_one_name_are_each_listed_stopped_and_started(
        users, project, other_project, clf, settings, task_queue):
    """Environments are named per project: two projects' staging/mme-shared are listed
    with their projects in front, a stop of every server stops both, and the short name,
    which could be either, is refused rather than guessed."""
    from django.core.management import CommandError, call_command

    def run(*args) -> str:
        out = io.StringIO()
        call_command("model_servers", *args, stdout=out)
        return out.getvalue()

    low = free_port()  # a port each
    settings.MODELGATE_TARGETS = {"local": {"backend": "local", "ports": f"{low}-{low + 20}"}}
    task_queue.hold(multimodel.APPLY_TASK)
    other_model = registry.create_model(users["outsider"], other_project, name="other-model",
                                        task="classification")
    endpoints = []
    for user, owned, model, seed in ((users["owner"], project, clf, 1),
                                     (users["outsider"], other_project, other_model, 2)):
        environment = releases.create_environment(user, owned, name="staging",
                                                  backend="local")
        version = registry.validate_version(registry.register_version(
            user, model, io.BytesIO(random_classifier_bytes(seed)), metadata()).pk)
        endpoint = multimodel.create_endpoint(user, environment, name="shared",
                                              memory_budget_mb=64)
        multimodel.add_member(user, endpoint, model, version=version)
        multimodel.apply_endpoint(endpoint.pk)
        endpoint.refresh_from_db()
        endpoints.append(endpoint)
    backends = [get_multimodel_backend("local", multimodel._options(e)) for e in endpoints]
    names = [f"{e.environment.project.slug}/staging/mme-shared" for e in endpoints]
    try:
        for backend, endpoint in zip(backends, endpoints, strict=True):
            wait_served(backend, endpoint.backend_endpoint, endpoint.applied)
        assert sorted(line.split("\t")[0] for line in run("list").splitlines()) == sorted(names)
        with pytest.raises(CommandError, match="staging/mme-shared is in more than one "
                                               "project; name one of"):
            run("stop", "staging/mme-shared")
        assert run("stop", names[1]).strip() == f"stopped: {names[1]}"
        assert backends[0].servers.running(endpoints[0].backend_endpoint)
        assert run("stop").strip() == f"stopped: {names[0]}"
        assert not any(b.servers.running(e.backend_endpoint)
                       for b, e in zip(backends, endpoints, strict=True))
        assert sorted(run("start").strip().removeprefix("started: ").split(", ")) == sorted(names)
    finally:
        for backend, endpoint in zip(backends, endpoints, strict=True):
            backend.delete_catalog(endpoint.backend_endpoint)
