"""Alerts from Prometheus, by polling its API or through an Alertmanager webhook.

Both paths end in ``ingest``: each alert is keyed by a fingerprint of its label set (the
same condition from either path is one row), and its state moves firing → resolved →
firing again. A condition that starts firing, or is resolved, is announced through the
project's notification channels (``alert.firing`` / ``alert.resolved``), unless a person
silenced it. People acknowledge (the episode) and silence (until an expiry) with a reason;
both are audited.

Polling (``poll``) reads ``/api/v1/alerts``: firing alerts are upserted and the portal's
firing alerts from polling that Prometheus no longer lists are resolved. When Prometheus
cannot be reached nothing changes — alerts keep their last state, and the failure is
recorded for the pages to show.

An alert on a variant that no longer serves its endpoint (the rollout finished or was rolled
back, and its plan is in place) is resolved by the portal itself, with the reason in
``resolved_reason``: every poll looks (``resolve_unserved``, Prometheus reachable or not), and
a report of it firing, which Prometheus sends until the removed variant's series go stale,
does not reopen it. While the plan that removes it is not known to be applied (the backend
away or refusing it, ``variants.Serving.settled``) the variant may still take traffic: its
alerts are left to Prometheus, and a report of one firing is recorded as firing.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ops.prometheus import PrometheusClient, PrometheusUnavailable
from portal.accounts.choices import Role
from portal.accounts.services import require_role
from portal.audit import services as audit
from portal.errors import NotAllowed, ValidationFailed
from portal.monitoring.choices import AlertSource, AlertState
from portal.monitoring.models import Alert, SyncStatus
from portal.monitoring.variants import Serving, serving_variants
from portal.notifications.choices import Event
from portal.registry.models import Project, RegisteredModel
from portal.releases.models import Environment

log = logging.getLogger(__name__)
POLL_JOB = "alerts-poll"
MAX_SILENCE = timedelta(days=30)


@dataclass(frozen=True)
class Incoming:
    labels: dict
    annotations: dict
    state: str  # firing | resolved
    starts_at: datetime
    ends_at: datetime | None = None
    value: str = ""


def fingerprint(labels: dict) -> str:
    return hashlib.sha256(json.dumps(sorted(labels.items()), separators=(",", ":"))
                          .encode()).hexdigest()


_FRACTION = re.compile(r"(\.\d{6})\d+")


def _time(text, field: str, default: datetime | None = None) -> datetime | None:
    """An RFC 3339 time as Prometheus and Alertmanager write it (nanoseconds allowed)."""
    if text in (None, ""):
        return default
    if not isinstance(text, str):
        raise ValidationFailed(f"{field} must be an RFC 3339 time", field=field)
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip()))
    except ValueError:
        raise ValidationFailed(f"{field} is not an RFC 3339 time: {text[:40]!r}",
                               field=field) from None
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    # Alertmanager sends 0001-01-01T00:00:00Z for "no end".
    return None if parsed.year < 1971 else parsed


def _string_map(value, field: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ValidationFailed(f"{field} must map names to strings", field=field)
    if any("\x00" in k or "\x00" in v for k, v in value.items()):
        # PostgreSQL stores no NUL: the row could not be written (a 500, or a poll failing
        # for ever on the same alert).
        raise ValidationFailed(f"{field} cannot hold NUL characters", field=field)
    return value


def from_prometheus(alerts: list[dict], now: datetime) -> list[Incoming]:
    """Firing alerts from ``/api/v1/alerts`` (pending ones are not alerts yet)."""
    found = []
    for alert in alerts:
        if not isinstance(alert, dict) or alert.get("state") != "firing":
            continue
        try:
            labels = _string_map(alert.get("labels"), "labels")
            annotations = _string_map(alert.get("annotations"), "annotations")
            starts = _time(alert.get("activeAt"), "activeAt", now)
        except ValidationFailed as e:
            log.warning("ignoring a malformed alert from Prometheus: %s", e.detail)
            continue
        if "alertname" not in labels:
            continue
        found.append(Incoming(labels, annotations, AlertState.FIRING, starts,
                              value=str(alert.get("value", "")).replace("\x00", "")[:64]))
    return found


def from_alertmanager(body) -> list[Incoming]:
    """Alerts of an Alertmanager webhook body (version 4); ``ValidationFailed`` names the
    first problem."""
    if not isinstance(body, dict) or not isinstance(body.get("alerts"), list):
        raise ValidationFailed("expected an Alertmanager webhook body with an 'alerts' list",
                               field="alerts")
    now = timezone.now()
    found = []
    for i, alert in enumerate(body["alerts"]):
        where = f"alerts[{i}]"
        if not isinstance(alert, dict):
            raise ValidationFailed(f"{where} must be an object", field=where)
        status = alert.get("status")
        if status not in (AlertState.FIRING, AlertState.RESOLVED):
            raise ValidationFailed(f"{where}.status must be firing or resolved",
                                   field=f"{where}.status")
        labels = _string_map(alert.get("labels"), f"{where}.labels")
        if not labels.get("alertname"):
            raise ValidationFailed(f"{where}.labels needs an alertname",
                                   field=f"{where}.labels")
        annotations = _string_map(alert.get("annotations"), f"{where}.annotations")
        starts = _time(alert.get("startsAt"), f"{where}.startsAt", now)
        ends = _time(alert.get("endsAt"), f"{where}.endsAt")
        found.append(Incoming(labels, annotations, status, starts,
                              ends if status == AlertState.RESOLVED else None))
    return found


def _place(labels: dict) -> dict:
    """The project, model and environment an alert's labels name, where they exist."""
    project = Project.objects.filter(slug=labels.get("project", "")).first() \
        if labels.get("project") else None
    model = environment = None
    if project is not None:
        model = RegisteredModel.objects.filter(project=project,
                                               name=labels.get("model", "")).first()
        environment = Environment.objects.filter(project=project,
                                                 name=labels.get("environment", "")).first()
    return {"project": project, "model": model, "environment": environment}


