"""Incidents: the firing alerts of one cause on one endpoint, seen and handled together.

One drift event fires a critical alert per feature and variant: five features drifting on
both arms of a rollout were ten separate alerts, acknowledged one by one. An incident is the
set of alerts firing now that share a project, an environment, an endpoint and an alert name
(the cause); it lists their features and variants, and acknowledging or silencing it does
so to the alerts of it that the person was shown and that still fire (alerts that joined
since are left alone, and said), as one audited act (``incident.acknowledge``,
``incident.silence``, ``incident.unsilence``) after the same checks as one alert's. An alert
already acknowledged keeps its acknowledgement.

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
from portal.errors import NOT_FOUND, Conflict, NotFound, ValidationFailed
from portal.monitoring import alerts as alert_service
from portal.monitoring.choices import AlertState, Severity
from portal.monitoring.models import Alert
from portal.monitoring.variants import Serving, serving_variants

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
    def unacknowledged(self) -> list[Alert]:
        return [a for a in self.alerts if not a.acknowledged_at]

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
    known, on every variant the incident has: two at least).

    Never on a multi-model endpoint (decision 68): its variants are its models, each with
    its own inputs, and the few judged are not every model it serves."""
    if any((a.labels or {}).get("multimodel_endpoint") for a in incident.alerts):
        incident.endpoint_wide = set()
        for alert in incident.alerts:
            alert.endpoint_alert = False
        return
    every = incident.serving if incident.serving else frozenset(incident.variants)
    on = defaultdict(set)
    for alert in incident.alerts:
        on[alert.feature].add(alert.variant)
    incident.endpoint_wide = {feature for feature, variants in on.items()
                              if len(every) >= 2 and every <= variants}
    for alert in incident.alerts:
        alert.endpoint_alert = alert.feature in incident.endpoint_wide and bool(alert.variant)


def _may_serve(found: Serving | None, members: list[Alert]) -> frozenset[str] | None:
    """The variants that serve the endpoint, or may still: while a rollout's plan is not
    known to be in place (``Serving.settled``), a variant it removes may still take traffic,
    and the incident's own variants count too."""
    if found is None:
        return None
    if found.settled:
        return found.variants
    return found.variants | {a.variant for a in members if a.variant}


def group(firing: list[Alert], serving: dict | None = None) -> list[Incident]:
    """Firing alerts as incidents: critical first, then the newest."""
    if not firing:  # nothing to place: what serves where is not asked
        return []
    if serving is None:
        serving = serving_variants({a.environment_id for a in firing if a.environment_id})
    by_key: dict[tuple, list[Alert]] = defaultdict(list)
    for alert in firing:
        by_key[key_of(alert)].append(alert)
    incidents = []
    for key, members in by_key.items():
        found = serving.get((key[1], key[2]))
        incident = Incident(sorted(members, key=lambda a: (a.feature, a.variant, a.pk)),
                            _may_serve(found, members))
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


# -- people: one act over the alerts of an incident a person saw -------------------------------


@dataclass
class Outcome:
    """What one act on an incident did, and what it left alone.

    A person acts on the alerts they were shown; an incident is re-read at the act, and may
    have changed since: alerts that joined it are left alone (``not_shown``) and said, those
    that stopped firing are not touched (``no_longer_firing``).
    """

    incident: Incident  # as it was read for the act
    done: str  # "Acknowledged", "Silenced", "Removed the silence of"
    acted: list[Alert]  # the alerts the act changed
    unchanged: list[Alert] = field(default_factory=list)  # shown, left as they were
    not_shown: list[Alert] = field(default_factory=list)  # firing in it, not shown: untouched
    no_longer_firing: list[int] = field(default_factory=list)  # shown, firing in it no more
    until: datetime | None = None

    @property
    def message(self) -> str:
        said = [f"{self.done} {_alerts(len(self.acted))}"
                + (f" until {self.until:%Y-%m-%d %H:%M} UTC." if self.until else ".")]
        if self.unchanged and not self.acted:
            said = ["Nothing changed: the alerts shown were already acknowledged."]
        elif self.unchanged:
            n = len(self.unchanged)
            said.append(f"{n} already acknowledged "
                        f"{'keeps its' if n == 1 else 'keep their'} acknowledgement.")
        if self.no_longer_firing:
            n = len(self.no_longer_firing)
            said.append(f"{n} of the alerts shown no longer fire{'s' if n == 1 else ''}.")
        if self.not_shown:
            critical = sum(a.severity == Severity.CRITICAL for a in self.not_shown)
            said.append(f"{_alerts(len(self.not_shown))}"
                        + (f" ({critical} critical)" if critical else "")
                        + " joined the incident since it was shown and "
                        + ("was" if len(self.not_shown) == 1 else "were") + " left alone: "
                        "look at them.")
        return " ".join(said)


