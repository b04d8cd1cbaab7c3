"""Firing triggers (one run per incident, a cooldown per rule) and sending them.

``evaluate(now)`` is beat's: every active rule's condition is looked at, and a finding
fires a trigger through ``fire``, which claims in one transaction (a) the rule's cooldown,
by a conditional UPDATE of ``last_triggered_at``, and (b) the incident, by inserting its
alerts' episodes into ``TriggerClaim`` (unique): two evaluations racing — overlapping beat
runs, two workers — fire one trigger, and an incident fires one run however many rules
look at it. The trigger is audited and queued after commit.

``send(trigger_id)`` makes one attempt, claimed like a webhook delivery (the UPDATE that
still finds the attempt count it read). An unreachable target (no connection, timeout,
429, 5xx) leaves the trigger ``retrying`` with the error and the next attempt's time, and
raises ``TriggerRetry`` for the task to retry with backoff; a refusal (4xx, bad settings)
or the last attempt failing leaves it ``failed`` with the reason. Every outcome is audited.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from ops.exceptions import TransientError
from ops.retraining import RunRequest, TargetError, TargetUnreachable
from portal.audit import services as audit
from portal.queue import enqueue, send_now
from portal.retraining import conditions, targets
from portal.retraining.choices import (
    BACKOFF_BASE_SECONDS,
    BACKOFF_MAX_SECONDS,
    MAX_ATTEMPTS,
    TriggerState,
)
from portal.retraining.models import RetrainingRule, RetrainingTrigger, TriggerClaim

log = logging.getLogger(__name__)

SEND = "workers.retraining.send_trigger"
SWEPT = "the periodic evaluation sends it again"
ATTEMPT_LEASE = timedelta(seconds=60)
CLOCK_TOLERANCE = timedelta(seconds=5)
REQUEUE_GRACE = timedelta(minutes=2)
OPEN = (TriggerState.PENDING, TriggerState.RETRYING)


class TriggerRetry(TransientError):
    """An attempt found the target unreachable; the next is scheduled (the task retries)."""

    code = "trigger_retry"

    def __init__(self, detail: str, retry_in: float):
        super().__init__(detail)
        self.detail = detail
        self.retry_in = retry_in


class _Claimed(Exception):
    """The incident already fired a trigger (rolls the firing back)."""


def backoff(attempt: int) -> timedelta:
    return timedelta(seconds=min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (attempt - 1)))


# -- firing --------------------------------------------------------------------------------------

def _cooled(rule: RetrainingRule, now: datetime) -> Q:
    return Q(last_triggered_at__isnull=True) | Q(
        last_triggered_at__lte=now - timedelta(minutes=rule.cooldown_minutes))


def in_cooldown(rule: RetrainingRule, now: datetime) -> bool:
    return bool(rule.last_triggered_at and rule.cooldown_minutes and
                rule.last_triggered_at > now - timedelta(minutes=rule.cooldown_minutes))


def fire(rule: RetrainingRule, finding: conditions.Finding,
         now: datetime | None = None) -> RetrainingTrigger | None:
    """Fire ``rule`` on ``finding``: the trigger, or None when the rule is cooling down, or
    the incident already fired one (claimed by this or another rule)."""
    now = now or timezone.now()
    episodes = finding.episodes
    try:
        with transaction.atomic():
            # Race: two evaluations of the rule at once. The UPDATE takes the row's lock;
            # the second waits, then finds the cooldown claimed and updates nothing.
            if not RetrainingRule.objects.filter(_cooled(rule, now), pk=rule.pk,
                                                 active=True).update(last_triggered_at=now):
                return None
            claimed = Q()
            for alert_id, start in episodes:
                claimed |= Q(alert_id=alert_id, episode_start=start)
            if episodes and TriggerClaim.objects.filter(claimed).exists():
                raise _Claimed
            trigger = RetrainingTrigger.objects.create(
                rule=rule, model=rule.model, environment=finding.environment,
                serving_version=finding.serving_version, alert=finding.alert,
                rule_name=rule.name, condition=rule.condition, target=rule.target,
                kind=targets.kind_of(rule.target), params=rule.params, reason=finding.reason,
                evidence={**finding.evidence, "trigger_id": None}, next_attempt_at=now)
            trigger.evidence["trigger_id"] = trigger.pk
            RetrainingTrigger.objects.filter(pk=trigger.pk).update(evidence=trigger.evidence)
            # Race: two rules (or evaluations) on one incident. The unique episodes let one
            # insert through; the other's IntegrityError rolls its whole firing back.
            TriggerClaim.objects.bulk_create(
                TriggerClaim(alert_id=alert_id, episode_start=start, trigger=trigger)
                for alert_id, start in episodes)
            audit.record(None, "retraining.trigger", trigger, project_id=rule.model.project_id,
                         object_repr=f"retraining trigger {trigger.pk} of {rule.model.name}",
                         changes={"rule": rule.name, "reason": finding.reason,
                                  "target": rule.target, "alert": finding.alert.pk
                                  if finding.alert else None})
            enqueue(SEND, trigger.pk, recovery=SWEPT)
    except (_Claimed, IntegrityError):
        return None
    except TargetError as e:  # the operator removed the rule's target since
        log.warning("retraining rule %s cannot fire: %s", rule.pk, e.detail)
        return None
    return trigger


def evaluate(now: datetime | None = None) -> dict:
    """Look at every active rule once; fire what holds; re-send triggers whose task was lost."""
    now = now or timezone.now()
    fired = looked = 0
    rules = (RetrainingRule.objects.filter(active=True, model__archived_at__isnull=True)
             .select_related("model__project", "environment"))
    for rule in rules:
        if in_cooldown(rule, now):
            continue
        looked += 1
        for finding in conditions.findings(rule, now):
            if fire(rule, finding, now):
                fired += 1
                break  # the cooldown now holds the rule
    return {"rules": looked, "fired": fired, "requeued": requeue_due(now)}


def requeue_due(now: datetime) -> int:
    overdue = list(RetrainingTrigger.objects.filter(state__in=OPEN,
                                                    next_attempt_at__lt=now - REQUEUE_GRACE)
                   .values_list("pk", flat=True)[:200])
    for trigger_id in overdue:
        send_now(SEND, trigger_id)
    return len(overdue)


# -- sending -------------------------------------------------------------------------------------

def _attempt(trigger: RetrainingTrigger, now: datetime) -> dict:
    """Make one attempt; the fields to record."""
    try:
        target = targets.build(trigger.target, rule_id=trigger.rule_id,
                               project=trigger.model.project.slug)
        started = target.start(RunRequest(trigger.pk, trigger.run_name, trigger.evidence,
                                          trigger.params))
    except TargetUnreachable as e:
        if trigger.attempts < MAX_ATTEMPTS:
            return {"state": TriggerState.RETRYING, "last_error": e.detail[:300],
                    "next_attempt_at": now + backoff(trigger.attempts)}
        return {"state": TriggerState.FAILED, "next_attempt_at": None,
                "last_error": f"gave up after {trigger.attempts} attempts: {e.detail}"[:300]}
    except TargetError as e:
        return {"state": TriggerState.FAILED, "last_error": e.detail[:300],
                "next_attempt_at": None}
    # The link is shown on pages: only a web address (a webhook's receiver chooses it).
    url = started.url if started.url.startswith(("https://", "http://")) else ""
    return {"state": TriggerState.SENT, "last_error": "", "next_attempt_at": None,
            "run_id": started.run_id[:200], "run_url": url[:500], "sent_at": now}


def send(trigger_id: int, *, now: datetime | None = None) -> RetrainingTrigger | None:
    """Make the next attempt of a trigger if it is due, and record what happened."""
    now = now or timezone.now()
    trigger = (RetrainingTrigger.objects.select_related("model__project")
               .filter(pk=trigger_id).first())
    if trigger is None or trigger.state not in OPEN:
        return trigger
    due = Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now + CLOCK_TOLERANCE)
    attempt = trigger.attempts + 1
    # The claim: a redelivered task and the sweep read the same count; one UPDATE finds it.
    if not (RetrainingTrigger.objects.filter(due, pk=trigger.pk, state__in=OPEN,
                                             attempts=trigger.attempts)
            .update(attempts=attempt, next_attempt_at=now + ATTEMPT_LEASE)):
        return trigger
    trigger.attempts = attempt
    fields = _attempt(trigger, now)
    with transaction.atomic():
        RetrainingTrigger.objects.filter(pk=trigger.pk, attempts=attempt).update(**fields)
        for key, value in fields.items():
            setattr(trigger, key, value)
        audit.record(None, f"retraining.{trigger.state}", trigger,
                     project_id=trigger.model.project_id,
                     object_repr=f"retraining trigger {trigger.pk} of {trigger.model.name}",
                     changes={"attempt": attempt, "target": trigger.target,
                              **({"run_id": trigger.run_id, "run_url": trigger.run_url}
                                 if trigger.state == TriggerState.SENT else
                                 {"error": trigger.last_error})})
    if trigger.state == TriggerState.RETRYING:
        raise TriggerRetry(f"attempt {attempt} of trigger {trigger.pk}: {trigger.last_error}",
                           retry_in=backoff(attempt).total_seconds())
    return trigger
