"""Drift windows: live input distributions from Prometheus against each version's baseline.

A periodic task (``workers.monitoring.compute_drift``) calls ``compute_all``. For every
variant of every served endpoint it asks Prometheus how many inputs fell in each baseline
bin over the model's window (``increase`` of the model server's feature bin counters,
``ops.promql.FEATURE_BIN``), compares them with the baseline profile's counts
(``ops.drift``), and stores the report in ``DriftWindow``. The portal's ``/metrics`` exports the latest reports as gauges,
Prometheus's rules turn them into alerts with ``for:`` durations.

Prometheus away: the stored reports stay as they were, the failure is recorded in
``SyncStatus("drift")`` (pages show it), and the gauges go stale after a few intervals so no
alert fires on old data. A feature absent from requests (or a variant with no traffic) has
no counts: its verdict is "insufficient data", never drift.
"""

from __future__ import annotations

import logging
from collections import defaultdict

from django.conf import settings
from django.utils import timezone

from ops import drift, promql
from ops.prometheus import PrometheusClient, PrometheusUnavailable
from portal.monitoring.endpoints import ServedEndpoint, served_endpoints
from portal.monitoring.models import DriftWindow, SyncStatus

log = logging.getLogger(__name__)


def client() -> PrometheusClient | None:
    if not settings.MODELGATE_PROMETHEUS_URL:
        return None
    return PrometheusClient(settings.MODELGATE_PROMETHEUS_URL,
                            settings.MODELGATE_PROMETHEUS_TOKEN or None,
                            timeout=settings.MODELGATE_PROMETHEUS_TIMEOUT)


def thresholds_of(served: ServedEndpoint) -> drift.Thresholds:
    try:
        return drift.Thresholds.from_dict(served.settings().drift)
    except ValueError:
        log.warning("invalid drift thresholds on %s; using the defaults", served.model)
        return drift.Thresholds()


def baseline_of(version) -> dict[str, dict]:
    """The version's input features that its dataset profiles as numeric (what the model
    server bins); the target and other columns that are no input are left out."""
    profile = (version.dataset.profile if version.dataset_id else None) or {}
    inputs = {f.get("name") for f in version.input_schema or []}
    return {name: p for name, p in (profile.get("features") or {}).items()
            if name in inputs and p.get("kind") == "numeric" and len(p.get("edges") or []) >= 2}


def live_counts(prometheus: PrometheusClient, served: ServedEndpoint, variant: str,
                window: int) -> dict[str, dict[int, float]]:
    """Inputs per feature and bin over the last ``window`` seconds."""
    where = promql.selector(environment=served.environment.name, endpoint=served.endpoint,
                            variant=variant)
    rows = prometheus.query(promql.summed(promql.total(promql.FEATURE_BIN), where,
                                          promql.seconds(window), by="feature, bin",
                                          over=promql.INCREASE))
    counts: dict[str, dict[int, float]] = defaultdict(dict)
    for row in rows:
        labels = row.get("metric") or {}
        try:
            value = float(row["value"][1])
            index = int(labels["bin"])
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if value == value and value >= 0:  # NaN-safe
            counts[labels.get("feature", "")][index] = value
    return counts


def report_for(served: ServedEndpoint, variant: str, live: dict[str, dict[int, float]],
               thresholds: drift.Thresholds) -> drift.DriftReport:
    version = served.variants[variant]
    baseline = baseline_of(version)
    names, base, current, edges, stds = [], [], [], [], []
    for name, profile in baseline.items():
        bins = len(profile["edges"]) - 1
        counts = profile.get("counts") or []
        if len(counts) != bins:
            continue
        names.append(name)
        base.append([float(c) for c in counts])
        seen = live.get(name, {})
        current.append([seen.get(i, 0.0) for i in range(bins)])
        edges.append([float(e) for e in profile["edges"]])
        stds.append(profile.get("std"))
    return drift.compare_histograms(base, current, names, edges=edges, reference_std=stds,
                                    thresholds=thresholds)


def compute_all(now=None) -> int:
    """Recompute every served variant's window; returns how many were stored."""
    prometheus = client()
    if prometheus is None:
        SyncStatus.record("drift", False,
                          "no Prometheus is configured (set MODELGATE_PROMETHEUS_URL)")
        return 0
    now = now or timezone.now()
    stored = 0
    try:
        for served in served_endpoints():
            thresholds = thresholds_of(served)
            window = int(served.settings().drift_window_seconds)
            for variant, version in served.variants.items():
                if not baseline_of(version):
                    continue  # no dataset profile: nothing to compare with
                live = live_counts(prometheus, served, variant, window)
                report = report_for(served, variant, live, thresholds)
                DriftWindow.objects.update_or_create(
                    environment=served.environment, endpoint=served.endpoint, variant=variant,
                    defaults={"model": served.model, "version": version,
                              "window_seconds": window, "report": report.to_dict(),
                              "error": "", "computed_at": now})
                stored += 1
    except PrometheusUnavailable as e:
        SyncStatus.record("drift", False, f"drift not computed: {e}")
        return stored
    SyncStatus.record("drift", True, f"{stored} variant windows computed")
    return stored
