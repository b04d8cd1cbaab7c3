"""What Prometheus says about one endpoint now, as charts for its monitoring page.

Every chart is scoped to the environment and endpoint; a Prometheus that cannot be reached
(or is not configured) gives no charts and a reason, never an exception.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from explainability import charts
from ops import drift as ops_drift
from ops import promql
from ops.prometheus import PrometheusUnavailable
from portal.monitoring import drift
from portal.monitoring.endpoints import ServedEndpoint

NO_PROMETHEUS = "no Prometheus is configured (set MODELGATE_PROMETHEUS_URL)"
# The variant label of requests answered before any variant was chosen (refused at the
# door: a malformed body, no plan loaded yet): ops.serving.metrics.NO_VARIANT.
UNROUTED = "none"
UNROUTED_NAME = "refused before routing"
# The rollout events drawn as markers: a plan applied, or the rollout's end.
MARKED = {"started", "advanced", "promoting", "succeeded", "promoted", "rolled_back",
          "kept_stable", "failed"}


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
LATENCY_QUANTILES = (0.5, 0.99)


@dataclass(frozen=True)
class _Span:
    """The charts' time range and the selector of the endpoint's series."""

    where: str
    start: float
    end: float
    step: float
    rate: str  # the window of rate(): at least a minute, and four steps
    whole: str  # the whole range, for increase()

    @classmethod
    def of(cls, served: ServedEndpoint, window: int) -> _Span:
        end = time.time()
        step = max(window / 150, 1.0)
        # Scoped as the rules are (decision 21): two projects may each have a
        # production/<endpoint>.
        return cls(promql.selector(environment=served.environment.name,
                                   project=served.environment.project.slug,
                                   endpoint=served.endpoint, variant=served.only_variant),
                   end - window, end, step, f"{int(max(60, 4 * step))}s", promql.seconds(window))

    def over_time(self, client, query: str) -> list[dict]:
        return client.query_range(query, self.start, self.end, self.step)


def _query(client, span: _Span, variant: str | None) -> dict:
    """Step 1: Prometheus's answers for every chart, as they come."""
    where = span.where
    raw = {"traffic": span.over_time(client, promql.requests(where, span.rate, by="variant")),
           # No 5xx (4xx) series yet means no server error (refusal): 0 %, not a missing line.
           "errors": span.over_time(client, promql.error_rate(where, span.rate, by="variant",
                                                              zero_without_errors=True)),
           "rejects": span.over_time(client, promql.client_error_rate(
               where, span.rate, by="variant", zero_without_errors=True)),
           "latency": {q: span.over_time(client, promql.latency(q, where, span.rate,
                                                                by="variant"))
                       for q in LATENCY_QUANTILES},
           "classes": client.query(promql.summed(promql.total(promql.PREDICTIONS), where,
                                                 span.whole, by="variant, class",
                                                 over=promql.INCREASE))}
    if not raw["classes"]:  # a regressor: its predicted values' histogram
        raw["values"] = client.query(promql.summed(promql.bucket(promql.PREDICTION_VALUE), where,
                                                   span.whole, by="variant, le",
                                                   over=promql.INCREASE))
    if variant:
        raw["psi"] = span.over_time(client, promql.drift_psi_by_feature(
            f"{where},{promql.selector(variant=variant)}"))
    return raw


def _latency_lines(answers: dict[float, list[dict]]) -> dict[str, list[tuple]]:
    """Each variant's quantiles, in milliseconds."""
    lines = {}
    for q, rows in answers.items():
        for name, points in _series(rows, "variant").items():
            lines[f"{name} p{int(q * 100)}"] = [(t, v * 1000 if v is not None else None)
                                                for t, v in points]
    return lines


