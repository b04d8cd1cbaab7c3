"""What Prometheus says about one endpoint now, as charts for its monitoring page.

Every chart is scoped to the environment and endpoint; a Prometheus that cannot be reached
(or is not configured) gives no charts and a reason, never an exception.
"""

from __future__ import annotations

import time

from explainability import charts
from ops import drift as ops_drift
from ops.prometheus import PrometheusUnavailable
from portal.monitoring import drift
from portal.monitoring.endpoints import ServedEndpoint

NO_PROMETHEUS = "no Prometheus is configured (set MODELGATE_PROMETHEUS_URL)"


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


def _charts(client, served: ServedEndpoint, window: int, variant: str | None,
            thresholds: ops_drift.Thresholds, top: list[str]) -> dict:
    end = time.time()
    start = end - window
    step = max(window / 150, 1.0)
    rate = f"{int(max(60, 4 * step))}s"
    options = served.settings()
    where = f'environment="{served.environment.name}",endpoint="{served.endpoint}"'
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


def _comparison(client, served: ServedEndpoint, window: int, variant: str | None,
                feature: str | None) -> dict | None:
    """The baseline distribution of ``feature`` beside each variant's live one."""
    if not feature or not served.variants:
        return None
    version = served.variants.get(variant) or next(iter(served.variants.values()))
    baseline = drift.baseline_of(version).get(feature)
    if not baseline:
        return None
    bins = len(baseline["edges"]) - 1
    counts = {}
    for name in served.variants:
        seen = drift.live_counts(client, served, name, window).get(feature, {})
        counts[name] = [seen.get(i, 0.0) for i in range(bins)]
    return charts.baseline_vs_live(feature, baseline["edges"], baseline["counts"], counts)


def live_charts(served: ServedEndpoint, window: int, variant: str | None,
                thresholds: ops_drift.Thresholds, ranked: list[str],
                feature: str | None) -> tuple[dict, dict | None, str]:
    """(charts by name, the baseline/live comparison, why Prometheus could not answer)."""
    client = drift.client()
    if client is None:
        return {}, None, NO_PROMETHEUS
    try:
        return (_charts(client, served, window, variant, thresholds, ranked),
                _comparison(client, served, window, variant, feature), "")
    except PrometheusUnavailable as e:
        return {}, None, str(e)
