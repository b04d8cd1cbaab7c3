"""Incidents: the firing alerts of one cause on one endpoint, seen and handled together.

One drift event fires a critical alert per feature and variant: five features drifting on
both arms of a rollout were ten separate alerts, acknowledged one by one. An incident is the
set of alerts firing now that share a project, an environment, an endpoint and an alert name
(the cause); it lists their features and variants, and acknowledging or silencing it does
so to every alert of it, as one audited act (``incident.acknowledge``, ``incident.silence``,
``incident.unsilence``) after the same checks as one alert's.

Incidents are computed from the alerts, not stored (decision 56): an incident is exactly the
alerts firing under its key now, so there is nothing to keep in step with the alerts'
episodes (an alert that resolves leaves it, one that fires again joins it unacknowledged)
and nothing to migrate. Its id is its oldest alert's (the lowest), and any of its alerts'
ids finds it, so a link or an API call made a moment ago still reaches it after the alert
it was named by resolved.

An alert firing, under the same name and feature, on every variant serving its endpoint
(two at least) is the endpoint's, not a candidate's failure: shifted inputs reach every
variant alike. Such alerts are marked (``endpoint_alert``) and so is an incident made only
of them; a rollout's analysis draws the same line (``ops/analysis.py``, decision 52).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction

from portal.audit import services as audit
from portal.errors import NOT_FOUND, NotFound
from portal.monitoring import alerts as alert_service
from portal.monitoring.choices import AlertState, Severity
from portal.monitoring.models import Alert
from portal.monitoring.variants import serving_variants

INPUT_DRIFT = "input drift on every variant: the inputs changed, not the candidate"
EVERY_VARIANT = "fires on every variant: the endpoint's problem, not the candidate's"


def key_of(alert: Alert) -> tuple:
    """What makes alerts one incident: project, environment, endpoint and cause."""
    return (alert.project_id, alert.environment_id, alert.endpoint, alert.name)


@dataclass
class Incident:
    alerts: list[Alert]  # firing, by feature then variant
    serving: frozenset[str] | None = None  # the variants serving the endpoint, when known
    endpoint_wide: set[str] = field(default_factory=set)  # features firing on every variant

    @property
    def lead(self) -> Alert:
        return min(self.alerts, key=lambda a: a.pk)

    @property
    def id(self) -> int:
        return self.lead.pk

    @property
    def key(self) -> tuple:
        return key_of(self.lead)

    def __str__(self):
        where = f" on {self.lead.endpoint}" if self.lead.endpoint else ""
        return f"{self.lead.name}{where} ({len(self.alerts)} alerts)"

    @property
    def severity(self) -> str:
        return min(self.alerts, key=lambda a: a.severity_rank).severity

    @property
    def since(self) -> datetime:
        return min(a.starts_at for a in self.alerts)

    @property
    def features(self) -> list[str]:
        return sorted({a.feature for a in self.alerts if a.feature})

    @property
    def variants(self) -> list[str]:
        return sorted({a.variant for a in self.alerts if a.variant})

    @property
    def acknowledged(self) -> bool:
        return all(a.acknowledged_at for a in self.alerts)

    @property
    def silenced(self) -> bool:
        return all(a.silenced for a in self.alerts)

    @property
    def state(self) -> str:
        """firing, partly acknowledged, acknowledged, or silenced (every alert of it)."""
        if self.silenced:
            return "silenced"
        if self.acknowledged:
            return "acknowledged"
        if any(a.acknowledged_at for a in self.alerts):
            return "partly acknowledged"
        return "firing"

    @property
    def endpoint_alert(self) -> bool:
        return all(a.endpoint_alert for a in self.alerts)

    @property
    def explanation(self) -> str:
        """Why it is the endpoint's, when it is; else ""."""
        return explanation_of(self.lead) if self.endpoint_alert else ""


def explanation_of(alert: Alert) -> str:
    if not getattr(alert, "endpoint_alert", False):
        return ""
    return INPUT_DRIFT if alert.feature else EVERY_VARIANT


