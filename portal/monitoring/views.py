"""Monitoring pages: alerts, one endpoint's health and drift, and the portal's /metrics."""

from __future__ import annotations

import hmac
import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from ops import drift as ops_drift
from portal.accounts.choices import Role
from portal.accounts.services import has_role
from portal.errors import NotFound
from portal.monitoring import alerts, drift, incidents, queries
from portal.monitoring.choices import AlertState
from portal.monitoring.endpoints import served_endpoints, served_multimodel_endpoints
from portal.monitoring.filtersets import AlertFilterSet
from portal.monitoring.live import NO_PROMETHEUS, live_charts, rollout_marks
from portal.monitoring.metrics import exposition
from portal.monitoring.models import SyncStatus
from portal.releases import queries as release_queries
from portal.views import handle_action

WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
SILENCES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1),
            "7d": timedelta(days=7)}


def metrics(request):
    """Prometheus text format; with ``MODELGATE_METRICS_TOKEN`` set, only for its bearer.
    Without one, open in development and closed in the production profile (403: no
    credential could open it; ``portal.monitoring.checks`` warns at start-up)."""
    token = settings.MODELGATE_METRICS_TOKEN
    if not token and settings.MODELGATE_PRODUCTION:
        return HttpResponse("/metrics is closed: set MODELGATE_METRICS_TOKEN and have "
                            "Prometheus send it as a bearer token\n", status=403,
                            content_type="text/plain")
    if token:
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
            response = HttpResponse("a bearer token is required\n", status=401,
                                    content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(exposition(), content_type="text/plain; version=0.0.4; charset=utf-8")


def _problems() -> list[SyncStatus]:
    return list(SyncStatus.objects.filter(ok=False).order_by("job"))


def _can_act(user, alert) -> bool:
    return (user.is_staff if alert.project_id is None
            else has_role(user, alert.project, Role.CONTRIBUTOR))


@login_required
def alert_list(request):
    """Firing alerts as incidents (one row per cause and endpoint, its alerts expandable),
    then the alerts that no longer fire."""
    found = AlertFilterSet(request.GET, queryset=queries.alerts_for(request.user))
    matching = found.qs if found.is_valid() else found.queryset.none()
    state = request.GET.get("state")
    open_ = incidents.open_incidents(matching) if state != "resolved" else []
    page = Paginator(matching.exclude(state=AlertState.FIRING), 50) \
        .get_page(request.GET.get("page")) if state != "firing" else None
    projects = release_queries.environments_for(request.user).values_list(
        "project__slug", "project__name").distinct()
    return render(request, "monitoring/alert_list.html", {
        "incidents": open_, "actionable": {i.id for i in open_ if _can_act(request.user, i.lead)},
        "page": page, "filters": found.form, "projects": sorted(set(projects)),
        "silences": SILENCES, "problems": _problems(),
        "query": request.GET.copy().urlencode() if request.GET else "",
    })


@login_required
def alert_detail(request, pk):
    visible = queries.alerts_for(request.user)
    alert = get_object_or_404(visible, pk=pk)
    incident = incidents.firing_incident(visible, alert)
    return render(request, "monitoring/alert_detail.html", {
        "alert": alert, "project": alert.project, "can_act": _can_act(request.user, alert),
        "incident": incident, "endpoint_mark": incidents.endpoint_mark(incident, alert),
        "silences": SILENCES, "problems": _problems(),
    })


def _until(request):
    duration = SILENCES.get(request.POST.get("duration", ""))
    return timezone.now() + duration if duration else None


@login_required
@require_POST
def alert_action(request, pk, action):
    alert = get_object_or_404(queries.alerts_for(request.user), pk=pk)
    if action == "acknowledge":
        comment = request.POST.get("comment", "")
        return handle_action(
            request, lambda: alerts.acknowledge(request.user, alert, comment),
            success=lambda acted: alerts.acknowledged_message(acted, request.user),
            redirect_to=alert)
    if action == "silence":
        until = _until(request)
        return handle_action(
            request, lambda: alerts.silence(request.user, alert, until=until,
                                            reason=request.POST.get("reason", "")),
            success=f"Silenced until {until:%Y-%m-%d %H:%M} UTC." if until else "Silenced.",
            redirect_to=alert)
    if action == "unsilence":
        return handle_action(request, lambda: alerts.unsilence(request.user, alert),
                             success="Silence removed.", redirect_to=alert)
    raise Http404("no such action")


@login_required
@require_POST
def incident_action(request, pk, action):
    """Acknowledge, silence or unsilence the alerts of the incident alert ``pk`` is in that
    the page showed (its form posts their ids as ``alerts``) and that still fire."""
    try:
        incident = incidents.incident_of(queries.alerts_for(request.user), pk)
    except NotFound as e:
        raise Http404(e.detail) from None
    back = f"{reverse('monitoring:alerts')}#incident-{incident.id}"
    shown = request.POST.getlist("alerts") or None
    user, form = request.user, request.POST
    acts = {
        "acknowledge": lambda: incidents.acknowledge(user, incident, form.get("comment", ""),
                                                     shown=shown),
        "silence": lambda: incidents.silence(user, incident, until=_until(request),
                                             reason=form.get("reason", ""), shown=shown),
        "unsilence": lambda: incidents.unsilence(user, incident, shown=shown),
    }
    if action not in acts:
        raise Http404("no such action")
    return handle_action(request, acts[action], success=lambda outcome: outcome.message,
                         redirect_to=back)


# -- one endpoint ---------------------------------------------------------------------------------


SEVERITY = ("critical", "warning", "no_drift", "insufficient_data")


def drift_summary(features: list[dict]) -> dict:
    """How many features drifted and how badly: the badge takes the colour of the worst
    feature, so five critical features never sit in a green badge."""
    counts = {verdict: sum(1 for f in features if f.get("verdict") == verdict)
              for verdict in SEVERITY}
    worst = next((v for v in SEVERITY if counts[v]), "insufficient_data")
    return {"counts": counts, "worst": worst, "total": len(features),
            "drifted": counts["critical"] + counts["warning"]}


@login_required
def endpoint_monitoring(request, slug, name, endpoint):
    environment = get_object_or_404(release_queries.environments_for(request.user),
                                    project__slug=slug, name=name)
    served = next((s for s in served_endpoints([environment]) if s.endpoint == endpoint), None)
    multimodel = None if served else next(
        (s for s in served_multimodel_endpoints([environment]) if s.name == endpoint), None)
    windows = list(queries.drift_windows_for(request.user, environment, endpoint))
    if served is None and multimodel is None and not windows:
        raise Http404("nothing is served under this name here")
    window_key = request.GET.get("window", "1h")
    window = WINDOWS.get(window_key, WINDOWS["1h"])
    variants = list(served.variants) if served else [w.variant for w in windows]
    variant = request.GET.get("variant") if request.GET.get("variant") in variants else (
        "candidate" if "candidate" in variants else (variants[0] if variants else None))
    current = next((w for w in windows if w.variant == variant), None)
    options = served.settings() if served else None
    if served:
        thresholds = drift.thresholds_of(served)
    elif current is not None:  # a multi-model member's, or a past variant's: its model's own
        thresholds = drift.model_thresholds(current.model)
    else:
        thresholds = ops_drift.Thresholds()
    stale_before = timezone.now() - timedelta(seconds=settings.MODELGATE_DRIFT_STALE_SECONDS)
    features = (current.report.get("features", []) if current else [])
    ranked = sorted(features, key=lambda f: -(f.get("psi") or 0))
    feature = request.GET.get("feature") or (ranked[0]["name"] if ranked else None)

    live, comparison, unavailable = {}, None, ""
    member = multimodel.member(variant) if multimodel and variant else None
    if served is not None:
        live, comparison, unavailable = live_charts(
            served, window, variant, thresholds, [f["name"] for f in ranked], feature,
            marks=rollout_marks(served, time.time() - window))
    elif member is not None:  # no rollouts to mark: members change by catalog
        live, comparison, unavailable = live_charts(
            member, window, variant, thresholds, [f["name"] for f in ranked], feature)
    elif drift.client() is None:
        unavailable = NO_PROMETHEUS
    return render(request, "monitoring/endpoint.html", {
        "environment": environment, "project": environment.project, "endpoint": endpoint,
        "served": served, "windows": windows, "current": current, "features": ranked,
        "feature": feature, "variant": variant, "variants": variants, "window_key": window_key,
        "windows_choices": list(WINDOWS), "stale": current and current.computed_at < stale_before,
        "live": live, "comparison": comparison, "unavailable": unavailable,
        "thresholds": thresholds, "options": options, "problems": _problems(),
        "multimodel": multimodel,
        "summary": drift_summary(features),
        "alerts": queries.alerts_for(request.user).filter(environment=environment,
                                                          endpoint=endpoint)[:20],
    })
