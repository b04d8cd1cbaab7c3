"""The Celery app: reads Django settings under the CELERY namespace."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

app = Celery("modelgate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.imports = ("workers.registry",)
