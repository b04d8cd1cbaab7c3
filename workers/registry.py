"""Registry tasks: artifact validation and dataset profiling, outside the web process."""

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from ops.exceptions import TransientError

# Also tried again when the database is away for a moment (a restart, a failover).
RETRIED = (TransientError, OperationalError, InterfaceError)

log = logging.getLogger(__name__)


# Time limits (soft, hard) in seconds; the default (CELERY_TASK_SOFT_TIME_LIMIT and
# CELERY_TASK_TIME_LIMIT, 300 and 360) where none is given. A limit that stops a task
# marks its object failed with the reason (on_time_limit, see workers.celery.BoundedTask).
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
    from portal.registry.choices import ProfileStatus, VersionStatus
    from portal.registry.models import Dataset, ModelVersion

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    versions = list(ModelVersion.objects.filter(status=VersionStatus.PENDING, created_at__lt=cutoff)
                    .values_list("pk", flat=True)[:500])
    datasets = list(Dataset.objects.filter(profile_status=ProfileStatus.PENDING,
                                           created_at__lt=cutoff).values_list("pk", flat=True)[:500])
    for pk in versions:
        validate_version.delay(pk)
    for pk in datasets:
        profile_dataset.delay(pk)
    explain = []
    if settings.MODELGATE_EXPLAIN_VERSIONS:  # ready versions whose explanation never ran
        from django.db.models import Q

        explain = list(ModelVersion.objects.filter(status=VersionStatus.READY,
                                                   validated_at__lt=cutoff)
                       .filter(Q(explanation__isnull=True)
                               | Q(explanation__status="pending",
                                   explanation__updated_at__lt=cutoff - timedelta(minutes=10)))
                       .values_list("pk", flat=True)[:100])
        for pk in explain:
            explain_version.delay(pk)
    if versions or datasets or explain:
        log.info("requeued %d validations, %d profiles and %d explanations", len(versions),
                 len(datasets), len(explain))
    return len(versions) + len(datasets) + len(explain)
