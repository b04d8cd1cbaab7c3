"""Retention: rows that only grow, deleted once they are no longer read.

- Drift windows older than ``MODELGATE_DRIFT_RETENTION_DAYS`` (90): the monitoring pages
  read at most the last day, the rollout analysis the last minutes.
- The per-prediction outcome rows of A/B tests that ended more than
  ``MODELGATE_OUTCOME_RETENTION_DAYS`` (30) ago. Readouts read the per-variant totals and
  ten-minute buckets, which are kept; the rows only served the duplicate check, and an
  ended test refuses feedback anyway.

Audit events are never deleted (they form a hash chain). Each purge that deleted anything
is itself an audit event, with its counts. Rows go in batches, so no statement holds its
locks for long. 0 days keeps everything.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

BATCH = 5_000


def _delete_in_batches(queryset) -> int:
    deleted = 0
    while True:
        ids = list(queryset.values_list("pk", flat=True)[:BATCH])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(pk__in=ids).delete()[0]


def purge(now=None) -> dict[str, int]:
    """Delete what the retention settings no longer keep; the counts deleted, by kind."""
    from ops import rollout
    from portal.audit import services as audit
    from portal.experiments.models import Outcome
    from portal.monitoring.models import DriftWindow

    now = now or timezone.now()
    counts = {"drift_windows": 0, "outcomes": 0}
    if settings.MODELGATE_DRIFT_RETENTION_DAYS > 0:
        cutoff = now - timedelta(days=settings.MODELGATE_DRIFT_RETENTION_DAYS)
        counts["drift_windows"] = _delete_in_batches(
            DriftWindow.objects.filter(computed_at__lt=cutoff))
    if settings.MODELGATE_OUTCOME_RETENTION_DAYS > 0:
        cutoff = now - timedelta(days=settings.MODELGATE_OUTCOME_RETENTION_DAYS)
        counts["outcomes"] = _delete_in_batches(Outcome.objects.filter(
            experiment__deployment__status__in=[str(s) for s in rollout.ENDED],
            experiment__deployment__finished_at__lt=cutoff))
    if any(counts.values()):
        audit.record(None, "retention.purge", None, object_type="retention",
                     object_repr="retention", changes={
                         "deleted": counts,
                         "kept_days": {"drift_windows": settings.MODELGATE_DRIFT_RETENTION_DAYS,
                                       "outcomes": settings.MODELGATE_OUTCOME_RETENTION_DAYS}})
    return counts
