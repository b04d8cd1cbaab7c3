"""The portal's own metrics: request latency (web), task durations and failures (workers),
queue depth (read from the broker when scraped).

Series:
- ``modelgate_http_request_duration_seconds{method, route, status}`` (histogram): ``route``
  is the URL pattern that answered (``api/v1/versions/<pk>/``), never the raw path, so a
  scan of made-up URLs cannot blow up the series count;
- ``modelgate_task_duration_seconds{task, state}`` (histogram) and
  ``modelgate_task_failures_total{task, exception}``;
- ``modelgate_task_queue_length{queue}`` and ``modelgate_broker_up`` (gauges, at scrape:
  ``portal.celery.QueueCollector``, which reads the broker; this module imports no Celery app).

gunicorn runs several processes: with ``PROMETHEUS_MULTIPROC_DIR`` set before the app
imports prometheus_client (``portal/gunicorn_conf.py`` does it), every process writes its
samples there and ``/metrics`` sums them. Workers expose the same way on their own port
(``MODELGATE_WORKER_METRICS_PORT``), started by ``portal/celery.py``.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    multiprocess,
)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.5, 5.0, 10.0)
TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)

REQUEST_SECONDS = Histogram("modelgate_http_request_duration_seconds",
                            "Time to answer a request, by URL pattern and status class",
                            ["method", "route", "status"], buckets=LATENCY_BUCKETS)
TASK_SECONDS = Histogram("modelgate_task_duration_seconds", "Time a Celery task ran",
                         ["task", "state"], buckets=TASK_BUCKETS)
TASK_FAILURES = Counter("modelgate_task_failures_total", "Celery tasks that raised",
                        ["task", "exception"])


def registry_for_scrape() -> CollectorRegistry:
    """The process's own metrics, or every process's when running multi-process."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry(auto_describe=False)
        multiprocess.MultiProcessCollector(registry)
        return registry
    return REGISTRY


class RequestMetricsMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        match = getattr(request, "resolver_match", None)
        route = (match.route or match.url_name or "") if match else "unmatched"
        REQUEST_SECONDS.labels(request.method, route[:100] or "unmatched",
                               f"{response.status_code // 100}xx").observe(
            time.perf_counter() - started)
        return response


# -- Celery ---------------------------------------------------------------------------------

_started: dict[str, float] = {}


def task_started(task_id=None, **kwargs):
    _started[task_id] = time.perf_counter()


def task_finished(task_id=None, task=None, state=None, **kwargs):
    started = _started.pop(task_id, None)
    if started is not None and task is not None:
        TASK_SECONDS.labels(task.name, state or "UNKNOWN").observe(time.perf_counter() - started)


def task_failed(sender=None, exception=None, **kwargs):
    TASK_FAILURES.labels(getattr(sender, "name", "?"), type(exception).__name__).inc()
