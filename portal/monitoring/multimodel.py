"""What monitoring adds to a multi-model endpoint's page (decision 68): each member's drift
verdict, or why it has none, and the endpoint's firing alerts. Registered as a section of
the page (``portal.releases.multimodel_views.add_section``) from ``MonitoringConfig.ready``:
releases, below monitoring, cannot import it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from ops.serving.toplabels import OTHER
from portal.monitoring import drift, queries
from portal.monitoring.endpoints import served_multimodel_endpoints
from portal.monitoring.views import drift_summary

MAX_ALERTS = 20


@dataclass(frozen=True)
class MemberDrift:
    """One member's drift as its row shows it: a verdict with its window, or why none."""

    version: object = None  # the ModelVersion its applied catalog holds
    verdict: str = ""  # the worst feature's (drift_summary), "" when not judged
    drifted: int = 0
    total: int = 0
    window: object = None  # the DriftWindow
    stale: bool = False
    url: str = ""
    reason: str = ""  # why there is no verdict


def member_drift(user, endpoint, members) -> dict[int, MemberDrift]:
    """Each member's drift by member id (members of an endpoint never applied: none)."""
    environment = endpoint.environment
    served = next((s for s in served_multimodel_endpoints([environment])
                   if s.endpoint.pk == endpoint.pk), None)
    if served is None:
        return {}
    windows = {w.variant: w for w in queries.drift_windows_for(user, environment,
                                                               served.name)}
    stale_before = timezone.now() - timedelta(seconds=settings.MODELGATE_DRIFT_STALE_SECONDS)
    page = reverse("monitoring:endpoint", args=[environment.project.slug, environment.name,
                                                served.name])
    found = {}
    for member in members:
        name = member.model.name
        _, version = served.members.get(name, (None, None))
        window = windows.get(name)
        if version is None:
            found[member.pk] = MemberDrift(reason="not served (see why in the catalog)")
        elif not drift.baseline_of(version):
            found[member.pk] = MemberDrift(
                version, reason=f"v{version.number} has no training data profile to compare "
                                "with")
        elif window is None:
            found[member.pk] = MemberDrift(version, reason=(
                f"not judged: it is not among the {endpoint.top_models} busiest (by traffic), "
                "which alone keep a metric label of their own; the rest are counted together "
                f"as {OTHER}, whose inputs are not binned"))
        else:
            summary = drift_summary((window.report or {}).get("features", []))
            found[member.pk] = MemberDrift(
                version, verdict=summary["worst"], drifted=summary["drifted"], total=summary["total"],
                window=window, stale=window.computed_at < stale_before,
                url=f"{page}?variant={name}")
    return found


def endpoint_section(user, endpoint, members) -> dict:
    """The context the page's drift column and alerts section read."""
    return {
        "member_drift": member_drift(user, endpoint, members),
        "endpoint_alerts": list(queries.alerts_for(user).filter(
            environment=endpoint.environment, endpoint=endpoint.backend_endpoint,
            state="firing")[:MAX_ALERTS]),
        "monitoring_section": True,
    }
