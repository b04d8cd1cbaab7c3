"""Celery tasks: thin wrappers that take ids and call ``portal`` services. The app is
``portal.celery`` (``celery -A portal worker``); importing it first makes it the current app,
which the tasks' ``shared_task`` bind to. ``app`` is here too, so ``celery -A workers``, the
command of earlier releases, still finds it (an operator's own unit files or charts)."""

from portal.celery import app

__all__ = ["app"]
