"""Registry tasks: artifact validation and dataset profiling, outside the web process."""

import logging
from datetime import timedelta

from celery import shared_task
from django.utils import timezone

from ops.exceptions import TransientError

log = logging.getLogger(__name__)


@shared_task(autoretry_for=(TransientError,), retry_backoff=True, max_retries=5)
def validate_version(version_id: int) -> None:
    from portal.registry import services

    services.validate_version(version_id)


@shared_task(autoretry_for=(TransientError,), retry_backoff=True, max_retries=5)
def profile_dataset(dataset_id: int) -> None:
    from portal.registry import services

    services.profile_dataset(dataset_id)


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
    if versions or datasets:
        log.info("requeued %d validations and %d profiles", len(versions), len(datasets))
    return len(versions) + len(datasets)
