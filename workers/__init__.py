"""Celery tasks: thin wrappers that take ids and call ``portal`` services. The app is
``portal.celery`` (``celery -A portal worker``); importing it first makes it the current app,
which the tasks' ``shared_task`` bind to."""

import portal.celery  # noqa: F401
