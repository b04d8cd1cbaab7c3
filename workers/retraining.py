"""Retraining tasks: thin wrappers around ``portal.retraining`` (each safe to run twice)."""

from celery import shared_task

from portal.retraining.choices import BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS, MAX_ATTEMPTS


@shared_task(ignore_result=True, soft_time_limit=120, time_limit=150)
def evaluate_rules() -> dict:
    """Look at every active retraining rule; fire what holds; re-send lost triggers."""
    from portal.retraining import services

    return services.evaluate()


# An unreachable target: the service records the attempt, schedules the next and raises
# TriggerRetry; the retry (same backoff numbers, no jitter) arrives when it is due. A
# trigger whose retry is lost is sent again by evaluate_rules.
@shared_task(bind=True, ignore_result=True, soft_time_limit=60, time_limit=90,
             max_retries=MAX_ATTEMPTS - 1)
def send_trigger(self, trigger_id: int) -> None:
    from portal.retraining import services

    try:
        services.send(trigger_id)
    except services.TriggerRetry as e:
        raise self.retry(countdown=min(BACKOFF_MAX_SECONDS, max(BACKOFF_BASE_SECONDS,
                                                                 e.retry_in))) from e
