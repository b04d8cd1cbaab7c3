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


@shared_task(autoretry_for=RETRIED, retry_backoff=True, max_retries=5)
def validate_version(version_id: int) -> None:
    from portal.registry import services

    services.validate_version(version_id)


@shared_task(autoretry_for=RETRIED, retry_backoff=True, max_retries=5)
def profile_dataset(dataset_id: int) -> None:
    from portal.registry import services

    services.profile_dataset(dataset_id)


@shared_task(autoretry_for=RETRIED, retry_backoff=True, max_retries=5,
             soft_time_limit=600, time_limit=660)
def explain_version(version_id: int) -> None:
    """SHAP for a version that became ready (bounded: a slow model explainer is stopped)."""
    from portal.registry import services

    services.explain_version(version_id)


@shared_task(soft_time_limit=60, time_limit=90)
def explain_instances(explanation_id: int) -> None:
    """SHAP for rows someone asked about, within a minute (or a failed answer that says so)."""
    from celery.exceptions import SoftTimeLimitExceeded

    from portal.registry import services

    try:
        services.explain_instances(explanation_id)
    except SoftTimeLimitExceeded:
        services.explain_instances(explanation_id, timed_out=True)


@shared_task
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
