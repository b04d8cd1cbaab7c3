"""The portal's ``/metrics``: drift verdicts as gauges, for Prometheus's alerting rules.

The names are ``ops.promql``'s. Per feature (labels environment, project, model, endpoint,
variant, feature): ``DRIFT_PSI``, ``DRIFT_KS``, ``DRIFT_JS_DISTANCE``, ``DRIFT_WASSERSTEIN``,
``DRIFT_ROWS`` and ``DRIFT_VERDICT`` (0 no drift, 1 warning, 2 critical; no sample when there
is not enough data). Per variant: ``DRIFT_SHARE``, ``DRIFT_DATASET`` (1 drifted, 0 not; no
sample without enough data) and ``DRIFT_COMPUTED`` (when). Plus ``ALERTS_FIRING`` by severity.

Windows older than ``MODELGATE_DRIFT_STALE_SECONDS`` are not exported: when drift stops
being computed (Prometheus away, endpoint gone), the series end and their alerts resolve
instead of firing forever on old data.
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Count
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily

from ops import drift, promql
from portal.monitoring.choices import AlertState
from portal.monitoring.models import Alert, DriftWindow

VERDICT_VALUE = {drift.NO_DRIFT: 0, drift.WARNING: 1, drift.CRITICAL: 2}
FEATURE_LABELS = ["environment", "project", "model", "endpoint", "variant", "feature"]
VARIANT_LABELS = FEATURE_LABELS[:-1]
# Per feature: the key of the feature's report (and of its gauge below), the gauge, its help.
PER_FEATURE = (
    ("psi", promql.DRIFT_PSI, "Population stability index of a feature over the window."),
    ("ks", promql.DRIFT_KS, "Kolmogorov-Smirnov D of a feature over the window."),
    ("js_distance", promql.DRIFT_JS_DISTANCE, "Jensen-Shannon distance (base 2) of a feature."),
    ("wasserstein", promql.DRIFT_WASSERSTEIN, "Wasserstein distance over the baseline's std."),
    ("rows", promql.DRIFT_ROWS, "Live inputs of the feature in the window."),
    ("verdict", promql.DRIFT_VERDICT, "0 no drift, 1 warning, 2 critical (absent: too few "
                                      "rows)."),
)


class DriftCollector:
    def collect(self):
        fresh = timezone.now() - timedelta(seconds=settings.MODELGATE_DRIFT_STALE_SECONDS)
        windows = (DriftWindow.objects.filter(computed_at__gte=fresh)
                   .select_related("environment__project", "model"))
        per_feature = {key: GaugeMetricFamily(name, help, labels=FEATURE_LABELS)
                       for key, name, help in PER_FEATURE}
        share = GaugeMetricFamily(promql.DRIFT_SHARE, "Share of judged features that "
                                  "drifted.", labels=VARIANT_LABELS)
        dataset = GaugeMetricFamily(promql.DRIFT_DATASET, "1 when enough features "
                                    "drifted to call the inputs drifted.", labels=VARIANT_LABELS)
        computed = GaugeMetricFamily(promql.DRIFT_COMPUTED,
                                     "When the window was computed.", labels=VARIANT_LABELS)
        for window in windows:
            base = [window.environment.name, window.environment.project.slug, window.model.name,
                    window.endpoint, window.variant]
            report = window.report or {}
            for feature in report.get("features", []):
                labels = [*base, feature.get("name", "")]
                for name in ("psi", "ks", "js_distance", "wasserstein"):
                    if feature.get(name) is not None:
                        per_feature[name].add_metric(labels, float(feature[name]))
                per_feature["rows"].add_metric(labels, float(feature.get("count") or 0))
                if feature.get("verdict") in VERDICT_VALUE:
                    per_feature["verdict"].add_metric(labels, VERDICT_VALUE[feature["verdict"]])
            if report.get("drift_share") is not None:
                share.add_metric(base, float(report["drift_share"]))
            if report.get("dataset_drift") is not None:
                dataset.add_metric(base, 1.0 if report["dataset_drift"] else 0.0)
            computed.add_metric(base, window.computed_at.timestamp())
        yield from per_feature.values()
        yield from (share, dataset, computed)
        firing = GaugeMetricFamily(promql.ALERTS_FIRING, "Alerts firing in the portal.",
                                   labels=["severity"])
        for row in (Alert.objects.filter(state=AlertState.FIRING).values("severity")
                    .annotate(n=Count("id"))):
            firing.add_metric([row["severity"]], row["n"])
        yield firing


def exposition() -> bytes:
    """Drift verdicts and queue depth (computed now), then the processes' own metrics
    (request latency, task durations; summed over gunicorn's processes)."""
    from portal.celery import QueueCollector
    from portal.observability import registry_for_scrape

    registry = CollectorRegistry(auto_describe=False)
    registry.register(DriftCollector())
    registry.register(QueueCollector())
    return generate_latest(registry) + generate_latest(registry_for_scrape())
