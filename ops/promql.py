"""Prometheus series names and the PromQL asked about them, in one place.

No Django. The model server (``ops/serving/metrics.py``) exports its series under the names
below; the rollout analysis (``ops/analysis.py``), the alerting and recording rules
(``ops/prometheus.py``) and the portal's live charts (``portal/monitoring/live.py``) ask
about them with the expressions below, so a name or the meaning of "error rate" is spelled
once.

Names are as the client library registers them: a counter's samples are the name plus
``_total`` (``total``), a histogram's buckets the name plus ``_bucket`` (``bucket``).

Expressions take a label selector (``selector``: ``'endpoint="churn",variant="stable"'``), a
range window (``"30s"``, ``"1m"``) and, where series are kept apart, ``by``: the labels to keep
(``"variant"``; empty sums everything into one number). ``over`` is ``rate`` (per second) or
``increase`` (a count over the window); ratios are the same either way.
"""

from __future__ import annotations

# -- the model server's series (labels endpoint, variant; the scrape adds environment) --------

REQUESTS = "modelgate_requests"  # counter, + status: the status class ("2xx", "5xx")
REQUEST_ERRORS = "modelgate_request_errors"  # counter, + code: the stable error code
REQUEST_DURATION = "modelgate_request_duration_seconds"  # histogram
BATCH_SIZE = "modelgate_batch_size_rows"  # histogram
BATCH_REQUESTS = "modelgate_batch_requests"  # histogram
SHADOW_COMPARISONS = "modelgate_shadow_comparisons"  # counter, + result: agree, disagree, error
SHADOW_DURATION = "modelgate_shadow_duration_seconds"  # histogram
PLAN_GENERATION = "modelgate_plan_generation"  # gauge, endpoint only
PLAN_RELOADS = "modelgate_plan_reloads"  # counter, endpoint only
PLAN_LOAD_FAILURES = "modelgate_plan_load_failures"  # counter, endpoint only
MODEL_LOAD_SECONDS = "modelgate_model_load_seconds"  # gauge
FEATURE_BIN = "modelgate_feature_bin"  # counter, + feature, bin
FEATURE_MISSING = "modelgate_feature_missing"  # counter, + feature
PREDICTIONS = "modelgate_predictions"  # counter, + class (classifiers)
PREDICTION_VALUE = "modelgate_prediction_value"  # histogram (regressors)
PREDICTION_MOMENTS = "modelgate_prediction_moments"  # counter, + moment: positive,
#                                                       negative, squares (regressors)
QUEUE_DEPTH = "modelgate_queue_depth"  # gauge
VARIANT_WEIGHT = "modelgate_variant_weight"  # gauge: share of live traffic
VARIANT_LOADED = "modelgate_variant_loaded"  # gauge
VARIANT_PREDICTOR = "modelgate_variant_predictor"  # gauge 1, + predictor, reason (decision 63)
# Multi-model endpoints (decision 68), endpoint only (+ event):
MULTIMODEL_LOADED = "modelgate_multimodel_loaded_models"  # gauge
MULTIMODEL_BYTES = "modelgate_multimodel_loaded_bytes"  # gauge
MULTIMODEL_BUDGET = "modelgate_multimodel_budget_bytes"  # gauge
MULTIMODEL_EVENTS = "modelgate_multimodel_events"  # counter, + event: load, evict, refused...

# -- the portal's drift gauges (+ project, model; feature where per feature) -----------------

DRIFT_PSI = "modelgate_drift_psi"
DRIFT_KS = "modelgate_drift_ks"
DRIFT_JS_DISTANCE = "modelgate_drift_js_distance"
DRIFT_WASSERSTEIN = "modelgate_drift_wasserstein"
DRIFT_ROWS = "modelgate_drift_rows"
DRIFT_VERDICT = "modelgate_drift_verdict"  # 0 no drift, 1 warning, 2 critical
DRIFT_SHARE = "modelgate_drift_share"
DRIFT_DATASET = "modelgate_drift_dataset"  # 1 drifted, 0 not
DRIFT_COMPUTED = "modelgate_drift_computed_timestamp_seconds"
ALERTS_FIRING = "modelgate_alerts_firing"  # severity only: the portal's alerts firing

# -- Prometheus's own, and the recording rules ----------------------------------------------

UP = "up"
ERROR_RATE_1M = "modelgate:error_rate:ratio_1m"
LATENCY_P99_1M = "modelgate:latency_p99:seconds_1m"

RATE = "rate"
INCREASE = "increase"
SERVER_ERROR = 'status="5xx"'


def total(name: str) -> str:
    """A counter's sample name."""
    return f"{name}_total"


def bucket(name: str) -> str:
    """A histogram's bucket sample name."""
    return f"{name}_bucket"


def selector(**labels: str | None) -> str:
    """``k="v",...`` of the labels given a value (None: left out); values are not escaped.

    ``project`` matches the project's series and series with no ``project`` label at all
    (``project=~"<slug>|"``; slugs hold no regular-expression characters): a Prometheus
    scraping as the portal's docs said before decision 23 took the project in (the
    environment only) keeps getting its rollouts judged, as before, rather than every
    analysis turning inconclusive; one that labels the project keeps each project to its
    own series."""
    return ",".join(f'{k}=~"{v}|"' if k == "project" else f'{k}="{v}"'
                    for k, v in labels.items() if v is not None)