def _mark(incident: Incident) -> None:
    """Mark the alerts firing on every variant that serves (or, when what serves is not
    known, on every variant the incident has: two at least)."""
    every = incident.serving if incident.serving else frozenset(incident.variants)
    on = defaultdict(set)
    for alert in incident.alerts:
        on[alert.feature].add(alert.variant)
    incident.endpoint_wide = {feature for feature, variants in on.items()
                              if len(every) >= 2 and every <= variants}
    for alert in incident.alerts:
        alert.endpoint_alert = alert.feature in incident.endpoint_wide and bool(alert.variant)


def group(firing: list[Alert], serving: dict | None = None) -> list[Incident]:
    """Firing alerts as incidents: critical first, then the newest."""
    if serving is None:
        serving = serving_variants({a.environment_id for a in firing if a.environment_id})
    by_key: dict[tuple, list[Alert]] = defaultdict(list)
    for alert in firing:
        by_key[key_of(alert)].append(alert)
    incidents = []
    for key, members in by_key.items():
        found = serving.get((key[1], key[2]))
        incident = Incident(sorted(members, key=lambda a: (a.feature, a.variant, a.pk)),
                            found.variants if found else None)
        _mark(incident)
        incidents.append(incident)
    incidents.sort(key=lambda i: i.since, reverse=True)
    incidents.sort(key=lambda i: Severity.values.index(i.severity)
                   if i.severity in Severity.values else len(Severity.values))
    return incidents


def open_incidents(alerts) -> list[Incident]:
    """The incidents of ``alerts`` (a queryset the user may see): its firing rows only."""
    return group(list(alerts.filter(state=AlertState.FIRING)))


def incident_of(alerts, alert_id) -> Incident:
    """The incident that the alert ``alert_id`` of ``alerts`` (a queryset the user may see)
    belongs to; NotFound when the alert is not theirs or its cause fires no more."""
    try:
        named = alerts.get(pk=alert_id)
    except (Alert.DoesNotExist, ValueError, TypeError):
        raise NotFound(NOT_FOUND) from None
    project, environment, endpoint, name = key_of(named)
    found = group(list(alerts.filter(state=AlertState.FIRING, project_id=project,
                                     environment_id=environment, endpoint=endpoint,
                                     name=name)))
    if not found:
        raise NotFound("nothing of this incident fires any more", code="incident_resolved")
    return found[0]


def firing_incident(alerts, alert: Alert) -> Incident | None:
    """The incident a firing ``alert`` is part of (for its page), or None."""
    if alert.state != AlertState.FIRING:
        return None
    try:
        return incident_of(alerts, alert.pk)
    except NotFound:
        return None


def endpoint_mark(incident: Incident | None, alert: Alert) -> str:
    """Why ``alert`` of ``incident`` is the endpoint's (see ``explanation_of``), or ""."""
    same = next((a for a in incident.alerts if a.pk == alert.pk), None) if incident else None
    return explanation_of(same) if same else ""


# -- people: one act over every alert of an incident ------------------------------------------


def _changes(incident: Incident, **more) -> dict:
    return {**more, "alerts": [a.pk for a in incident.alerts], "features": incident.features,
            "variants": incident.variants}


def _audit(user, action: str, incident: Incident, **changes) -> None:
    audit.record(user, action, incident.lead, project_id=incident.lead.project_id,
                 object_repr=f"incident: {incident}", changes=_changes(incident, **changes))


def acknowledge(user, incident: Incident, comment: str) -> Incident:
    comment = alert_service.check_acknowledge(user, incident.lead, comment)
    with transaction.atomic():
        alert_service.mark_acknowledged(incident.alerts, user, comment)
        _audit(user, "incident.acknowledge", incident, comment=comment)
    return incident


def silence(user, incident: Incident, *, until: datetime, reason: str) -> Incident:
    reason = alert_service.check_silence(user, incident.lead, until, reason)
    with transaction.atomic():
        alert_service.mark_silenced(incident.alerts, user, until, reason)
        _audit(user, "incident.silence", incident, until=until.isoformat(), reason=reason)
    return incident


def unsilence(user, incident: Incident) -> Incident:
    alert_service.require_actor(user, incident.lead, "unsilence")
    with transaction.atomic():
        alert_service.mark_unsilenced(incident.alerts)
        _audit(user, "incident.unsilence", incident)
    return incident
