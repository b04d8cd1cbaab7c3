"""Registry tasks: artifact validation and dataset profiling, outside the web process."""

from celery import shared_task
from django.db import InterfaceError, OperationalError

from ops.exceptions import TransientError

# Also tried again when the database is away for a moment (a restart, a failover).
RETRIED = (TransientError, OperationalError, InterfaceError)


# Time limits (soft, hard) in seconds; the default (CELERY_TASK_SOFT_TIME_LIMIT and
# CELERY_TASK_TIME_LIMIT, 300 and 360) where none is given. A limit that stops a task
# marks its object failed with the reason (on_time_limit, see portal.celery.BoundedTask).
@shared_task(autoretry_for=RETRIED, retry_backoff=True, max_retries=5,
             on_time_limit="portal.registry.services:validation_timed_out")
def validate_version(version_id: int) -> None:
    from portal.registry import services

    services.validate_version(version_id)


# The file is read in a child process with its own deadline (MODELGATE_DATASET_PROFILE_SECONDS,
# 120 s by default), so the task's limits are only the backstop.
@shared_task(autoretry_for=RETRIED, retry_backoff=True, max_retries=5,
             on_time_limit="portal.registry.services:profile_timed_out")
def profile_dataset(dataset_id: int) -> None:
    from portal.registry import services

    services.profile_dataset(dataset_id)


@shared_task(autoretry_for=RETRIED, retry_backoff=True, max_retries=5,
             soft_time_limit=540, time_limit=570,
             on_time_limit="portal.registry.services:explanation_timed_out")
def explain_version(version_id: int) -> None:
    """SHAP for a version that became ready (bounded: a slow model explainer is stopped)."""
    from portal.registry import services

    services.explain_version(version_id)


# Predicting on a dataset within its limits (MODELGATE_DATASET_MAX_*) is quick; the limits
# stop a model that is not, and leave its measurement failed with the reason.
@shared_task(autoretry_for=RETRIED, retry_backoff=True, max_retries=5,
             soft_time_limit=300, time_limit=330,
             on_time_limit="portal.registry.services:evaluation_timed_out")
def evaluate_version(evaluation_id: int) -> None:
    """Measure a version on an evaluation dataset (held out, with the label)."""
    from portal.registry import services

    services.evaluate(evaluation_id)


def instances_timed_out(explanation_id: int, reason: str) -> None:
    from portal.registry import services

    services.explain_instances(explanation_id, timed_out=True)


@shared_task(soft_time_limit=60, time_limit=90,
             on_time_limit="workers.registry:instances_timed_out")
def explain_instances(explanation_id: int) -> None:
    """SHAP for rows someone asked about, within a minute (or a failed answer that says so)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from portal.registry import services

    try:
        services.explain_instances(explanation_id)
    except SoftTimeLimitExceeded:
        services.explain_instances(explanation_id, timed_out=True)


@shared_task(soft_time_limit=60, time_limit=90)
def requeue_stuck_work(older_than_seconds: int = 120) -> int:
    """Re-queue validations and profiles that no worker finished (broker lost, worker killed)."""
    from portal.registry import services

    return services.requeue_stuck_work(older_than_seconds)


# MLflow (decision 66). The download is bounded by MODELGATE_MLFLOW_TIMEOUT per request and
# the artifact size limit; a pickle's conversion by the sandbox's limits.
MLFLOW_IMPORT_RETRIES = 5


# Both limits under the broker's redelivery timeout (600 s): a task still running is never
# handed to a second worker.
@shared_task(bind=True, autoretry_for=(OperationalError, InterfaceError), retry_backoff=True,
             max_retries=MLFLOW_IMPORT_RETRIES, soft_time_limit=540, time_limit=570,
             on_time_limit="portal.registry.services.mlflow:import_timed_out")
def import_mlflow_version(self, import_id: int) -> None:
    """Download a model version from MLflow and register it; an unreachable server is tried
    again with backoff, and the last attempt records the import failed with the reason."""
    from portal.registry.services import mlflow

    final = self.request.retries >= MLFLOW_IMPORT_RETRIES
    try:
        mlflow.run_import(import_id, final_attempt=final)
    except TransientError as e:
        raise self.retry(exc=e, countdown=min(300, 10 * 2 ** self.request.retries)) from e


@shared_task(soft_time_limit=60, time_limit=90)
def sync_mlflow_follow(follow_id: int) -> int:
    """Look at MLflow for the versions a follow selects and request their imports."""
    from portal.registry.services import mlflow

    return len(mlflow.sync_follow(follow_id))


@shared_task(soft_time_limit=60, time_limit=90)
def poll_mlflow_follows() -> int:
    """Beat: a look at MLflow for every follow (where its webhooks are not available)."""
    from portal.registry.services import mlflow

    return mlflow.poll_follows()
