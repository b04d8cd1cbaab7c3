"""The portal's processes and the commands that run them, in one place.

The Kubernetes manifests (``deploy/kubernetes``) and the one-machine install
(``manage.py machine_install``: a Procfile or systemd units) run these commands; a test
checks the manifests against this table. The workers' queues are the settings' (a
``MODELGATE_CELERY_QUEUE`` of your own renames both), so a worker consumes exactly what
tasks are sent to: rollouts on their own queue, everything else on the other.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Process:
    name: str
    command: tuple[str, ...]
    description: str
    oneshot: bool = False  # runs to the end before the others start (the migration)
    # The local backend's model servers are started by the rollout workers in sessions of
    # their own: stopping the worker must not stop them (systemd's KillMode=process).
    starts_model_servers: bool = False


def worker(queue: str) -> tuple[str, ...]:
    return ("celery", "-A", "portal", "worker", "--loglevel", "INFO", "--concurrency", "2",
            "-P", "prefork", "-Q", queue)


def processes(beat_schedule: str = "/tmp/celerybeat-schedule", queue: str | None = None,
              rollout_queue: str | None = None) -> list[Process]:
    """The processes; the queues are the settings' unless given (``machine_install`` reads
    them from the environment file the processes will run with)."""
    queue = queue or settings.CELERY_TASK_DEFAULT_QUEUE
    rollout_queue = rollout_queue or settings.MODELGATE_ROLLOUT_QUEUE
    return [
        Process("migrate", ("python", "manage.py", "migrate", "--noinput"),
                "applies the database migrations (before the others start)", oneshot=True),
        Process("web", ("gunicorn", "-c", "python:portal.gunicorn_conf", "portal.wsgi"),
                "the portal's pages and API (gunicorn; MODELGATE_BIND)"),
        Process("worker", worker(queue),
                "validation, SHAP, release diffs, profiles, measurements, notifications"),
        Process("rollout-worker", worker(rollout_queue),
                "rollouts, rollbacks and alert handling, on their own queue",
                starts_model_servers=True),
        Process("beat", ("celery", "-A", "portal", "beat", "--loglevel", "INFO",
                         "--schedule", beat_schedule),
                "the periodic tasks (exactly one beat)"),
    ]