def _unserved(item: Incoming, environment, serving: dict[tuple[int, str], Serving]) -> str:
    """Why a firing report is about a variant that no longer serves, or ""."""
    if environment is None or not item.labels.get("variant"):
        return ""
    found = serving.get((environment.pk, item.labels.get("endpoint", "")))
    return found.lacks(item.labels["variant"]) if found else ""


def ingest(incoming: list[Incoming], source: str, now: datetime | None = None) -> list[Alert]:
    """Record what Prometheus reported; returns the alerts whose state changed."""
    now = now or timezone.now()
    changed = []
    serving = None  # read once, and only when a report names a variant
    for item in incoming:
        place = _place(item.labels)
        reason = ""
        if item.state == AlertState.FIRING and item.labels.get("variant") and place["environment"]:
            serving = serving_variants() if serving is None else serving
            reason = _unserved(item, place["environment"], serving)
            if reason:
                item = replace(item, state=AlertState.RESOLVED, ends_at=None)
        alert = _record(item, place, source, now, reason)
        if alert is not None:
            changed.append(alert)
    return changed


def _record(item: Incoming, place: dict, source: str, now: datetime, reason: str) -> Alert | None:
    """Upsert one report; the alert if its state changed (announced), else None."""
    with transaction.atomic():
        # The row is locked so that polling and the Alertmanager receiver, reporting the
        # same condition at once, take turns; get_or_create survives both creating it.
        alert, created = Alert.objects.select_for_update().get_or_create(
            fingerprint=fingerprint(item.labels), defaults={
                "labels": item.labels, "name": item.labels["alertname"][:200],
                "severity": item.labels.get("severity", "warning")[:16],
                "endpoint": item.labels.get("endpoint", "")[:120],
                "variant": item.labels.get("variant", "")[:100],
                "feature": item.labels.get("feature", "")[:200],
                "state": item.state, "source": source, "starts_at": item.starts_at,
                "last_seen_at": now, **place})
        before = None if created else alert.state
        if item.state == AlertState.FIRING and before != AlertState.FIRING:
            alert.starts_at, alert.ends_at = item.starts_at, None
            alert.acknowledged_by, alert.acknowledged_at = None, None
            alert.acknowledge_comment = ""
            alert.resolved_reason = ""
        if item.state == AlertState.RESOLVED:
            # A removed variant's alert, reported firing again, keeps its first end.
            kept = alert.ends_at if before == AlertState.RESOLVED else None
            alert.ends_at = item.ends_at or kept or now
            if before != AlertState.RESOLVED:
                alert.resolved_reason = reason[:300]
        alert.state = item.state
        alert.source = source
        alert.annotations = item.annotations or alert.annotations
        alert.value = item.value or alert.value
        alert.last_seen_at = now
        alert.save()
        if before == alert.state or (before is None and alert.state == AlertState.RESOLVED):
            return None
        _announce(alert)
        return alert


