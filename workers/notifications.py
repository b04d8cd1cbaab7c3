"""Notification tasks: webhook deliveries, thin wrappers around ``portal.notifications``."""

from celery import shared_task

from portal.notifications.choices import BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS, MAX_ATTEMPTS
from portal.notifications.exceptions import DeliveryRetry


# Time limits: one delivery is one HTTP request with its own timeout; one stopped at its
# limit keeps its claim's lease and requeue_deliveries sends it again when that expires.
# No jitter: the retry must arrive when the service scheduled the next attempt (same backoff
# numbers); an early arrival finds the delivery not yet due and does nothing. The service
# itself marks the delivery failed after MAX_ATTEMPTS, so max_retries is only the backstop.
@shared_task(autoretry_for=(DeliveryRetry,), retry_backoff=BACKOFF_BASE_SECONDS,
             retry_backoff_max=BACKOFF_MAX_SECONDS, retry_jitter=False,
             max_retries=MAX_ATTEMPTS - 1, soft_time_limit=60, time_limit=90)
def deliver_webhook(delivery_id: int) -> None:
    from portal.notifications import services

    services.deliver(delivery_id)


@shared_task(soft_time_limit=60, time_limit=90)
def requeue_deliveries() -> int:
    """Re-queue pending deliveries well past their due time (lost task, broker away)."""
    from portal.notifications import services

    return services.requeue_due_deliveries()
