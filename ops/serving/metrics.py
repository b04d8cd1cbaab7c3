"""The model server's Prometheus metrics, in a registry of its own.

Labels are bounded: endpoint, variant, a status class or a stable error code, the class
label of a classifier and the feature name (with the baseline's bin index). Request ids,
unit ids and values never become labels. The series' names are ``ops.promql``'s.

Per-row distributions (feature bins, predicted classes, regression values) are counted with
numpy where the batch is predicted, once per batch, and read by a custom collector at scrape
time; calling ``Counter.labels().inc()`` for every feature of every row would cost more than
the prediction.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from ops import promql

# Fine enough between 0.1 s and 1 s that a p99 interpolated inside one bucket does not
# swing a latency ratio by half (0.25 to 0.5 was one bucket: two equal models on a busy
# machine read 0.26 s and 0.41 s, a false rollback in benchmarks/release_faults.py).
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.075,
                   0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)
NO_VARIANT = "none"


def status_class(status: int) -> str:
    return f"{status // 100}xx"


class ServerMetrics:
    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=False)
        r = self.registry
        self.requests = Counter(promql.REQUESTS, "Inference requests answered, by variant "
                                "and status class.", ["endpoint", "variant", "status"], registry=r)
        self.errors = Counter(promql.REQUEST_ERRORS, "Inference requests answered with an "
                              "error, by stable error code.", ["endpoint", "variant", "code"],
                              registry=r)
        self.latency = Histogram(promql.REQUEST_DURATION, "Time from the request's "
                                 "body to its answer.", ["endpoint", "variant"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram(promql.BATCH_SIZE, "Rows per predict call "
                                    "(micro-batching).", ["endpoint", "variant"],
                                    buckets=BATCH_BUCKETS, registry=r)
        self.batch_requests = Histogram(promql.BATCH_REQUESTS, "Requests per predict call.",
                                        ["endpoint", "variant"], buckets=BATCH_BUCKETS,
                                        registry=r)
        self.shadow = Counter(promql.SHADOW_COMPARISONS, "Shadow answers compared with the "
                              "live answer, per row: agree, disagree, or error/dropped per "
                              "request.", ["endpoint", "variant", "result"], registry=r)
        self.shadow_latency = Histogram(promql.SHADOW_DURATION, "Latency of the "
                                        "shadow variant's predictions.", ["endpoint", "variant"],
                                        buckets=LATENCY_BUCKETS, registry=r)
        self.plan_generation = Gauge(promql.PLAN_GENERATION, "Generation of the serving "
                                     "plan in use.", ["endpoint"], registry=r)
        self.plan_reloads = Counter(promql.PLAN_RELOADS, "Plans loaded and switched to.",
                                    ["endpoint"], registry=r)
        self.plan_load_failures = Counter(promql.PLAN_LOAD_FAILURES, "Plans that failed to "
                                          "load; the previous plan kept serving.", ["endpoint"],
                                          registry=r)
        self.model_load_seconds = Gauge(promql.MODEL_LOAD_SECONDS, "Time to verify, load "
                                        "and warm a variant's model.", ["endpoint", "variant"],
                                        registry=r)
        self._bound: dict[tuple[str, str], tuple] = {}

    def bound(self, endpoint: str, variant: str) -> tuple:
        """(ok-requests counter, latency histogram) children, cached for the hot path."""
        key = (endpoint, variant)
        children = self._bound.get(key)
        if children is None:
            children = (self.requests.labels(endpoint, variant, "2xx"),
                        self.latency.labels(endpoint, variant))
            # The error series exist (at 0) from the variant's first answer: an increase()
            # sees no series before its first two samples, so a candidate's first errors
            # would otherwise go uncounted (an error rate of 0 while it fails).
            for status in ("4xx", "5xx"):
                self.requests.labels(endpoint, variant, status)
            self._bound[key] = children
        return children

    def add_collector(self, state_of: Callable[[], object]) -> None:
        self.registry.register(VariantCollector(state_of))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class VariantCollector:
    """Reads the live distributions of the variants of the plan in use at scrape time."""

    def __init__(self, state_of: Callable[[], object]):
        self._state_of = state_of

    def describe(self):
        return []

    def collect(self):
        state = self._state_of()
        bins = CounterMetricFamily(
            promql.FEATURE_BIN, "Rows whose feature value fell in the baseline's bin "
            "(bin index as in the baseline profile; outer bins open).",
            labels=["endpoint", "variant", "feature", "bin"])
        missing = CounterMetricFamily(
            promql.FEATURE_MISSING, "Rows whose feature was null/NaN (not binned).",
            labels=["endpoint", "variant", "feature"])
        classes = CounterMetricFamily(
            promql.PREDICTIONS, "Predicted rows by class label (classifiers).",
            labels=["endpoint", "variant", "class"])
        values = HistogramMetricFamily(
            promql.PREDICTION_VALUE, "Predicted values (regressors).",
            labels=["endpoint", "variant"])
        # The histogram leaves out its _sum and _count when a bucket bound is negative (as
        # prometheus_client does): the running sum and sum of squares are series of their own,
        # for the spread of predictions (with the +Inf bucket's count).
        moments = CounterMetricFamily(
            promql.PREDICTION_MOMENTS, "Running sums of predicted values (regressors): "
            "positive (of the positive values), negative (of the negatives' magnitudes), "
            "squares.", labels=["endpoint", "variant", "moment"])
        queue = GaugeMetricFamily(promql.QUEUE_DEPTH, "Rows waiting for a batch.",
                                  labels=["endpoint", "variant"])
        weight = GaugeMetricFamily(promql.VARIANT_WEIGHT, "Share of live traffic routed to "
                                   "the variant (0 for the shadow).", labels=["endpoint", "variant"])
        loaded = GaugeMetricFamily(promql.VARIANT_LOADED, "1 when the variant's model is "
                                   "loaded and serving.", labels=["endpoint", "variant"])
        predictor = GaugeMetricFamily(
            promql.VARIANT_PREDICTOR, "1 for what computes the variant's predictions: "
            "onnxruntime (a tree ensemble proven exact at load) or the model, and why.",
            labels=["endpoint", "variant", "predictor", "reason"])
        if state is not None:
            endpoint = state.plan.endpoint
            shares = state.router.shares
            for name, variant in state.variants.items():
                labels = [endpoint, name]
                for feature, counts, miss in variant.binner.snapshot():
                    for index, count in enumerate(counts):
                        bins.add_metric([endpoint, name, feature, str(index)], count)
                    missing.add_metric([endpoint, name, feature], miss)
                if variant.class_counter is not None:
                    for label, count in variant.class_counter.snapshot():
                        classes.add_metric([endpoint, name, label], count)
                if variant.value_histogram is not None:
                    buckets, value_sum = variant.value_histogram.snapshot()
                    values.add_metric(labels, buckets, value_sum)
                    for moment, value in variant.value_histogram.moments().items():
                        moments.add_metric([*labels, moment], value)
                queue.add_metric(labels, variant.batcher.queued_rows)
                weight.add_metric(labels, shares.get(name, 0.0))
                loaded.add_metric(labels, 1)
                predictor.add_metric([*labels, variant.predictor.predictor,
                                      variant.predictor.reason], 1)
        yield from (bins, missing, classes, values, moments, queue, weight, loaded, predictor)