def _resolve(alert: Alert, now: datetime, reason: str = "") -> bool:
    """Resolve a firing alert; False when someone else resolved it first."""
    with transaction.atomic():
        # Conditional: a poll and the receiver resolving it at once announce it once.
        updated = Alert.objects.filter(pk=alert.pk, state=AlertState.FIRING).update(
            state=AlertState.RESOLVED, ends_at=now, last_seen_at=now, resolved_reason=reason)
        if updated:
            alert.refresh_from_db()
            _announce(alert)
    return bool(updated)


def _resolve_missing(seen: set[str], now: datetime) -> list[Alert]:
    return [alert for alert in Alert.objects.filter(state=AlertState.FIRING,
                                                    source=AlertSource.PROMETHEUS)
            .exclude(fingerprint__in=seen) if _resolve(alert, now)]


def resolve_unserved(now: datetime | None = None) -> list[Alert]:
    """Resolve the firing alerts of variants that no longer serve their endpoint.

    A finished or rolled-back rollout removes a variant; its series end, but an alert
    reported by Alertmanager stays firing in the portal until Alertmanager says otherwise,
    and a polled one until Prometheus's rule stops (a drift gauge lasts until it is
    stale). The portal knows sooner: what its rollout serves now (``variants``), once the
    plan that removed the variant is applied — not merely decided.
    """
    now = now or timezone.now()
    firing = list(Alert.objects.filter(state=AlertState.FIRING, environment__isnull=False)
                  .exclude(variant="").exclude(endpoint=""))
    if not firing:
        return []
    serving = serving_variants({alert.environment_id for alert in firing})
    gone = []
    for alert in firing:
        found = serving.get((alert.environment_id, alert.endpoint))
        reason = found.lacks(alert.variant) if found else ""
        if reason and _resolve(alert, now, reason[:300]):
            gone.append(alert)
    return gone


def poll(prometheus: PrometheusClient | None, now: datetime | None = None) -> dict:
    """One round of polling ``/api/v1/alerts``."""
    now = now or timezone.now()
    unserved = resolve_unserved(now)  # what serves is the portal's to know: always looked at
    if prometheus is None:
        SyncStatus.record(POLL_JOB, False,
                          "no Prometheus is configured (set MODELGATE_PROMETHEUS_URL)")
        return {"polled": False}
    try:
        listed = prometheus.alerts()
    except PrometheusUnavailable as e:
        SyncStatus.record(POLL_JOB, False, f"alerts keep their last state: {e}")
        return {"polled": False, "error": str(e)}
    incoming = from_prometheus(listed, now)
    changed = ingest(incoming, AlertSource.PROMETHEUS, now)
    resolved = _resolve_missing({fingerprint(i.labels) for i in incoming}, now)
    SyncStatus.record(POLL_JOB, True, f"{len(incoming)} firing")
    return {"polled": True, "firing": len(incoming),
            "changed": len(changed) + len(resolved) + len(unserved)}


def _announce(alert: Alert) -> None:
    if alert.project_id is None or alert.silenced:
        return
    from portal.notifications.services import notify

    event = Event.ALERT_FIRING if alert.state == AlertState.FIRING else Event.ALERT_RESOLVED
    notify(alert.project, event, {
        "alert_id": alert.pk, "alert": alert.name, "severity": alert.severity,
        "model": alert.labels.get("model", ""), "environment": alert.labels.get("environment", ""),
        "endpoint": alert.endpoint, "variant": alert.variant, "feature": alert.feature,
        "summary": alert.summary, "value": alert.value, "url": alert.get_absolute_url(),
        **({"resolved_reason": alert.resolved_reason} if event == Event.ALERT_RESOLVED
           and alert.resolved_reason else {})})


