"""A review locks its request and nothing else (decision 51's fences): it neither waits for
nor deadlocks with what locks the project, the model or the environment first
(``lock_open``: a release starting, a version registered)."""

from __future__ import annotations

import io
import threading
import time

import pytest
from django.db import connection, transaction

from portal.registry import services as registry
from portal.registry.services.archive import lock_open
from portal.releases import services as releases
from portal.releases.models import ApprovalRequest
from tests.portal_fixtures import metadata, random_classifier_bytes

pytestmark = [pytest.mark.integration]


@pytest.mark.django_db(transaction=True)
def test_an_approval_goes_through_while_a_release_start_holds_the_model_and_environment(
        users, project, clf, task_queue):
    """A start (``deployments``: ``lock_open(model, environment)``) holds the project, the
    model and the environment when an approver decides another request there. The review
    locked the joined rows too (request, environment, project, version, model): it waited
    for the start, and deadlocked with it when the start then needed a row the review had
    taken. It locks the request only now, and goes through."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writers; the row locks are PostgreSQL's to prove")
    task_queue.hold("workers.releases.start_deployment")
    staging = releases.create_environment(users["owner"], project, name="staging",
                                          backend="local")
    version = registry.validate_version(registry.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(1)), metadata()).pk)
    request = releases.request_approval(users["contributor"], version, staging,
                                        strategy="direct")
    held, reviewed, errors = threading.Event(), threading.Event(), []

    def start():
        try:
            with transaction.atomic():
                lock_open(clf, staging)
                held.set()
                if not reviewed.wait(10):
                    errors.append("the review waited for the locks a release start held")
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    def review():
        try:
            held.wait(10)
            releases.review(users["approver"], request, "approve", "ok")
            reviewed.set()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)
        finally:
            connection.close()

    threads = [threading.Thread(target=start), threading.Thread(target=review)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert time.monotonic() - started < 10
    assert ApprovalRequest.objects.get(pk=request.pk).status == "approved"
