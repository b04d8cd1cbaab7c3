"""Monitoring pages: alerts, one endpoint's health and drift, and the portal's /metrics."""

from __future__ import annotations

import hmac
import time
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from explainability import charts
from ops import drift as ops_drift
from ops.prometheus import PrometheusUnavailable
from portal.accounts.choices import Role
from portal.accounts.services import has_role
from portal.errors import DomainError
from portal.monitoring import alerts, drift, queries
from portal.monitoring.endpoints import served_endpoints
from portal.monitoring.filtersets import AlertFilterSet
from portal.monitoring.metrics import exposition
from portal.monitoring.models import SyncStatus
from portal.releases import queries as release_queries

WINDOWS = {"15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 24 * 3600}
SILENCES = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1),
            "7d": timedelta(days=7)}


def metrics(request):
    """Prometheus text format; with ``MODELGATE_METRICS_TOKEN`` set, only for its bearer."""
    token = settings.MODELGATE_METRICS_TOKEN
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


@login_required
def alert_list(request):
    found = AlertFilterSet(request.GET, queryset=queries.alerts_for(request.user))
    page = Paginator(found.qs if found.is_valid() else found.queryset.none(), 50) \
        .get_page(request.GET.get("page"))
    projects = release_queries.environments_for(request.user).values_list(
        "project__slug", "project__name").distinct()
    return render(request, "monitoring/alert_list.html", {
        "page": page, "filters": found.form, "projects": sorted(set(projects)),
        "problems": _problems(), "query": request.GET.copy().urlencode() if request.GET else "",
    })


@login_required
def alert_detail(request, pk):
    alert = get_object_or_404(queries.alerts_for(request.user), pk=pk)
    can_act = (request.user.is_staff if alert.project_id is None
               else has_role(request.user, alert.project, Role.CONTRIBUTOR))
    return render(request, "monitoring/alert_detail.html", {
        "alert": alert, "project": alert.project, "can_act": can_act,
        "silences": SILENCES, "problems": _problems(),
    })


@login_required
@require_POST
def alert_action(request, pk, action):
    alert = get_object_or_404(queries.alerts_for(request.user), pk=pk)
    try:
        if action == "acknowledge":
            alerts.acknowledge(request.user, alert, request.POST.get("comment", ""))
            messages.success(request, "Acknowledged.")
        elif action == "silence":
            duration = SILENCES.get(request.POST.get("duration", ""))
            until = timezone.now() + duration if duration else None
            alerts.silence(request.user, alert, until=until, reason=request.POST.get("reason", ""))
            messages.success(request, f"Silenced until {alert.silenced_until:%Y-%m-%d %H:%M} UTC.")
        elif action == "unsilence":
            alerts.unsilence(request.user, alert)
            messages.success(request, "Silence removed.")
        else:
            raise Http404("no such action")
    except DomainError as e:
        messages.error(request, e.detail)
    return redirect(alert.get_absolute_url())


# -- one endpoint ---------------------------------------------------------------------------------


def _series(rows: list[dict], label: str) -> dict[str, list[tuple]]:
    out = {}
    for row in rows:
        name = (row.get("metric") or {}).get(label, "") or "all"
        points = []
        for t, v in row.get("values") or []:
            value = float(v)
            points.append((float(t), value if value == value else None))
        out[name] = points
    return out


DRIFT_LINES = 8