# -- people ------------------------------------------------------------------------------------
# Each act is a check (role, then the rule) and a write of the rows; an incident
# (``portal.monitoring.incidents``) makes the same check on its alerts' project and writes
# all of its rows, audited once.


def require_actor(user, alert: Alert, action: str) -> None:
    if alert.project_id is None:
        if not user.is_staff:
            raise NotAllowed(f"only staff may {action} alerts outside any project")
        return
    require_role(user, alert.project, Role.CONTRIBUTOR, f"{action} alerts")


def check_acknowledge(user, alert: Alert, comment: str) -> str:
    """The comment to record, once ``user`` may acknowledge ``alert``."""
    require_actor(user, alert, "acknowledge")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("say what is being done about it", field="comment")
    return comment[:2000]


def check_silence(user, alert: Alert, until: datetime | None, reason: str) -> str:
    """The reason to record, once ``user`` may silence ``alert`` until ``until``."""
    require_actor(user, alert, "silence")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("give a reason for the silence", field="reason")
    now = timezone.now()
    if until is None or until <= now:
        raise ValidationFailed("the silence must end in the future", field="until")
    if until - now > MAX_SILENCE:
        raise ValidationFailed("silences last at most 30 days", field="until")
    return reason[:2000]


def _write(rows: list[Alert], **values) -> None:
    Alert.objects.filter(pk__in=[row.pk for row in rows]).update(**values)
    for row in rows:
        for name, value in values.items():
            setattr(row, name, value)


def mark_acknowledged(rows: list[Alert], user, comment: str) -> list[Alert]:
    """Acknowledge those of ``rows`` nobody acknowledged yet; returns them. In a transaction.

    An acknowledgement is a person's word on an episode ("rolling back"): a later one, of
    the alert or of its incident, never replaces it (the next episode starts unacknowledged).
    """
    # Locked: two people acknowledging at once, the first one's word is the one kept.
    open_ = set(Alert.objects.select_for_update()
                .filter(pk__in=[row.pk for row in rows], acknowledged_at__isnull=True)
                .values_list("pk", flat=True))
    fresh = [row for row in rows if row.pk in open_]
    _write(fresh, acknowledged_by=user, acknowledged_at=timezone.now(),
           acknowledge_comment=comment)
    return fresh


def mark_silenced(rows: list[Alert], user, until: datetime, reason: str) -> None:
    _write(rows, silenced_by=user, silenced_until=until, silence_reason=reason)


def mark_unsilenced(rows: list[Alert]) -> None:
    _write(rows, silenced_until=None)


def acknowledge(user, alert: Alert, comment: str) -> Alert:
    """Acknowledge ``alert``; one already acknowledged keeps its acknowledgement (returned
    as it is, see ``acknowledged_message``)."""
    comment = check_acknowledge(user, alert, comment)
    with transaction.atomic():
        if mark_acknowledged([alert], user, comment):
            audit.record(user, "alert.acknowledge", alert, project_id=alert.project_id,
                         changes={"comment": comment})
        else:
            alert.refresh_from_db()
    return alert


def acknowledged_message(alert: Alert, user) -> str:
    """What a person is told once they acknowledged ``alert`` (``acknowledge``)."""
    if alert.acknowledged_by_id is not None and alert.acknowledged_by_id != user.pk:
        return (f"Already acknowledged by {alert.acknowledged_by.get_username()}: their "
                "acknowledgement is kept.")
    return "Acknowledged."


def silence(user, alert: Alert, *, until: datetime, reason: str) -> Alert:
    reason = check_silence(user, alert, until, reason)
    with transaction.atomic():
        mark_silenced([alert], user, until, reason)
        audit.record(user, "alert.silence", alert, project_id=alert.project_id,
                     changes={"until": until.isoformat(), "reason": reason})
    return alert


def unsilence(user, alert: Alert) -> Alert:
    require_actor(user, alert, "unsilence")
    with transaction.atomic():
        mark_unsilenced([alert])
        audit.record(user, "alert.unsilence", alert, project_id=alert.project_id)
    return alert
