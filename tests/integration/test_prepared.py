"""Prepared queries (portal/prepared.py): compiled once per shape, they read exactly what
Django's own evaluation reads, for every viewer and every value; what cannot be bound runs
the ordinary way; a build that reads more than its arguments is caught."""

from __future__ import annotations

import io
import threading
from datetime import datetime, timedelta

import pytest
from django.db import connection, connections
from django.db.models.sql.compiler import SQLCompiler
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from portal.accounts.visibility import viewer_of
from portal.prepared import Prepared, PreparedMismatch, unprepared
from portal.registry import queries
from portal.registry import services as registry
from portal.registry.models import ModelVersion, Project
from tests.portal_fixtures import make_other_project, metadata, random_classifier_bytes

pytestmark = pytest.mark.integration


def _seen(rows) -> list:
    """What a page shows of versions: identity, joined rows, prefetched rows."""
    return [(v.pk, v.number, v.model.name, v.model.project.slug,
             v.dataset_id, sorted(t.name for t in v.tags.all()),
             sorted(a.name for a in v.aliases.all()), v.parent and v.parent.number)
            for v in rows]


@pytest.fixture
def versions(users, project, clf, artifact_root):
    first = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(1)),
        metadata(tags=["a", "b"])).pk)
    second = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(2)),
        metadata(parent=first.number, tags=["c"])).pk)
    registry.set_alias(users["approver"], clf, "champion", second)
    return [first, second]


@pytest.mark.django_db
def test_the_version_page_reads_what_django_reads_for_everyone_and_every_number(
        users, project, clf, versions):
    make_other_project(users)
    numbers = [v.number for v in versions] + [0, 99, -1, 2 ** 31, 10 ** 12]
    for who in ("owner", "viewer", "outsider", "staff"):
        viewer = viewer_of(users[who])
        for slug, name in ((project.slug, clf.name), ("elsewhere", clf.name),
                           (project.slug, "other")):
            for number in numbers:
                prepared = queries.version_page.rows(viewer, slug, name, number)
                ordinary = list(queries.version_page.build(viewer, slug, name, number))
                assert _seen(prepared) == _seen(ordinary), (who, slug, name, number)
    found = _seen(queries.version_page.rows(viewer_of(users["viewer"]), project.slug,
                                            clf.name, versions[1].number))
    assert found and found[0][5:] == (["c"], ["champion"], versions[0].number)
    assert not queries.version_page.rows(viewer_of(users["outsider"]), project.slug,
                                         clf.name, versions[1].number)
    assert queries.version_page.reasons() == {}


@pytest.mark.django_db
def test_once_checked_a_shape_is_not_compiled_again(users, project, clf, versions,
                                                    monkeypatch):
    monkeypatch.setenv("MODELGATE_PREPARED", "")
    viewer = viewer_of(users["viewer"])
    for _ in range(3):  # the first two calls are checked against Django's compilation
        queries.version_page.rows(viewer, project.slug, clf.name, versions[0].number)
    compiled = []
    original = SQLCompiler.as_sql

    def counting(self, *args, **kwargs):
        compiled.append(self.query.model)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SQLCompiler, "as_sql", counting)
    with CaptureQueriesContext(connection) as ran:
        rows = queries.version_page.rows(viewer, project.slug, clf.name, versions[1].number)
    assert [v.pk for v in rows] == [versions[1].pk]
    assert ModelVersion not in compiled[:1], "the version's own query was compiled again"
    assert len(ran) == 1  # the version alone: its tags, aliases and parent are read apart


@pytest.mark.django_db
def test_tuples_none_and_values_lists(users, project):
    other = make_other_project(users)
    slugs = Prepared(lambda ids, staff: (Project.objects.all() if staff is None else
                                         Project.objects.filter(pk__in=ids))
                     .order_by("pk").values_list("slug", flat=True))
    for ids in ((), (project.pk,), (project.pk, other.pk), (other.pk, other.pk, project.pk),
                (project.pk, 10 ** 15)):
        for staff in (None, 1):
            assert slugs.rows(ids, staff) == list(slugs.build(tuple(sorted(set(ids))), staff))
    assert slugs.rows((other.pk, project.pk), 1) == [project.slug, other.slug]
    before = Prepared(lambda at, pk: Project.objects.filter(created_at__lt=at, pk__gte=pk)
                      .order_by("pk").values_list("slug", flat=True))
    now = timezone.now()
    for at in (now, project.created_at, other.created_at, now - timedelta(days=1)):
        assert before.rows(at, 0) == list(before.build(at, 0))
    assert before.rows(now, 0) == [project.slug, other.slug] and before.reasons() == {}
    with pytest.raises(TypeError):
        before.rows(datetime(2026, 1, 1), 0)  # naive
    with pytest.raises(TypeError):
        slugs.rows([1.5], None)
    with pytest.raises(TypeError):
        slugs.rows(True, None)
    with pytest.raises(TypeError):
        slugs.rows(project, None)


