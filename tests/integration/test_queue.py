"""The queue seam (portal/queue.py): work is queued by task name once the transaction
commits, never for a change that rolled back; a broker away is a warning naming the task and
what recovers it; the tests' eager queue runs a task in this process, not its follow-ups."""

import logging

import pytest
from django.db import transaction

from portal.queue import CeleryQueue, enqueue, get_queue

pytestmark = pytest.mark.django_db

EXPIRE = "workers.releases.expire_requests"


def test_work_is_queued_when_its_transaction_commits_and_never_after_a_rollback(
        task_queue, django_capture_on_commit_callbacks):
    task_queue.hold()
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            enqueue(EXPIRE, 1, 2, countdown=5)
            assert task_queue.sent == []  # not before the commit
    assert task_queue.sent == [(EXPIRE, (1, 2), 5.0)]

    task_queue.reset().hold()
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError):
            with transaction.atomic():
                enqueue(EXPIRE)
                raise RuntimeError("rolled back")
    assert task_queue.sent == []


def test_the_eager_queue_runs_a_task_by_name_but_not_a_follow_up_with_a_countdown(
        task_queue, django_capture_on_commit_callbacks, monkeypatch):
    from portal.releases import services

    calls = []
    monkeypatch.setattr(services, "expire_requests", lambda: calls.append("ran") or 0)
    with django_capture_on_commit_callbacks(execute=True):
        enqueue(EXPIRE)
        enqueue(EXPIRE, countdown=30)
    assert calls == ["ran"]  # the follow-up is the test's to drive
    assert [s.countdown for s in task_queue.sent] == [0.0, 30.0]


def test_a_broker_away_is_logged_with_the_task_and_its_recovery_not_raised(
        settings, monkeypatch, caplog, django_capture_on_commit_callbacks):
    from portal.celery import app

    settings.MODELGATE_TASK_QUEUE = "portal.queue.CeleryQueue"
    assert isinstance(get_queue(), CeleryQueue)
    sent = []

    def unreachable(name, **options):
        sent.append((name, options["args"], options["countdown"]))
        raise ConnectionError("no broker")

    monkeypatch.setattr(app, "send_task", unreachable)
    with caplog.at_level(logging.WARNING, logger="portal.queue"):
        with django_capture_on_commit_callbacks(execute=True):
            enqueue("workers.releases.advance_deployment", 7, 3, countdown=2,
                    recovery="reconcile will retry")
    assert sent == [("workers.releases.advance_deployment", [7, 3], 2.0)]
    assert "could not queue workers.releases.advance_deployment(7, 3) (no broker); " \
           "reconcile will retry" in caplog.text


def test_the_sweeps_fail_when_the_broker_is_away_and_a_time_limit_is_never_swallowed(
        settings, monkeypatch, django_capture_on_commit_callbacks):
    """A sweep (requeue, webhook sweep) runs in a worker outside a transaction: a broker
    away fails its task, as it shows in the task failure metrics, instead of counting work
    it never queued. A task's soft time limit raised while it queues is not a broker
    failure and is never logged away."""
    from celery.exceptions import SoftTimeLimitExceeded

    from portal.celery import app
    from portal.notifications import services as notifications
    from portal.queue import send_now

    settings.MODELGATE_TASK_QUEUE = "portal.queue.CeleryQueue"

    def unreachable(name, **options):
        raise ConnectionError("no broker")

    monkeypatch.setattr(app, "send_task", unreachable)
    with pytest.raises(ConnectionError):
        send_now(EXPIRE)
    monkeypatch.setattr(notifications.Delivery.objects, "filter",
                        lambda **kw: type("Q", (), {"values_list": lambda *a, **k: [5]})())
    with pytest.raises(ConnectionError):
        notifications.requeue_due_deliveries()

    def out_of_time(name, **options):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(app, "send_task", out_of_time)
    with pytest.raises(SoftTimeLimitExceeded):
        with django_capture_on_commit_callbacks(execute=True):
            enqueue(EXPIRE)