def seconds(n: float) -> str:
    """A duration in whole seconds: ``"30s"``."""
    return f"{int(n)}s"


def _matching(where: str, also: str) -> str:
    return ",".join(part for part in (where, also) if part)


def _sum(expr: str, by: str) -> str:
    return f"sum by ({by}) ({expr})" if by else f"sum({expr})"


def summed(series: str, where: str, window: str, *, by: str = "", over: str = RATE) -> str:
    """``sum [by (...)] (rate|increase(series{where}[window]))``."""
    return _sum(f"{over}({series}{{{where}}}[{window}])", by)


def ratio(series: str, where: str, window: str, part: str, whole: str = "", *, by: str = "",
          over: str = RATE, zero_without_part: bool = False) -> str:
    """The share of ``series`` whose labels also match ``part`` among those matching ``whole``.

    ``zero_without_part``: before the first sample of ``part`` there is no such series at all;
    count that as 0 rather than no answer (with ``by``, 0 for each group that has a whole).
    """
    denominator = summed(series, _matching(where, whole), window, by=by, over=over)
    numerator = summed(series, _matching(where, part), window, by=by, over=over)
    if zero_without_part:
        numerator = f"({numerator} or {f'{denominator} * 0' if by else 'vector(0)'})"
    return f"{numerator} / {denominator}"


def quantile(q: float, histogram: str, where: str, window: str, *, by: str = "") -> str:
    """The ``q`` quantile of a histogram (the name without ``_bucket``) over ``window``."""
    keep = f"{by}, le" if by else "le"
    return (f"histogram_quantile({q}, sum by ({keep}) "
            f"(rate({bucket(histogram)}{{{where}}}[{window}])))")


# -- what is asked ------------------------------------------------------------------------------


def requests(where: str, window: str, *, by: str = "", over: str = RATE) -> str:
    """Requests answered (any status): per second, or counted over the window."""
    return summed(total(REQUESTS), where, window, by=by, over=over)


def error_rate(where: str, window: str, *, by: str = "", over: str = RATE,
               zero_without_errors: bool = False) -> str:
    """The share of requests answered with a server error (status class 5xx)."""
    return ratio(total(REQUESTS), where, window, SERVER_ERROR, by=by, over=over,
                 zero_without_part=zero_without_errors)


def client_error_rate(where: str, window: str, *, by: str = "", over: str = RATE,
                      zero_without_errors: bool = False) -> str:
    """The share of requests refused as the client's fault (status class 4xx): apart from
    ``error_rate``, so bad input reads as bad input, not as a broken version."""
    return ratio(total(REQUESTS), where, window, CLIENT_ERROR, by=by, over=over,
                 zero_without_part=zero_without_errors)


def latency(q: float, where: str, window: str, *, by: str = "",
            histogram: str = REQUEST_DURATION) -> str:
    """A latency quantile in seconds (``SHADOW_DURATION``: the shadow's)."""
    return quantile(q, histogram, where, window, by=by)


def p99_latency(where: str, window: str, *, by: str = "",
                histogram: str = REQUEST_DURATION) -> str:
    return latency(0.99, where, window, by=by, histogram=histogram)


def shadow_compared(where: str, window: str) -> str:
    """Shadow answers compared with the live one over the window (any result)."""
    return summed(total(SHADOW_COMPARISONS), where, window, over=INCREASE)


def shadow_share(result: str, where: str, window: str, among: str = "") -> str:
    """The share of shadow comparisons with ``result`` (0 before the first), among those
    matching ``among`` (all when empty)."""
    return ratio(total(SHADOW_COMPARISONS), where, window, f'result="{result}"', among,
                 over=INCREASE, zero_without_part=True)


def drift_psi_by_feature(where: str) -> str:
    """The PSI of each feature (the highest where several series match)."""
    return f"max by (feature) ({DRIFT_PSI}{{{where}}})"


# -- rollout analysis: what callers feel beyond server errors --------------------------------

CLIENT_ERROR = 'status="4xx"'


def refused_share(where: str, window: str) -> str:
    """The share of requests refused (status class 4xx) over the window, 0 before the
    first refusal (no answer without requests)."""
    return ratio(total(REQUESTS), where, window, CLIENT_ERROR, over=INCREASE,
                 zero_without_part=True)


def predictions_by_class(where: str, window: str) -> str:
    """Rows predicted per class label over the window (classifiers)."""
    return summed(total(PREDICTIONS), where, window, by="class", over=INCREASE)


def prediction_spread(where: str, window: str) -> str:
    """The standard deviation of the values predicted over the window (regressors):
    sqrt(E[x²] - E[x]²), rows counted by the histogram's +Inf bucket. Every term is a
    counter, so Prometheus extrapolates them alike over the window."""
    rows = summed(bucket(PREDICTION_VALUE), _matching(where, 'le="+Inf"'), window, over=INCREASE)

    def per_row(moment: str) -> str:
        matching = _matching(where, selector(moment=moment))
        return f"({summed(total(PREDICTION_MOMENTS), matching, window, over=INCREASE)} / {rows})"

    mean = f"({per_row('positive')} - {per_row('negative')})"
    return f"sqrt(clamp_min({per_row('squares')} - {mean} ^ 2, 0))"
