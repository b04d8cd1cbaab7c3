"""The Celery app: reads Django settings under the CELERY namespace."""

import os

from celery import Celery
from celery.signals import (
    task_failure,
    task_postrun,
    task_prerun,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):  # must exist before any sample is written
    os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

app = Celery("modelgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("workers.registry", "workers.releases", "workers.notifications",
                    "workers.monitoring")


@worker_process_init.connect
def preload_libraries(**kwargs):
    """Import the heavy libraries once per worker process, not inside the first task."""
    import pandas  # noqa: F401
    import sklearn.ensemble  # noqa: F401
    import skops.io  # noqa: F401


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
