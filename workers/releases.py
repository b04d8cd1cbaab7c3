"""Release tasks."""

from celery import shared_task


@shared_task
def expire_requests() -> int:
    """Close approval requests older than their environment's approval TTL."""
    from portal.releases import services

    return services.expire_requests()