def _live_charts(client, served, environment, endpoint: str, window: int, variant: str | None,
                 thresholds: ops_drift.Thresholds, options, top: list[str]) -> dict:
    end = time.time()
    start = end - window
    step = max(window / 150, 1.0)
    rate = f"{int(max(60, 4 * step))}s"
    where = f'environment="{environment.name}",endpoint="{endpoint}"'
    found = {}
    traffic = client.query_range(
        f"sum by (variant) (rate(modelgate_requests_total{{{where}}}[{rate}]))", start, end, step)
    found["traffic"] = charts.time_series("Requests per second", _series(traffic, "variant"),
                                          "req/s")
    total = f"sum by (variant) (rate(modelgate_requests_total{{{where}}}[{rate}]))"
    # No 5xx series yet means no server error: 0 %, not a missing line.
    errors = client.query_range(
        f"(sum by (variant) (rate(modelgate_requests_total{{{where},status=\"5xx\"}}[{rate}]))"
        f" or {total} * 0) / {total}", start, end, step)
    found["errors"] = charts.time_series("Server error rate", _series(errors, "variant"), "",
                                         percent=True, threshold=options.max_error_rate)
    latency = {}
    for q in (0.5, 0.99):
        rows = client.query_range(
            f"histogram_quantile({q}, sum by (variant, le) (rate("
            f"modelgate_request_duration_seconds_bucket{{{where}}}[{rate}])))", start, end, step)
        for name, points in _series(rows, "variant").items():
            latency[f"{name} p{int(q * 100)}"] = [(t, v * 1000 if v is not None else None)
                                                  for t, v in points]
    found["latency"] = charts.time_series("Latency", latency, "ms",
                                          threshold=options.max_p99_latency_seconds * 1000)
    classes = client.query(f"sum by (variant, class) (increase(modelgate_predictions_total"
                           f"{{{where}}}[{int(window)}s]))")
    by_variant: dict[str, dict[str, float]] = {}
    for row in classes:
        labels = row.get("metric") or {}
        by_variant.setdefault(labels.get("variant", ""), {})[labels.get("class", "")] = \
            float(row["value"][1])
    labels = sorted({c for counts in by_variant.values() for c in counts})
    title = "Predicted classes"
    if not by_variant:  # a regressor: its predicted values' histogram
        title = "Predicted values"
        buckets = client.query(f"sum by (variant, le) (increase("
                               f"modelgate_prediction_value_bucket{{{where}}}[{int(window)}s]))")
        cumulative: dict[str, dict[float, float]] = {}
        for row in buckets:
            metric = row.get("metric") or {}
            cumulative.setdefault(metric.get("variant", ""), {})[float(metric["le"])] = \
                float(row["value"][1])
        edges = sorted({le for counts in cumulative.values() for le in counts})
        labels = [f"≤ {le:g}" if le != float("inf") else "more" for le in edges]
        for name, counts in cumulative.items():
            running = [counts.get(le, 0.0) for le in edges]
            by_variant[name] = dict(zip(labels, [b - a for a, b in zip([0.0, *running[:-1]],
                                                                      running, strict=True)],
                                        strict=True))
        used = [i for i, label in enumerate(labels)
                if any(counts.get(label, 0) > 0 for counts in by_variant.values())]
        if used:  # leave out the empty buckets below and above the values seen
            labels = labels[used[0]:used[-1] + 1]
    found["predictions"] = charts.grouped_bars(
        title, labels,
        {name: [100 * counts.get(c, 0) / (sum(counts.values()) or 1) for c in labels]
         for name, counts in by_variant.items() if sum(counts.values()) > 0})
    if variant:
        psi = client.query_range(
            f"max by (feature) (modelgate_drift_psi{{{where},variant=\"{variant}\"}})",
            start, end, step)
        lines = every = _series(psi, "feature")
        if len(lines) > DRIFT_LINES:  # the most drifted features now, not a wall of legend
            keep = set(top[:DRIFT_LINES]) or set(sorted(lines)[:DRIFT_LINES])
            lines = {name: points for name, points in lines.items() if name in keep}
        title = f"Drift (PSI) per feature, {variant}"
        if len(lines) < len(every):
            title += f": the {len(lines)} most drifted"
        found["drift"] = charts.time_series(title, lines, "PSI",
                                            threshold=thresholds.psi_critical)
    return found


@login_required
def endpoint_monitoring(request, slug, name, endpoint):
    environment = get_object_or_404(release_queries.environments_for(request.user),
                                    project__slug=slug, name=name)
    served = next((s for s in served_endpoints([environment]) if s.endpoint == endpoint), None)
    windows = list(queries.drift_windows_for(request.user, environment, endpoint))
    if served is None and not windows:
        raise Http404("nothing is served under this name here")
    window_key = request.GET.get("window", "1h")
    window = WINDOWS.get(window_key, WINDOWS["1h"])
    variants = list(served.variants) if served else [w.variant for w in windows]
    variant = request.GET.get("variant") if request.GET.get("variant") in variants else (
        "candidate" if "candidate" in variants else (variants[0] if variants else None))
    options = served.settings() if served else None
    thresholds = drift.thresholds_of(served) if served else ops_drift.Thresholds()
    stale_before = timezone.now() - timedelta(seconds=settings.MODELGATE_DRIFT_STALE_SECONDS)
    current = next((w for w in windows if w.variant == variant), None)
    features = (current.report.get("features", []) if current else [])
    ranked = sorted(features, key=lambda f: -(f.get("psi") or 0))
    feature = request.GET.get("feature") or (ranked[0]["name"] if ranked else None)

    client = drift.client()
    live, unavailable, comparison = {}, "", None
    if client is None:
        unavailable = "no Prometheus is configured (set MODELGATE_PROMETHEUS_URL)"
    elif served is not None:
        try:
            live = _live_charts(client, served, environment, endpoint, window, variant,
                                thresholds, options, [f["name"] for f in ranked])
            if feature and served.variants:
                version = served.variants.get(variant) or next(iter(served.variants.values()))
                baseline = drift.baseline_of(version).get(feature)
                if baseline:
                    bins = len(baseline["edges"]) - 1
                    counts = {}
                    for name in served.variants:
                        seen = drift.live_counts(client, served, name, window).get(feature, {})
                        counts[name] = [seen.get(i, 0.0) for i in range(bins)]
                    comparison = charts.baseline_vs_live(feature, baseline["edges"],
                                                         baseline["counts"], counts)
        except PrometheusUnavailable as e:
            unavailable = str(e)
    return render(request, "monitoring/endpoint.html", {
        "environment": environment, "project": environment.project, "endpoint": endpoint,
        "served": served, "windows": windows, "current": current, "features": ranked,
        "feature": feature, "variant": variant, "variants": variants, "window_key": window_key,
        "windows_choices": list(WINDOWS), "stale": current and current.computed_at < stale_before,
        "live": live, "comparison": comparison, "unavailable": unavailable,
        "thresholds": thresholds, "options": options, "problems": _problems(),
        "alerts": queries.alerts_for(request.user).filter(environment=environment,
                                                          endpoint=endpoint)[:20],
    })
