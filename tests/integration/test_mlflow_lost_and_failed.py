"""MLflow imports that fail for good are not fetched again on every poll of a follow, and
an import whose task was lost is sent again by the periodic requeue (review findings)."""

import pytest

from ops import mlflow as ops_mlflow
from portal.registry.models import MlflowFollow, MlflowImport
from portal.registry.services import mlflow as svc

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


class FakeServer:
    def version_by_alias(self, name, alias):
        return {"version": "3"}

    def resolve(self, source):
        raise ops_mlflow.MlflowError("version 3 cannot be imported (flavour not supported)")

    def close(self):
        pass


def test_polling_a_follow_does_not_retry_a_permanently_failed_version(clf, users, monkeypatch,
                                                                      task_queue):
    monkeypatch.setattr(svc, "tracking_server", lambda uri: FakeServer())
    follow = MlflowFollow.objects.create(model=clf, tracking_uri="http://mlflow.example",
                                         registered_name="tumor", alias="champion",
                                         secret="s", created_by=users["contributor"])
    for _poll in range(3):  # three beat polls, alias unchanged
        for item in svc.sync_follow(follow.pk):
            svc.run_import(item.pk)
    rows = list(MlflowImport.objects.filter(follow=follow).values_list("status", flat=True))
    assert len(rows) == 1, f"{len(rows)} imports of the same version: {rows}"


def test_an_import_whose_task_was_lost_is_sent_again(clf, users, task_queue, settings):
    """The broker lost the task (or the worker died mid-import): the periodic requeue must
    send it again, or the import stays pending and every later request answers with it."""
    from portal.registry.services.requeue import requeue_stuck_work

    settings.MLFLOW_TRACKING_URI = "http://mlflow.example"
    task_queue.hold("*")
    source = ops_mlflow.Source("model", name="tumor", version="3")
    from django.db import transaction
    with transaction.atomic():
        item, created = svc.request_import(users["contributor"], clf, source)
    task_queue.sent.clear()  # that message never reached a worker
    MlflowImport.objects.filter(pk=item.pk).update(
        created_at=item.created_at - __import__("datetime").timedelta(hours=1))
    requeue_stuck_work(older_than_seconds=0)
    names = [getattr(s, "name", s) for s in task_queue.sent]
    again, created_again = svc.request_import(users["contributor"], clf, source)
    assert again.pk == item.pk and not created_again  # the stuck one answers every request
    assert any("import_mlflow_version" in str(n) for n in names), names
