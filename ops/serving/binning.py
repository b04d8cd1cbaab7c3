"""Counting live values into the baseline's bins, the way ``ops/profile.py`` counted them.

The baseline profile keeps per-feature quantile edges; only the interior edges decide a bin
(``searchsorted(edges[1:-1], x, side="right")``), so the outer bins are open and a live value
beyond the baseline's range still lands in the first or last bin. Drift compares these live
counts with the baseline counts bin by bin.

The counting is vectorised over a whole batch (one comparison against every feature's padded
edge row), so it costs a few numpy calls per batch rather than one call per feature per row.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

# Regressors without ``baseline["prediction"]["edges"]`` count predictions into these.
DEFAULT_VALUE_EDGES = (-1000.0, -100.0, -10.0, -1.0, -0.1, 0.0, 0.1, 1.0, 10.0, 100.0, 1000.0)


def bin_index(edges: Sequence[float], values) -> np.ndarray:
    """Bin of each value for baseline ``edges`` (the reference rule, one feature)."""
    return np.searchsorted(np.asarray(edges, dtype=float)[1:-1], np.asarray(values, dtype=float),
                           side="right")


class FeatureBinner:
    """Per-feature bin counts (and missing counts) of the rows a variant predicted on.

    ``edges_by_feature`` maps a feature name to its baseline edges; features without at least
    two edges, or not numeric, are not binned. ``columns`` gives each binned feature's column
    in the rows.
    """

    def __init__(self, edges_by_feature: dict[str, Sequence[float]], columns: dict[str, int]):
        binned = [(name, np.asarray(edges, dtype=float)) for name, edges in
                  edges_by_feature.items() if name in columns and len(edges) >= 2]
        self.features = [name for name, _ in binned]
        self.columns = np.array([columns[name] for name in self.features], dtype=np.intp)
        self.edges = [edges for _, edges in binned]
        self.bins = np.array([len(e) - 1 for e in self.edges], dtype=np.intp)
        widest = max((len(e) - 2 for e in self.edges), default=0)
        # Interior edges, padded with +inf (never <= a finite value) to one rectangle.
        self._interior = np.full((len(self.features), max(widest, 1)), np.inf)
        for i, e in enumerate(self.edges):
            self._interior[i, : len(e) - 2] = e[1:-1]
        # The same, edges first, (edges, 1, features): comparing a batch against it and summing
        # over the first axis is twice as fast as summing over a short last axis.
        self._interior_t = np.ascontiguousarray(self._interior.T)[:, None, :]
        # Binned columns 0..k-1 in order: rows of exactly k columns need no column selection.
        self._in_order = bool(np.array_equal(self.columns, np.arange(len(self.features))))
        # Start of each feature's bins in the flat counts (empty when nothing is binned).
        self._offsets = np.concatenate([[0], np.cumsum(self.bins)])[:-1].astype(np.intp)
        self._counts = np.zeros(int(self.bins.sum()), dtype=np.int64)
        self._missing = np.zeros(len(self.features), dtype=np.int64)
        self._lock = threading.Lock()

    def add(self, rows: np.ndarray) -> None:
        """Count a batch of rows (``(n, width)`` float array)."""
        if not self.features or len(rows) == 0:
            return
        if self._in_order and rows.shape[1] == len(self.features):
            values = rows.astype(np.float64, copy=False)  # (n, k)
        else:
            values = rows[:, self.columns].astype(np.float64, copy=False)
        # Interior edges <= value, counted per value: its bin (NaN: 0, left out below).
        index = np.add.reduce(self._interior_t <= values[None, :, :], axis=0, dtype=np.intp)
        index += self._offsets  # (n, k): positions in the flat counts
        finite = np.isfinite(values)
        if finite.all():  # the usual case: nothing missing, no mask
            counts = np.bincount(index.ravel(), minlength=len(self._counts))
            with self._lock:
                self._counts += counts
            return
        counts = np.bincount(index[finite], minlength=len(self._counts))
        missing = (~finite).sum(axis=0)
        with self._lock:
            self._counts += counts
            self._missing += missing

    def snapshot(self) -> list[tuple[str, list[int], int]]:
        """``[(feature, counts per bin, missing count)]`` for the metrics exposition."""
        with self._lock:
            counts = self._counts.copy()
            missing = self._missing.copy()
        return [(name, counts[o:o + b].tolist(), int(missing[i]))
                for i, (name, o, b) in enumerate(zip(self.features, self._offsets, self.bins,
                                                     strict=True))]


class ValueHistogram:
    """A cumulative histogram of regression predictions with per-variant bucket bounds."""

    def __init__(self, edges: Sequence[float] = DEFAULT_VALUE_EDGES):
        self.upper_bounds = np.unique(np.asarray(edges, dtype=float))
        self._counts = np.zeros(len(self.upper_bounds) + 1, dtype=np.int64)  # last is +Inf
        self._sum = 0.0
        # Running sums of the positive values, of the negatives' magnitudes and of the
        # squares: counters that never go down, for the spread of predictions.
        self._positive = 0.0
        self._negative = 0.0
        self._squares = 0.0
        self._lock = threading.Lock()

    def add(self, values: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64).ravel()
        values = values[np.isfinite(values)]
        # Prometheus buckets are "<= le": a value equal to a bound belongs to that bucket.
        counts = np.bincount(np.searchsorted(self.upper_bounds, values, side="left"),
                             minlength=len(self._counts))
        with self._lock:
            self._counts += counts
            self._sum += float(values.sum())
            self._positive += float(values[values > 0].sum())
            self._negative -= float(values[values < 0].sum())
            self._squares += float(np.square(values).sum())

    def moments(self) -> dict[str, float]:
        """``{"positive", "negative", "squares"}``: the running sums behind the spread."""
        with self._lock:
            return {"positive": self._positive, "negative": self._negative,
                    "squares": self._squares}

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        with self._lock:
            counts = self._counts.copy()
            total = self._sum
        cumulative = np.cumsum(counts)
        buckets = [(_float_label(b), int(c)) for b, c in zip(self.upper_bounds, cumulative,
                                                              strict=False)]
        buckets.append(("+Inf", int(cumulative[-1])))
        return buckets, total


class ClassCounter:
    """Predicted class counts of a classifier (labels bounded by the model's classes)."""

    def __init__(self, classes: Sequence):
        self.labels = [str(c) for c in classes]
        self._counts = np.zeros(len(self.labels), dtype=np.int64)
        self._lock = threading.Lock()

    def add(self, class_indices: np.ndarray) -> None:
        counts = np.bincount(class_indices, minlength=len(self.labels))
        with self._lock:
            self._counts += counts

    def snapshot(self) -> list[tuple[str, int]]:
        with self._lock:
            return list(zip(self.labels, self._counts.tolist(), strict=True))


def _float_label(value: float) -> str:
    return repr(float(value))
