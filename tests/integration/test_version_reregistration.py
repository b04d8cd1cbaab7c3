"""A mistake does not burn an artifact (issue 16): an invalid or archived version frees its
file and label for a new registration, the database's conditional unique constraints keep
two live versions from sharing them even when the checks race, and an owner restores an
archived version (refused while its file is registered again)."""

import threading

import pytest
from django.db import connection

from portal.audit.models import AuditEvent
from portal.registry import services
from portal.registry.models import ModelVersion
from tests.portal_fixtures import FEATURES, metadata, schema

pytestmark = pytest.mark.django_db


def test_a_file_declared_with_the_wrong_schema_can_be_registered_again(api, clf, skops_bytes):
    client = api("contributor")
    wrong = client.upload(clf.pk, skops_bytes,
                          metadata(input_schema=schema(list(reversed(FEATURES))), label="1.0.0"))
    assert wrong.status_code == 201
    assert ModelVersion.objects.get(pk=wrong.json()["id"]).status == "invalid"

    again = client.upload(clf.pk, skops_bytes, metadata(label="1.0.0"))
    assert again.status_code == 201, again.json()
    assert again.json()["number"] == 2
    assert ModelVersion.objects.get(pk=again.json()["id"]).status == "ready"

    # The ready one holds the file: a third upload is refused, saying which holds it.
    third = client.upload(clf.pk, skops_bytes, metadata())
    assert third.status_code == 409
    assert "already registered as v2 (1.0.0)" in third.json()["detail"]


def test_archive_frees_the_file_and_restore_is_refused_while_it_is_taken(api, clf,
                                                                          skops_bytes, users):
    client = api("contributor")
    first = client.upload(clf.pk, skops_bytes, metadata()).json()
    assert client.post(f"/api/v1/versions/{first['id']}/archive/").status_code == 200
    second = client.upload(clf.pk, skops_bytes, metadata()).json()
    assert second["number"] == 2

    # Restoring is an owner's act; v1 cannot come back ready while v2 holds its file.
    assert client.post(f"/api/v1/versions/{first['id']}/restore/").status_code == 403
    refused = api("owner").post(f"/api/v1/versions/{first['id']}/restore/")
    assert refused.status_code == 409 and refused.json()["code"] == "duplicate_version", refused.json()
    services.archive_version(users["contributor"], ModelVersion.objects.get(pk=second["id"]))
    restored = api("owner").post(f"/api/v1/versions/{first['id']}/restore/")
    assert restored.status_code == 200 and restored.json()["status"] == "ready"
    event = AuditEvent.objects.filter(action="version.restore").get()
    assert event.changes == {"status": {"from": "archived", "to": "ready"}}


def test_the_constraint_refuses_a_duplicate_the_check_missed(api, clf, skops_bytes,
                                                            monkeypatch, artifact_root):
    """Two registrations racing past the check: the database has the last word, and the
    loser gets the same 409 (and leaves no file behind)."""
    from portal.registry.services import versions

    client = api("contributor")
    assert client.upload(clf.pk, skops_bytes, metadata()).status_code == 201
    monkeypatch.setattr(versions, "_refuse_duplicate", lambda *a, **k: None)
    response = client.upload(clf.pk, skops_bytes, metadata())
    assert response.status_code == 409 and response.json()["code"] == "duplicate_version"
    assert ModelVersion.objects.filter(model=clf).count() == 1
    assert len([p for p in artifact_root.rglob("*") if p.is_file()]) == 1


@pytest.mark.django_db(transaction=True)
def test_a_double_submit_registers_one_version(clf, skops_bytes, users):
    import io

    from portal.errors import Conflict

    barrier, outcomes = threading.Barrier(2), []

    def submit():
        try:
            barrier.wait()
            services.register_version(users["contributor"], clf, io.BytesIO(skops_bytes),
                                      metadata())
            outcomes.append("created")
        except Conflict as e:
            outcomes.append(e.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(outcomes) == ["created", "duplicate_version"]
    assert ModelVersion.objects.filter(model=clf).count() == 1
