"""Release tasks: thin wrappers that take ids and call ``portal.releases`` services."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from ops.backends.base import BackendUnavailable

# The database away (a restart, a failover): the task is tried again after 1, 2, 4, 8, 16 s;
# past that, reconcile_deployments re-queues a rollout whose decision is overdue.
RETRIED = (BackendUnavailable, OperationalError, InterfaceError)
# Time limits (soft, hard) in seconds. A rollout decision is short (a backend call, a few
# Prometheus queries; a local model server gets 60 s to come up): one stopped at its limit
# is decided again when reconcile finds its next decision overdue. The release diff runs
# two models and their SHAP explanations, so it gets nine minutes (every hard limit stays
# under the broker's redelivery timeout, MODELGATE_TASK_REDELIVERY_SECONDS, 600 s).
ROLLOUT_LIMITS = {"soft_time_limit": 180, "time_limit": 210}


@shared_task(soft_time_limit=60, time_limit=90)
def expire_requests() -> int:
    """Close approval requests older than their environment's approval TTL."""
    from portal.releases import services

    return services.expire_requests()


@shared_task(autoretry_for=RETRIED, retry_backoff=True, retry_jitter=False, max_retries=5,
             **ROLLOUT_LIMITS)
def start_deployment(request_id: int) -> None:
    from portal.releases import deployments

    deployments.start_deployment(request_id)


@shared_task(autoretry_for=RETRIED, retry_backoff=True, retry_jitter=False, max_retries=5,
             **ROLLOUT_LIMITS)
def advance_deployment(deployment_id: int, step_id: int | None = None) -> None:
    from portal.releases import deployments

    deployments.advance(deployment_id, step_id)


@shared_task(soft_time_limit=540, time_limit=570,
             on_time_limit="portal.releases.services:release_diff_timed_out")
def compute_release_diff(request_id: int) -> None:
    """Candidate against champion, for the approver (see explainability.diff)."""
    from portal.releases import services

    services.compute_release_diff(request_id)


@shared_task(autoretry_for=(OperationalError, InterfaceError), retry_backoff=True,
             max_retries=5, soft_time_limit=60, time_limit=90)
def judge_measured(version_id: int) -> int:
    """A version was measured on evaluation data: judge its open requests' gates again."""
    from portal.releases import comparison

    return comparison.judge_measured(version_id)


@shared_task(soft_time_limit=60, time_limit=90)
def reconcile_deployments() -> int:
    """Re-queue rollouts whose next decision is overdue (lost task, killed worker)."""
    from portal.releases import deployments

    return deployments.reconcile()


@shared_task(autoretry_for=RETRIED, retry_backoff=True, retry_jitter=False, max_retries=5,
             **ROLLOUT_LIMITS)
def apply_multimodel_endpoint(endpoint_id: int) -> str:
    """Apply a multi-model endpoint's catalog (decision 68)."""
    from portal.releases import multimodel

    return multimodel.apply_endpoint(endpoint_id)
