"""Release tasks: thin wrappers that take ids and call ``portal.releases`` services."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from ops.backends.base import BackendUnavailable

# The database away (a restart, a failover): the task is tried again after 1, 2, 4, 8, 16 s;
# past that, reconcile_deployments re-queues a rollout whose decision is overdue.
RETRIED = (BackendUnavailable, OperationalError, InterfaceError)


@shared_task
def expire_requests() -> int:
    """Close approval requests older than their environment's approval TTL."""
    from portal.releases import services

    return services.expire_requests()


@shared_task(autoretry_for=RETRIED, retry_backoff=True, retry_jitter=False, max_retries=5)
def start_deployment(request_id: int) -> None:
    from portal.releases import deployments

    deployments.start_deployment(request_id)


@shared_task(autoretry_for=RETRIED, retry_backoff=True, retry_jitter=False, max_retries=5)
def advance_deployment(deployment_id: int, step_id: int | None = None) -> None:
    from portal.releases import deployments

    deployments.advance(deployment_id, step_id)


@shared_task(soft_time_limit=600, time_limit=660)
def compute_release_diff(request_id: int) -> None:
    """Candidate against champion, for the approver (see explainability.diff)."""
    from portal.releases import services

    services.compute_release_diff(request_id)


@shared_task
def reconcile_deployments() -> int:
    """Re-queue rollouts whose next decision is overdue (lost task, killed worker)."""
    from portal.releases import deployments

    return deployments.reconcile()
