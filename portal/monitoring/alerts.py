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
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
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


def ingest(incoming: list[Incoming], source: str, now: datetime | None = None) -> list[Alert]:
    """Record what Prometheus reported; returns the alerts whose state changed."""
    now = now or timezone.now()
    changed = []
    for item in incoming:
        key = fingerprint(item.labels)
        with transaction.atomic():
            # The row is locked so that polling and the Alertmanager receiver, reporting the
            # same condition at once, take turns; get_or_create survives both creating it.
            alert, created = Alert.objects.select_for_update().get_or_create(
                fingerprint=key, defaults={
                    "labels": item.labels, "name": item.labels["alertname"][:200],
                    "severity": item.labels.get("severity", "warning")[:16],
                    "endpoint": item.labels.get("endpoint", "")[:120],
                    "variant": item.labels.get("variant", "")[:64],
                    "feature": item.labels.get("feature", "")[:200],
                    "state": item.state, "source": source, "starts_at": item.starts_at,
                    "last_seen_at": now, **_place(item.labels)})
            before = None if created else alert.state
            if item.state == AlertState.FIRING and before != AlertState.FIRING:
                alert.starts_at, alert.ends_at = item.starts_at, None
                alert.acknowledged_by, alert.acknowledged_at = None, None
                alert.acknowledge_comment = ""
            if item.state == AlertState.RESOLVED:
                alert.ends_at = item.ends_at or now
            alert.state = item.state
            alert.source = source
            alert.annotations = item.annotations or alert.annotations
            alert.value = item.value or alert.value
            alert.last_seen_at = now
            alert.save()
            if before != alert.state and not (before is None
                                                and alert.state == AlertState.RESOLVED):
                changed.append(alert)
                _announce(alert)
    return changed


def _resolve_missing(seen: set[str], now: datetime) -> list[Alert]:
    gone = []
    for alert in Alert.objects.filter(state=AlertState.FIRING, source=AlertSource.PROMETHEUS) \
            .exclude(fingerprint__in=seen):
        with transaction.atomic():
            updated = Alert.objects.filter(pk=alert.pk, state=AlertState.FIRING).update(
                state=AlertState.RESOLVED, ends_at=now, last_seen_at=now)
            if updated:
                alert.refresh_from_db()
                gone.append(alert)
                _announce(alert)
    return gone


def poll(prometheus: PrometheusClient | None, now: datetime | None = None) -> dict:
    """One round of polling ``/api/v1/alerts``."""
    now = now or timezone.now()
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
    return {"polled": True, "firing": len(incoming), "changed": len(changed) + len(resolved)}


def _announce(alert: Alert) -> None:
    if alert.project_id is None or alert.silenced:
        return
    from portal.notifications.services import notify

    event = Event.ALERT_FIRING if alert.state == AlertState.FIRING else Event.ALERT_RESOLVED
    notify(alert.project, event, {
        "alert_id": alert.pk, "alert": alert.name, "severity": alert.severity,
        "model": alert.labels.get("model", ""), "environment": alert.labels.get("environment", ""),
        "endpoint": alert.endpoint, "variant": alert.variant, "feature": alert.feature,
        "summary": alert.summary, "value": alert.value, "url": alert.get_absolute_url()})


# -- people ------------------------------------------------------------------------------------


def _require(user, alert: Alert, action: str) -> None:
    if alert.project_id is None:
        if not user.is_staff:
            raise NotAllowed(f"only staff may {action} alerts outside any project")
        return
    require_role(user, alert.project, Role.CONTRIBUTOR, f"{action} alerts")


def acknowledge(user, alert: Alert, comment: str) -> Alert:
    _require(user, alert, "acknowledge")
    comment = (comment or "").strip()
    if not comment:
        raise ValidationFailed("say what is being done about it", field="comment")
    with transaction.atomic():
        alert.acknowledged_by, alert.acknowledged_at = user, timezone.now()
        alert.acknowledge_comment = comment[:2000]
        alert.save(update_fields=["acknowledged_by", "acknowledged_at", "acknowledge_comment"])
        audit.record(user, "alert.acknowledge", alert, project_id=alert.project_id,
                     changes={"comment": comment[:2000]})
    return alert


def silence(user, alert: Alert, *, until: datetime, reason: str) -> Alert:
    _require(user, alert, "silence")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationFailed("give a reason for the silence", field="reason")
    now = timezone.now()
    if until is None or until <= now:
        raise ValidationFailed("the silence must end in the future", field="until")
    if until - now > MAX_SILENCE:
        raise ValidationFailed("silences last at most 30 days", field="until")
    with transaction.atomic():
        alert.silenced_by, alert.silenced_until, alert.silence_reason = user, until, reason[:2000]
        alert.save(update_fields=["silenced_by", "silenced_until", "silence_reason"])
        audit.record(user, "alert.silence", alert, project_id=alert.project_id,
                     changes={"until": until.isoformat(), "reason": reason[:2000]})
    return alert


def unsilence(user, alert: Alert) -> Alert:
    _require(user, alert, "unsilence")
    with transaction.atomic():
        alert.silenced_until = None
        alert.save(update_fields=["silenced_until"])
        audit.record(user, "alert.unsilence", alert, project_id=alert.project_id)
    return alert
