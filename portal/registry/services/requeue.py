"""Queued work sent again.

Validation, profiles, explanations and measurements are queued by task name (portal.queue.enqueue) when
their transaction commits; a broker away leaves them pending, and ``requeue_stuck_work``
(beat, every minute: workers.registry.requeue_stuck_work) queues them again.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from portal.queue import send_now
from portal.registry.choices import EvaluationStatus, ProfileStatus, VersionStatus
from portal.registry.models import Dataset, Evaluation, ModelVersion

log = logging.getLogger(__name__)


def requeue_stuck_work(older_than_seconds: int = 120) -> int:
    """Re-queue validations and profiles that no worker finished (broker lost, worker killed),
    explanations of ready versions that never ran, and explanations of rows pending longer
    than a worker takes (``LOST_AFTER``); how many were queued."""
    from django.db.models import Q

    cutoff = timezone.now() - timedelta(seconds=older_than_seconds)
    versions = list(ModelVersion.objects.filter(status=VersionStatus.PENDING, created_at__lt=cutoff)
                    .values_list("pk", flat=True)[:500])
    datasets = list(Dataset.objects.filter(profile_status=ProfileStatus.PENDING,
                                           created_at__lt=cutoff).values_list("pk", flat=True)[:500])
    for pk in versions:
        send_now("workers.registry.validate_version", pk)
    for pk in datasets:
        send_now("workers.registry.profile_dataset", pk)
    explain = []
    if settings.MODELGATE_EXPLAIN_VERSIONS:  # ready versions whose explanation never ran
        explain = list(ModelVersion.objects.filter(status=VersionStatus.READY,
                                                   validated_at__lt=cutoff)
                       .filter(Q(explanation__isnull=True)
                               | Q(explanation__status="pending",
                                   explanation__updated_at__lt=cutoff - timedelta(minutes=10)))
                       .values_list("pk", flat=True)[:100])
        for pk in explain:
            send_now("workers.registry.explain_version", pk)
    from portal.registry.services.evaluations import CLAIM_SECONDS, queue_missing

    stale = timezone.now() - timedelta(seconds=CLAIM_SECONDS)
    measure = list(Evaluation.objects.filter(status=EvaluationStatus.PENDING,
                                             created_at__lt=cutoff)
                   .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=stale))
                   .values_list("pk", flat=True)[:100])
    for pk in measure:
        send_now("workers.registry.evaluate_version", pk)
    from portal.registry.choices import ImportStatus
    from portal.registry.models import MlflowImport
    from portal.registry.services.explanations import (
        LOST_AFTER,
        lost_instance_explanations,
        requeue_instances,
    )
    from portal.registry.services.mlflow import CLAIM_STALE_AFTER

    # MLflow imports whose task was lost (broker away at request, worker killed): the
    # claim is free or stale; _claim lets only one delivery run it.
    imports = list(MlflowImport.objects.filter(
        status=ImportStatus.PENDING, created_at__lt=cutoff - timedelta(minutes=15))
        .filter(Q(claimed_at__isnull=True) | Q(claimed_at__lt=timezone.now() - CLAIM_STALE_AFTER))
        .values_list("pk", flat=True)[:100])
    for pk in imports:
        send_now("workers.registry.import_mlflow_version", pk)
    rows = lost_instance_explanations(max(LOST_AFTER, timedelta(seconds=older_than_seconds)))
    requeue_instances(rows, send=send_now)
    queue_missing()  # pairs never created (a version ready while its dataset was profiled)
    if versions or datasets or explain or measure or rows:
        log.info("requeued %d validations, %d profiles, %d explanations, %d measurements and "
                 "%d explanations of rows", len(versions), len(datasets), len(explain),
                 len(measure), len(rows))
    return len(versions) + len(datasets) + len(explain) + len(measure) + len(rows)