@pytest.mark.django_db
def test_what_cannot_be_bound_runs_the_ordinary_way(users, project):
    make_other_project(users)
    containing = Prepared(lambda text: Project.objects.filter(name__contains=text)
                          .order_by("pk"))
    assert [p.slug for p in containing.rows("Clinical")] == [project.slug]
    first_n = Prepared(lambda n: Project.objects.filter(pk__lt=n + 10 ** 6).order_by("pk")[:n])
    assert len(first_n.rows(1)) == 1 and len(first_n.rows(2)) == 2
    below = Prepared(lambda n: Project.objects.filter(pk__lt=n).order_by("pk")[:n])
    assert len(below.rows(10 ** 6)) == 2
    related = Prepared(lambda _: project.models.all())
    assert related.rows(0) == list(project.models.all())
    assert list(containing.reasons().values()) == [
        "an argument is not a plain parameter of the SQL"]  # wrapped in %...%
    assert list(first_n.reasons().values()) == [  # a LIMIT, and pk < n + 10 ** 6
        "an argument is not a plain parameter of the SQL"]
    assert list(below.reasons().values()) == ["an argument is written into the SQL text"]
    assert list(related.reasons().values()) == [
        "the queryset is tied to an instance or evaluated"]
    assert {f"{related.name}('int',)", f"{first_n.name}('int',)"} <= set(unprepared())


@pytest.mark.django_db
def test_a_build_that_reads_more_than_its_arguments_is_caught(users, project, monkeypatch,
                                                              caplog):
    other = make_other_project(users)
    wanted = [project.slug]
    by_slug = Prepared(lambda pk: Project.objects.filter(pk__gte=pk, slug=wanted[0]))
    assert [p.pk for p in by_slug.rows(0)] == [project.pk]
    wanted[0] = other.slug  # a value the build reads from elsewhere: not in the SQL's slots
    with pytest.raises(PreparedMismatch):
        by_slug.rows(0)
    monkeypatch.setenv("MODELGATE_PREPARED", "")
    assert [p.pk for p in by_slug.rows(0)] == [other.pk]  # still checked: second call
    assert "differs from Django's" in caplog.text
    wanted[0] = project.slug
    assert [p.pk for p in by_slug.rows(0)] == [project.pk]  # retired: the ordinary way
    assert list(by_slug.reasons().values()) == ["retired: its SQL differed from Django's"]


@pytest.mark.django_db(transaction=True)
def test_threads_share_a_shape_and_each_reads_its_own(users, project, clf, versions,
                                                      monkeypatch):
    monkeypatch.setenv("MODELGATE_PREPARED", "")
    people = [users[w] for w in ("owner", "viewer", "outsider", "staff")]
    expected = {u.pk: [v.pk for v in queries.version_page.build(
        viewer_of(u), project.slug, clf.name, versions[0].number)] for u in people}
    start, failures = threading.Barrier(8), []

    def read(user):
        try:
            start.wait()
            for _ in range(30):
                got = [v.pk for v in queries.version_page.rows(
                    viewer_of(user), project.slug, clf.name, versions[0].number)]
                if got != expected[user.pk]:
                    failures.append((user.username, got))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=read, args=(people[i % 4],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures, failures[:5]
    assert expected[users["outsider"].pk] == [] and expected[users["viewer"].pk]


@pytest.mark.django_db
def test_a_value_django_escapes_or_folds_is_never_bound_raw(users, project):
    """``iexact`` escapes LIKE's wildcards on SQLite; lower() and strip() change a string:
    bound raw, a later value with ``_`` or capitals would match what Django's SQL does not."""
    other = make_other_project(users)
    checks = [Prepared(lambda s: Project.objects.filter(slug__iexact=s).order_by("pk")),
              Prepared(lambda s: Project.objects.filter(slug=s.lower().strip()).order_by("pk")),
              Prepared(lambda n: Project.objects.filter(pk=n + 1).order_by("pk"))]
    for check in checks[:2]:
        for value in (project.slug, other.slug, "_" * len(project.slug), project.slug.upper(),
                      f" {other.slug} ", "%", "\\"):
            assert [p.pk for p in check.rows(value)] == [p.pk for p in check.build(value)]
    assert [p.pk for p in checks[2].rows(project.pk - 1)] == [project.pk]
    for check in checks[1:]:
        assert list(check.reasons().values()) == [
            "an argument is not a plain parameter of the SQL"], check.reasons()
    if connection.vendor == "sqlite":  # PostgreSQL's iexact is UPPER(%s): bound as given
        assert list(checks[0].reasons().values()) == [
            "an argument is not a plain parameter of the SQL"]


@pytest.mark.django_db
def test_a_shape_retired_by_one_thread_does_not_fail_another(users, project, monkeypatch):
    monkeypatch.setenv("MODELGATE_PREPARED", "")
    by_pk = Prepared(lambda pk: Project.objects.filter(pk=pk))
    assert [p.pk for p in by_pk.rows(project.pk)] == [project.pk]
    shape = next(iter(by_pk._shapes.values()))
    original = by_pk._same

    def retired_meanwhile(key, shape, args, params):
        by_pk._shapes[key] = type(shape)(None, reason="retired: its SQL differed from Django's")
        return original(key, shape, args, params)

    monkeypatch.setattr(by_pk, "_same", retired_meanwhile)
    assert [p.pk for p in by_pk.rows(project.pk)] == [project.pk]  # no AttributeError
    assert shape.queryset is not None  # the shape itself is never changed