def _alerts(n: int) -> str:
    return f"{n} alert{'' if n == 1 else 's'}"


def _shown(incident: Incident, shown) -> Outcome:
    """The incident's alerts among ``shown`` (the ids of the alerts a person saw; None: the
    incident as it is now); a Conflict when none of those fires in it any more."""
    if shown is None:
        return Outcome(incident, "", list(incident.alerts))
    try:
        ids = {int(pk) for pk in shown}
    except (TypeError, ValueError):
        raise ValidationFailed("alerts must be the ids of the alerts shown",
                               field="alerts") from None
    chosen = [a for a in incident.alerts if a.pk in ids]
    outcome = Outcome(incident, "", chosen,
                      not_shown=[a for a in incident.alerts if a.pk not in ids],
                      no_longer_firing=sorted(ids - {a.pk for a in incident.alerts}))
    if not chosen:
        _changed(outcome)
    return outcome


def _changed(outcome: Outcome) -> None:
    others = (f"; {_alerts(len(outcome.not_shown))} joined it since: look again"
              if outcome.not_shown else "")
    raise Conflict(f"none of the alerts shown fires in this incident any more{others}",
                   code="incident_changed")


def _still_firing(outcome: Outcome) -> None:
    """Keep, of the chosen alerts, those that fire now, rows locked: a report resolving one
    meanwhile (``alerts._record`` locks the row too) waits, or is seen here."""
    firing = set(Alert.objects.select_for_update()
                 .filter(pk__in=[a.pk for a in outcome.acted], state=AlertState.FIRING)
                 .values_list("pk", flat=True))
    outcome.no_longer_firing += sorted(a.pk for a in outcome.acted if a.pk not in firing)
    outcome.acted = [a for a in outcome.acted if a.pk in firing]
    if not outcome.acted:
        _changed(outcome)


def _changes(outcome: Outcome, **more) -> dict:
    incident = outcome.incident
    return {**more, "alerts": [a.pk for a in outcome.acted], "features": incident.features,
            "variants": incident.variants,
            **({"not_shown": [a.pk for a in outcome.not_shown]} if outcome.not_shown else {})}


def _audit(user, action: str, outcome: Outcome, **changes) -> None:
    lead = outcome.incident.lead
    audit.record(user, action, lead, project_id=lead.project_id,
                 object_repr=f"incident: {outcome.incident}",
                 changes=_changes(outcome, **changes))


def acknowledge(user, incident: Incident, comment: str, shown=None) -> Outcome:
    """Acknowledge the alerts of ``incident`` among ``shown`` that nobody acknowledged yet
    (an acknowledgement is kept, as an alert's own is: ``alerts.mark_acknowledged``)."""
    comment = alert_service.check_acknowledge(user, incident.lead, comment)
    outcome = _shown(incident, shown)
    outcome.done = "Acknowledged"
    with transaction.atomic():
        _still_firing(outcome)
        fresh = alert_service.mark_acknowledged(outcome.acted, user, comment)
        outcome.unchanged = [a for a in outcome.acted if a not in fresh]
        outcome.acted = fresh
        if fresh:
            _audit(user, "incident.acknowledge", outcome, comment=comment)
    return outcome


def silence(user, incident: Incident, *, until: datetime, reason: str, shown=None) -> Outcome:
    reason = alert_service.check_silence(user, incident.lead, until, reason)
    outcome = _shown(incident, shown)
    outcome.done, outcome.until = "Silenced", until
    with transaction.atomic():
        _still_firing(outcome)
        alert_service.mark_silenced(outcome.acted, user, until, reason)
        _audit(user, "incident.silence", outcome, until=until.isoformat(), reason=reason)
    return outcome


def unsilence(user, incident: Incident, shown=None) -> Outcome:
    alert_service.require_actor(user, incident.lead, "unsilence")
    outcome = _shown(incident, shown)
    outcome.done = "Removed the silence of"
    with transaction.atomic():
        _still_firing(outcome)
        alert_service.mark_unsilenced(outcome.acted)
        _audit(user, "incident.unsilence", outcome)
    return outcome
