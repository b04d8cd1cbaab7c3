"""The one way the portal queues background work: ``enqueue(task_name, *args, countdown=0)``.

The work is queued when the current transaction commits (at once outside one), so a change
that rolls back queues nothing and a worker never looks for a row that is not there yet. It
is sent by task name (``"workers.registry.validate_version"``): the portal never imports the
task modules in ``workers/``, which import the portal. A broker that cannot be reached is
logged, not raised: the work stays recorded as pending in the database, and the periodic
job named by ``recovery`` (requeue, reconcile, the webhook sweep) queues it again.

``MODELGATE_TASK_QUEUE`` names the implementation: ``CeleryQueue`` (the broker), or
``EagerQueue`` in tests (``CELERY_TASK_ALWAYS_EAGER``), which runs a task in this process
once the transaction commits and leaves follow-ups with a countdown to the test (running
them at once would race through every bake period); ``RecordingQueue`` records what was
queued for a test to inspect, and runs it as ``EagerQueue`` does unless the task is held.
"""

from __future__ import annotations

import importlib
import logging
from typing import NamedTuple

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils.module_loading import import_string

log = logging.getLogger(__name__)


def enqueue(task_name: str, *args, countdown: float = 0,
            recovery: str = "the periodic requeue will retry") -> None:
    """Queue ``task_name(*args)`` once the current transaction commits, in ``countdown``
    seconds; ``recovery`` says, in the warning logged when the broker is away, what picks
    the work up instead."""
    queue = get_queue()
    countdown = max(0.0, float(countdown))
    transaction.on_commit(lambda: _send(queue, task_name, args, countdown, recovery))


def send_now(task_name: str, *args, countdown: float = 0) -> None:
    """Queue ``task_name(*args)`` at once, raising what the broker raises: for the periodic
    sweeps (outside any transaction, in a worker), whose task must fail, and show in the
    task failure metrics, when the broker they requeue through is away."""
    get_queue().send(task_name, args, max(0.0, float(countdown)))


def _send(queue: TaskQueue, task_name: str, args: tuple, countdown: float,
          recovery: str) -> None:
    try:
        queue.send(task_name, args, countdown)
    except SoftTimeLimitExceeded:  # the calling task's own limit: not a broker failure
        raise
    except Exception as e:  # kombu raises many connection errors; the work is not lost
        log.warning("could not queue %s%s (%s); %s", task_name, args, e, recovery)


_queues: dict[str, TaskQueue] = {}


def get_queue() -> TaskQueue:
    """The queue ``MODELGATE_TASK_QUEUE`` names (one instance per class)."""
    path = settings.MODELGATE_TASK_QUEUE
    queue = _queues.get(path)
    if queue is None:
        queue = _queues[path] = import_string(path)()
    return queue


def celery_app():
    from portal.celery import app

    return app


class TaskQueue:
    def send(self, task_name: str, args: tuple, countdown: float) -> None:
        raise NotImplementedError


class CeleryQueue(TaskQueue):
    """Through the broker, with the publish retry policy of the settings
    (``CELERY_TASK_PUBLISH_RETRY_POLICY``: a dead broker must not stall a request)."""

    def send(self, task_name: str, args: tuple, countdown: float) -> None:
        app = celery_app()
        app.send_task(task_name, args=list(args), countdown=countdown or None,
                      ignore_result=app.conf.task_ignore_result)


class EagerQueue(TaskQueue):
    """In this process (tests): a task without a countdown runs at once, as Celery's eager
    mode runs it; a follow-up with a countdown is not run (the test drives it)."""

    def send(self, task_name: str, args: tuple, countdown: float) -> None:
        if countdown > 0:
            log.debug("eager queue: not running %s%s in %g s", task_name, args, countdown)
            return
        from celery.utils import uuid
        from kombu import serialization

        app = celery_app()
        task = self.task(task_name)
        # Through the serializer, as a message would be (a tuple arrives as a list).
        content_type, encoding, data = serialization.dumps((list(args), {}),
                                                           app.conf.task_serializer)
        args, kwargs = serialization.loads(data, content_type, encoding,
                                           accept=[content_type])
        task.apply(args, kwargs, task_id=uuid())

    @staticmethod
    def task(task_name: str):
        """The registered task called ``task_name``, its module imported as a worker does
        (the app's ``imports``)."""
        app = celery_app()
        if task_name not in app.tasks:
            for module in app.conf.imports:
                importlib.import_module(module)
        return app.tasks[task_name]


class Sent(NamedTuple):
    task_name: str
    args: tuple
    countdown: float


class RecordingQueue(EagerQueue):
    """Records every task queued (``sent``); runs it as ``EagerQueue`` does unless its name
    is in ``held`` (``"*"`` holds every task). Tests call ``reset()`` first."""

    def __init__(self):
        self.sent: list[Sent] = []
        self.held: set[str] = set()

    def reset(self) -> RecordingQueue:
        self.sent.clear()
        self.held.clear()
        return self

    def hold(self, *task_names: str) -> RecordingQueue:
        self.held.update(task_names or ("*",))
        return self

    def args_of(self, task_name: str) -> list[tuple]:
        return [s.args for s in self.sent if s.task_name == task_name]

    def send(self, task_name: str, args: tuple, countdown: float) -> None:
        self.sent.append(Sent(task_name, tuple(args), countdown))
        if "*" not in self.held and task_name not in self.held:
            super().send(task_name, args, countdown)