def _class_counts(rows: list[dict]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(class labels, predictions per variant and class)."""
    by_variant: dict[str, dict[str, float]] = {}
    for row in rows:
        labels = row.get("metric") or {}
        by_variant.setdefault(labels.get("variant", ""), {})[labels.get("class", "")] = \
            float(row["value"][1])
    return sorted({c for counts in by_variant.values() for c in counts}), by_variant


def _value_counts(rows: list[dict]) -> tuple[list[str], dict[str, dict[str, float]]]:
    """(bucket labels from the lowest to the highest used, predictions per variant and
    bucket), from the cumulative buckets of the predicted values' histogram."""
    cumulative: dict[str, dict[float, float]] = {}
    for row in rows:
        metric = row.get("metric") or {}
        cumulative.setdefault(metric.get("variant", ""), {})[float(metric["le"])] = \
            float(row["value"][1])
    edges = sorted({le for counts in cumulative.values() for le in counts})
    labels = [f"≤ {le:g}" if le != float("inf") else "more" for le in edges]
    by_variant: dict[str, dict[str, float]] = {}
    for name, counts in cumulative.items():
        running = [counts.get(le, 0.0) for le in edges]
        by_variant[name] = dict(zip(labels, [b - a for a, b in zip([0.0, *running[:-1]],
                                                                  running, strict=True)],
                                    strict=True))
    used = [i for i, label in enumerate(labels)
            if any(counts.get(label, 0) > 0 for counts in by_variant.values())]
    if used:  # leave out the empty buckets below and above the values seen
        labels = labels[used[0]:used[-1] + 1]
    return labels, by_variant


def _prediction_shares(raw: dict) -> tuple[str, list[str], dict[str, list[float]]]:
    """(title, labels, each variant's percentage of predictions per label)."""
    if raw["classes"]:
        title, (labels, by_variant) = "Predicted classes", _class_counts(raw["classes"])
    else:
        title, (labels, by_variant) = "Predicted values", _value_counts(raw["values"])
    return title, labels, {
        name: [100 * counts.get(c, 0) / (sum(counts.values()) or 1) for c in labels]
        for name, counts in by_variant.items() if sum(counts.values()) > 0}


def _drift_lines(rows: list[dict], variant: str, top: list[str]) -> tuple[str, dict]:
    """(title, PSI per feature): the most drifted features now, not a wall of legend."""
    lines = every = _series(rows, "feature")
    if len(lines) > DRIFT_LINES:
        keep = set(top[:DRIFT_LINES]) or set(sorted(lines)[:DRIFT_LINES])
        lines = {name: points for name, points in lines.items() if name in keep}
    title = f"Drift (PSI) per feature, {variant}"
    if len(lines) < len(every):
        title += f": the {len(lines)} most drifted"
    return title, lines


def _routed(lines: dict[str, list]) -> dict[str, list]:
    """The variants' lines only: a share of errors among requests refused before routing
    is 100 % by definition and says nothing about a version."""
    return {name: points for name, points in lines.items()
            if name != UNROUTED and not name.startswith(UNROUTED + " ")}


def _named(lines: dict[str, list]) -> dict[str, list]:
    """Requests refused before routing, under words instead of the label "none"."""
    return {(UNROUTED_NAME if name == UNROUTED else name): points
            for name, points in lines.items()}


def _reshape(raw: dict, variant: str | None, top: list[str]) -> dict:
    """Step 2: the answers as chart lines and bars."""
    shaped = {"traffic": _named(_series(raw["traffic"], "variant")),
              "errors": _routed(_series(raw["errors"], "variant")),
              "rejects": _routed(_series(raw["rejects"], "variant")),
              "latency": _routed(_latency_lines(raw["latency"])),
              "predictions": _prediction_shares(raw)}
    if variant:
        shaped["drift"] = _drift_lines(raw["psi"], variant, top)
    return shaped


def _draw(shaped: dict, options, thresholds: ops_drift.Thresholds,
          marks: list[dict] | None = None) -> dict:
    """Step 3: the charts, with the model's thresholds and the rollouts drawn in."""
    found = {
        "traffic": charts.time_series("Requests per second", shaped["traffic"], "req/s",
                                      marks=marks),
        # Apart: the error threshold judges the version (5xx), never what callers sent (4xx).
        "errors": charts.time_series("Server errors (5xx), share of requests", shaped["errors"],
                                     "", percent=True, threshold=options.max_error_rate,
                                     marks=marks),
        "rejects": charts.time_series("Rejected requests (4xx), share of requests",
                                      shaped["rejects"], "", percent=True, marks=marks),
        "latency": charts.time_series("Latency", shaped["latency"], "ms",
                                      threshold=options.max_p99_latency_seconds * 1000,
                                      marks=marks),
        "predictions": charts.grouped_bars(*shaped["predictions"]),
    }
    if "drift" in shaped:
        title, lines = shaped["drift"]
        found["drift"] = charts.time_series(title, lines, "PSI",
                                            threshold=thresholds.psi_critical, marks=marks)
    return found


def rollout_marks(served: ServedEndpoint, since: float) -> list[dict]:
    """When rollouts on this endpoint started, changed their weights or ended, since
    ``since`` (POSIX seconds): ``[{"at", "label", "detail"}]`` for the charts' markers."""
    import datetime as dt

    from portal.releases.models import DeploymentEvent

    events = (DeploymentEvent.objects.filter(
        deployment__environment=served.environment, deployment__endpoint=served.endpoint,
        created_at__gte=dt.datetime.fromtimestamp(since, dt.UTC), event__in=MARKED)
        .select_related("deployment__candidate").order_by("created_at")[:50])
    marks = []
    for e in events:
        share = e.weights.get("candidate") if e.weights else None
        what = e.event.replace("_", " ")
        if share is not None and e.event in ("started", "advanced"):
            what = f"{share:.0%}"
        marks.append({"at": e.created_at, "label": f"v{e.deployment.candidate.number} {what}",
                      "detail": e.reason[:200]})
    return marks


def _charts(client, served: ServedEndpoint, window: int, variant: str | None,
            thresholds: ops_drift.Thresholds, top: list[str], marks: list[dict]) -> dict:
    span = _Span.of(served, window)
    options = served.settings()
    shaped = _reshape(_query(client, span, variant), variant, top)
    if served.variants:  # the classes under the names the model gives them ("benign")
        names = next(iter(served.variants.values())).class_labels
        title, labels, shares = shaped["predictions"]
        shaped["predictions"] = (title, [names.get(c, c) for c in labels], shares)
    return _draw(shaped, options, thresholds, marks)


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
                feature: str | None, marks: list[dict] | None = None,
                ) -> tuple[dict, dict | None, str]:
    """(charts by name, the baseline/live comparison, why Prometheus could not answer);
    ``marks`` (``rollout_marks``) are drawn on the time charts."""
    client = drift.client()
    if client is None:
        return {}, None, NO_PROMETHEUS
    try:
        return (_charts(client, served, window, variant, thresholds, ranked, marks or []),
                _comparison(client, served, window, variant, feature), "")
    except PrometheusUnavailable as e:
        return {}, None, str(e)
