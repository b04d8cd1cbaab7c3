"""Monitoring and periodic tasks: thin wrappers over ``portal.monitoring``, retention and the
audit chain's checkpoints (each is safe to run twice)."""

from celery import shared_task

# Time limits (soft, hard) in seconds: each periodic job runs again at its next period, so
# one stopped at its limit is only late. Retention deletes in batches, hourly.
PERIODIC = {"soft_time_limit": 120, "time_limit": 150}


@shared_task(ignore_result=True, **PERIODIC)
def sync_prometheus() -> dict:
    """Write scrape targets and rules for what runs now; reload Prometheus if they changed."""
    from portal.monitoring import prometheus_sync

    return prometheus_sync.sync()


@shared_task(ignore_result=True, **PERIODIC)
def compute_drift() -> int:
    """Compare every served variant's live inputs with its baseline."""
    from portal.monitoring import drift

    return drift.compute_all()


@shared_task(ignore_result=True, soft_time_limit=60, time_limit=90)
def poll_alerts() -> dict:
    """Bring Prometheus's firing alerts into the portal."""
    from portal.monitoring import alerts, drift

    return alerts.poll(drift.client())


@shared_task(ignore_result=True, soft_time_limit=480, time_limit=540)
def apply_retention() -> dict:
    """Delete drift windows and ended A/B tests' outcome rows past their retention."""
    from portal import retention

    return retention.purge()


@shared_task(ignore_result=True, **PERIODIC)
def checkpoint_audit_chain() -> int | None:
    """Write the audit chain's head outside the database (``portal/audit/checkpoints.py``);
    the number of the checkpoint written, None when the head has not moved."""
    from portal.audit import services

    checkpoint = services.write_checkpoint()
    return checkpoint.seq if checkpoint else None
