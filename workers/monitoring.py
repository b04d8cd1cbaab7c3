"""Monitoring tasks: thin wrappers over ``portal.monitoring`` (each is safe to run twice)."""

from celery import shared_task


@shared_task(ignore_result=True)
def sync_prometheus() -> dict:
    """Write scrape targets and rules for what runs now; reload Prometheus if they changed."""
    from portal.monitoring import prometheus_sync

    return prometheus_sync.sync()


@shared_task(ignore_result=True)
def compute_drift() -> int:
    """Compare every served variant's live inputs with its baseline."""
    from portal.monitoring import drift

    return drift.compute_all()


@shared_task(ignore_result=True)
def poll_alerts() -> dict:
    """Bring Prometheus's firing alerts into the portal."""
    from portal.monitoring import alerts, drift

    return alerts.poll(drift.client())


@shared_task(ignore_result=True)
def apply_retention() -> dict:
    """Delete drift windows and ended A/B tests' outcome rows past their retention."""
    from portal import retention

    return retention.purge()
