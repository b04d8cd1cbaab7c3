"""When a rule holds, and the evidence it hands the training run.

``findings(rule, now)`` answers what the rule's condition finds now, each ``Finding`` being
one reason to retrain with its evidence (JSON, sent to the target as it is):

- *drift*: the critical drift alerts (``DRIFT_ALERTS``) firing on one endpoint of the
  model, the oldest for at least ``for_minutes``: the incident (decision 56) merged over
  its alert names, so a feature alert and the dataset alert of one shift are one reason.
  Evidence: the alerts, the drifted features with their statistics from the latest drift
  windows, the window, the serving version. Its alerts' episodes are what a trigger claims.
- *accuracy*: the outcomes fed back to a running A/B test of the model (binary: 1 when the
  prediction was right), per variant over the last ``for_minutes`` (rounded out to the
  ten-minute buckets they are kept in); a variant with at least ``min_outcomes`` whose
  rate is below ``min_accuracy`` holds. Feedback exists only while a test runs.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Sum

from ops import drift as ops_drift
from ops.rollout.plans import CANDIDATE, STABLE
from ops.rollout.state import ENDED
from portal.experiments.choices import OutcomeKind
from portal.experiments.models import BUCKET_SECONDS, Experiment, OutcomeBucket
from portal.monitoring.choices import AlertState, Severity
from portal.monitoring.models import Alert, DriftWindow
from portal.notifications.services import absolute_url
from portal.releases.models import Deployment
from portal.retraining.choices import DRIFT_ALERTS, Condition

STATISTICS = ("psi", "ks", "ks_pvalue", "js_distance", "wasserstein", "chi2_pvalue")


@dataclass
class Finding:
    reason: str
    evidence: dict
    environment: object = None
    serving_version: object = None
    alert: Alert | None = None  # the lead alert (drift)
    episodes: list[tuple[int, datetime]] = field(default_factory=list)


def findings(rule, now: datetime) -> list[Finding]:
    if rule.condition == Condition.DRIFT:
        return drift_findings(rule, now)
    return accuracy_findings(rule, now)


def _rule(rule) -> dict:
    return {"id": rule.pk, "name": rule.name, "condition": rule.condition,
            "for_minutes": rule.for_minutes,
            **({"min_accuracy": rule.min_accuracy, "min_outcomes": rule.min_outcomes}
               if rule.condition == Condition.ACCURACY else {})}


def _version(version) -> dict | None:
    if version is None:
        return None
    return {"id": version.pk, "number": version.number, "label": version.label,
            "sha256": version.artifact_sha256, "url": absolute_url(version.get_absolute_url())}


def _base(rule, environment, endpoint: str, version) -> dict:
    model = rule.model
    return {"rule": _rule(rule), "project": model.project.slug, "model": model.name,
            "model_id": model.pk, "environment": environment.name if environment else "",
            "endpoint": endpoint, "serving_version": _version(version)}


# -- drift ---------------------------------------------------------------------------------------

def drift_findings(rule, now: datetime) -> list[Finding]:
    alerts = (Alert.objects.filter(model=rule.model, state=AlertState.FIRING,
                                   severity=Severity.CRITICAL, name__in=DRIFT_ALERTS)
              .select_related("environment").order_by("pk"))
    if rule.environment_id:
        alerts = alerts.filter(environment_id=rule.environment_id)
    by_endpoint: dict[tuple, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_endpoint[(alert.environment_id, alert.endpoint)].append(alert)
    found = []
    for members in by_endpoint.values():
        since = min(a.starts_at for a in members)
        if since > now - timedelta(minutes=rule.for_minutes):
            continue  # not firing long enough yet
        found.append(_drift_finding(rule, members, since, now))
    return found


def _drifted_features(windows: list[DriftWindow]) -> list[dict]:
    drifted = []
    for window in windows:
        for feature in (window.report or {}).get("features", []):
            if feature.get("verdict") in (ops_drift.WARNING, ops_drift.CRITICAL):
                drifted.append({"name": feature.get("name"), "variant": window.variant,
                                "verdict": feature.get("verdict"),
                                "rows": feature.get("count"),
                                **{s: feature.get(s) for s in STATISTICS}})
    return drifted


def _released(environment_id, endpoint: str):
    """What the endpoint's latest rollout serves (no drift window yet): its candidate once it
    succeeded, else its stable."""
    latest = (Deployment.objects.filter(environment_id=environment_id, endpoint=endpoint)
              .select_related("stable", "candidate").order_by("-created_at", "-id").first())
    if latest is None:
        return None
    return latest.candidate if latest.status == "succeeded" else (latest.stable
                                                                  or latest.candidate)


def _drift_finding(rule, members: list[Alert], since: datetime, now: datetime) -> Finding:
    lead = members[0]
    environment = lead.environment
    # The model's own windows: a multi-model endpoint holds other models' too (decision 68).
    windows = list(DriftWindow.objects.filter(environment_id=lead.environment_id,
                                              endpoint=lead.endpoint, model_id=rule.model_id)
                   .select_related("version").order_by("variant"))
    serving = next((w.version for w in windows if w.variant == STABLE and w.version), None) \
        or next((w.version for w in windows if w.version), None) \
        or _released(lead.environment_id, lead.endpoint)
    features = sorted({a.feature for a in members if a.feature})
    minutes = int((now - since).total_seconds() // 60)
    where = f"{lead.endpoint} in {environment.name}" if environment else lead.endpoint
    evidence = {
        **_base(rule, environment, lead.endpoint, serving),
        "condition": Condition.DRIFT,
        "alert": {"id": lead.pk, "name": lead.name, "severity": lead.severity,
                  "summary": lead.summary, "url": absolute_url(lead.get_absolute_url())},
        "alerts": [{"id": a.pk, "name": a.name, "feature": a.feature, "variant": a.variant,
                    "value": a.value, "since": a.starts_at.isoformat()} for a in members],
        "features": _drifted_features(windows),
        "window": {"from": since.isoformat(), "to": now.isoformat(),
                   "drift_window_seconds": max((w.window_seconds for w in windows),
                                               default=None)},
    }
    reason = (f"critical drift on {where} for {minutes} min"
              + (f" ({len(features)} feature{'s' if len(features) != 1 else ''}: "
                 f"{', '.join(features[:5])}{'…' if len(features) > 5 else ''})"
                 if features else ""))
    return Finding(reason[:300], evidence, environment, serving, lead,
                   [(a.pk, a.starts_at) for a in members])


# -- accuracy ------------------------------------------------------------------------------------

def _measured(experiment: Experiment, since: datetime) -> list[dict]:
    start = since - timedelta(seconds=since.timestamp() % BUCKET_SECONDS)
    sums = (OutcomeBucket.objects.filter(experiment=experiment, starts_at__gte=start)
            .values("variant").annotate(n=Sum("n"), total=Sum("total")))
    deployment = experiment.deployment
    versions = {STABLE: deployment.stable, CANDIDATE: deployment.candidate}
    return [{"variant": row["variant"], "version": versions.get(row["variant"]),
             "outcomes": int(row["n"] or 0),
             "accuracy": (row["total"] / row["n"]) if row["n"] else None} for row in sums]


def accuracy_findings(rule, now: datetime) -> list[Finding]:
    since = now - timedelta(minutes=rule.for_minutes)
    experiments = (Experiment.objects.filter(deployment__model=rule.model,
                                             kind=OutcomeKind.BINARY)
                   .exclude(deployment__status__in=[str(s) for s in ENDED])
                   .select_related("deployment__stable", "deployment__candidate",
                                   "deployment__environment"))
    if rule.environment_id:
        experiments = experiments.filter(deployment__environment_id=rule.environment_id)
    found = []
    for experiment in experiments:
        measured = _measured(experiment, since)
        low = [m for m in measured if m["accuracy"] is not None
               and m["outcomes"] >= rule.min_outcomes and m["accuracy"] < rule.min_accuracy]
        if low:
            found.append(_accuracy_finding(rule, experiment, measured,
                                           min(low, key=lambda m: m["accuracy"]), since, now))
    return found


def _accuracy_finding(rule, experiment, measured, worst, since, now) -> Finding:
    deployment = experiment.deployment
    version = worst["version"]
    evidence = {
        **_base(rule, deployment.environment, deployment.endpoint, version),
        "condition": Condition.ACCURACY,
        "experiment": {"id": experiment.pk, "metric": experiment.metric,
                       "url": absolute_url(experiment.get_absolute_url())},
        "measured": [{"variant": m["variant"], "version": m["version"].number
                      if m["version"] else None, "outcomes": m["outcomes"],
                      "accuracy": m["accuracy"]} for m in measured],
        "window": {"from": since.isoformat(), "to": now.isoformat()},
    }
    name = f"v{version.number}" if version else worst["variant"]
    reason = (f"measured accuracy of {name} on {deployment.endpoint} in "
              f"{deployment.environment.name} is {worst['accuracy']:.3f} over "
              f"{worst['outcomes']} outcomes (below {rule.min_accuracy:g})")
    return Finding(reason[:300], evidence, deployment.environment, version)
