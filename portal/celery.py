"""The Celery app: reads Django settings under the CELERY namespace.

Workers and beat run it as ``celery -A portal worker`` / ``celery -A portal beat``. Its
tasks live in ``workers/`` (``app.conf.imports``), thin wrappers over portal services; the
portal itself never imports them and queues work by task name (``portal.queue``).

Every task has a soft and a hard time limit (``CELERY_TASK_SOFT_TIME_LIMIT`` and
``CELERY_TASK_TIME_LIMIT`` by default, tighter or looser per task in the task modules);
a task that names an ``on_time_limit`` recorder gets its object marked failed with the
reason when either limit stops it (``BoundedTask``), so nothing stays pending for ever.
"""

import gc
import importlib
import logging
import os

from celery import Celery, Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_shutdown,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # must exist before any sample is written
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

log = logging.getLogger(__name__)


class BoundedTask(Task):
    """A task whose time limits end in a failure recorded on its object.

    ``on_time_limit``: ``"module:function"`` called with the task's arguments and a
    reason ("took longer than 300 s"). A soft limit raises ``SoftTimeLimitExceeded`` in
    the task, and Celery calls ``on_failure`` in the pool process; a hard limit kills the
    pool process, and Celery calls ``on_failure`` in the worker's main process. Either way
    the object is marked failed (the recorders only change what is still pending).
    """

    on_time_limit: str | None = None

    def time_limit_reason(self, exc: BaseException) -> str:
        if isinstance(exc, TimeLimitExceeded):
            seconds = exc.args[0] if exc.args else (self.time_limit
                                                    or self.app.conf.task_time_limit)
            return f"took longer than {float(seconds):g} s and was stopped"
        # (hard, soft) when the caller set limits for this call, as apply_async(...) can
        _, soft = getattr(self.request, "timelimit", None) or (None, None)
        seconds = soft or self.soft_time_limit or self.app.conf.task_soft_time_limit
        return f"took longer than {float(seconds):g} s"

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        if isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
            reason = self.time_limit_reason(exc)
            log.warning("%s[%s] %s", self.name, task_id, reason)
            if self.on_time_limit:
                try:
                    module, _, name = self.on_time_limit.partition(":")
                    getattr(importlib.import_module(module), name)(*args, reason, **kwargs)
                except Exception:
                    log.exception("could not record the time limit of %s%s", self.name, args)
        return super().on_failure(exc, task_id, args, kwargs, einfo)


app = Celery("modelgate", task_cls=BoundedTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("workers.registry", "workers.releases", "workers.notifications",
                    "workers.monitoring", "workers.retraining")


@worker_init.connect
def preload_libraries(**kwargs):
    """Import the heavy libraries in the worker's main process, before the pool forks.

    Each prefork child then starts with them (shared copy-on-write) instead of importing
    pandas and scikit-learn itself: on a busy machine that took longer than Celery's
    start-up limit for a child (``worker_proc_alive_timeout``, 4 s by default), and the
    replacements of a killed child were killed in turn, again and again. The objects
    imported are frozen out of garbage collection, so collections in the children do not
    touch (and copy) their pages. ``MODELGATE_WORKER_PRELOAD``: comma-separated modules.
    """
    from django.conf import settings

    for name in settings.MODELGATE_WORKER_PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError as e:
            log.warning("could not preload %s: %s", name, e)
    gc.collect()
    gc.freeze()


def _connect_metrics():
    from portal import observability

    task_prerun.connect(observability.task_started, weak=False)
    task_postrun.connect(observability.task_finished, weak=False)
    task_failure.connect(observability.task_failed, weak=False)


_connect_metrics()


@worker_init.connect
def serve_metrics(**kwargs):
    """Task durations, failures and queue depth on ``MODELGATE_WORKER_METRICS_PORT`` (set
    ``PROMETHEUS_MULTIPROC_DIR`` too with the prefork pool, so children's samples count)."""
    port = os.environ.get("MODELGATE_WORKER_METRICS_PORT")
    if not port:
        return
    from prometheus_client import start_http_server

    from portal.observability import registry_for_scrape

    start_http_server(int(port), addr=os.environ.get("MODELGATE_WORKER_METRICS_ADDR", "0.0.0.0"),
                      registry=registry_for_scrape())


@worker_process_shutdown.connect
def forget_process(pid=None, **kwargs):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())


class QueueCollector:
    """Messages waiting in the broker's queue, read when Prometheus scrapes (``/metrics``:
    ``modelgate_broker_up`` and ``modelgate_task_queue_length``)."""

    def collect(self):
        from django.conf import settings
        from prometheus_client.core import GaugeMetricFamily

        up = GaugeMetricFamily("modelgate_broker_up", "1 when the task broker answered")
        length = GaugeMetricFamily("modelgate_task_queue_length",
                                   "Tasks waiting in the broker's queue", labels=["queue"])
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        try:
            waiting = _queue_length(queue)
        except Exception:  # noqa: BLE001 - a dead broker is a value, not a failed scrape
            up.add_metric([], 0)
        else:
            up.add_metric([], 1)
            if waiting is not None:
                length.add_metric([queue], waiting)
        yield up
        yield length


def _queue_length(queue: str) -> int | None:
    with app.connection_for_read() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
        channel = conn.default_channel
        size = getattr(channel, "_size", None)  # kombu's virtual transports (Redis...)
        if size is not None:
            return int(size(queue))
        _, count, _ = channel.queue_declare(queue=queue, passive=True)  # AMQP
        return int(count)
