"""The Celery app: reads Django settings under the CELERY namespace."""

import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

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
