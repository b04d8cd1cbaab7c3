"""Drift statistics: how far live inputs have moved from the training data.

Pure numpy/scipy, no Django. Everything is vectorized over features: a window of data is
binned once (``bin_column``) and every statistic is computed from those counts, so the
cost is one pass over the rows whatever the number of statistics. Two entry points:

- ``compare_samples(reference, current)``: raw rows on both sides (notebooks, the
  benchmark). Reference quantiles give fine bins (100 by default) for the shape statistics
  (Kolmogorov–Smirnov, Wasserstein) and coarse bins (every tenth fine edge) for the share
  statistics (PSI, Jensen–Shannon, chi-square).
- ``compare_histograms(baseline, current, edges)``: counts only, as the model server
  exports them to Prometheus (bins of the version's baseline profile; outer bins open).

Statistics (per feature; ``STATISTICS`` is their table):

- **PSI** ``sum((q - p) * ln(q / p))`` on bin shares, each share floored at ``PSI_FLOOR``
  so an empty bin does not make it infinite.
- **Kolmogorov–Smirnov** ``D = max |F_ref - F_cur|``: exact from samples
  (``ks_from_samples``, as scipy's ``ks_2samp``), and at the bin edges from counts (a lower
  bound of the exact D, within one fine bin's share). p-value: scipy's asymptotic
  ``kstwo.sf(D, round(n*m/(n+m)))``, and its limit ``kstwobign`` from 20,000 on.
- **Jensen–Shannon distance** (base 2, in [0, 1]), as ``scipy.spatial.distance.jensenshannon``.
- **Normalized Wasserstein** ``W1 / std(reference)``: exact from samples
  (``wasserstein_from_samples``); from counts, values are taken as uniform within each
  interior bin (the area between two piecewise-linear CDFs is integrated exactly) and the
  open outer bins contribute ``|p_ref*(e - mean_ref) - p_cur*(e - mean_cur)|`` with the
  bin means when known (samples) or the baseline's min/max as their far bounds (counts).
- **Chi-square** test of homogeneity on the 2×k table of counts (cells empty on both sides
  dropped), as ``scipy.stats.chi2_contingency`` without continuity correction; used for
  categorical features and reported for numeric ones.

Verdicts. A feature with fewer than ``min_count`` current rows (or an empty baseline) is
``insufficient_data``: never drift. Otherwise it drifts when PSI reaches the warning
threshold *and* the chi-square test says the difference is not chance
(``p < significance``): PSI alone grows like ``(bins - 1) / n`` on small windows of
undrifted data. Severity: ``critical`` from ``psi_critical``, else ``warning``. The dataset
drifts when at least ``drift_share`` of the features with enough data drift.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

PSI_FLOOR = 1e-4
KS_EXACT_LIMIT = 20_000
NO_DRIFT = "no_drift"
WARNING = "warning"
CRITICAL = "critical"
INSUFFICIENT = "insufficient_data"
NUMERIC = "numeric"
CATEGORICAL = "categorical"


@dataclass(frozen=True)
class Thresholds:
    """When a feature, and a window, count as drifted (per model; defaults below)."""

    psi_warning: float = 0.1
    psi_critical: float = 0.25
    significance: float = 0.01  # chi-square p-value below which a difference is not chance
    drift_share: float = 0.5  # dataset drift: at least this share of features drifted
    min_count: int = 200  # fewer current rows than this: no verdict

    def __post_init__(self):
        problems = []
        if not (0 < self.psi_warning <= self.psi_critical):
            problems.append("need 0 < psi_warning <= psi_critical")
        if not (0 < self.significance < 1):
            problems.append("significance must be between 0 and 1")
        if not (0 < self.drift_share <= 1):
            problems.append("drift_share must be in (0, 1]")
        if int(self.min_count) < 1:
            problems.append("min_count must be at least 1")
        for name in ("psi_warning", "psi_critical", "significance", "drift_share"):
            if not math.isfinite(float(getattr(self, name))):
                problems.append(f"{name} must be a finite number")
        if problems:
            raise ValueError("invalid drift thresholds: " + "; ".join(problems))

    @classmethod
    def from_dict(cls, data: dict | None) -> Thresholds:
        data = dict(data or {})
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown drift thresholds: {', '.join(sorted(unknown))}")
        try:
            values = {k: (int(v) if k == "min_count" else float(v)) for k, v in data.items()}
        except (TypeError, ValueError) as e:
            raise ValueError(f"drift thresholds must be numbers: {e}") from e
        return cls(**values)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class FeatureDrift:
    name: str
    kind: str
    count: int  # current rows binned
    reference_count: int
    psi: float | None
    ks: float | None
    ks_pvalue: float | None
    js_distance: float | None
    wasserstein: float | None  # normalized by the reference's std
    chi2_pvalue: float | None
    verdict: str

    @property
    def drifted(self) -> bool:
        return self.verdict in (WARNING, CRITICAL)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)

    @property
    def judged(self) -> tuple[FeatureDrift, ...]:
        return tuple(f for f in self.features if f.verdict != INSUFFICIENT)

    @property
    def drift_share(self) -> float | None:
        """Share of the features with enough data that drifted; None if none had enough."""
        judged = self.judged
        if not judged:
            return None
        return sum(f.drifted for f in judged) / len(judged)

    @property
    def dataset_drift(self) -> bool | None:
        share = self.drift_share
        return None if share is None else share >= self.thresholds.drift_share

    def by_name(self) -> dict[str, FeatureDrift]:
        return {f.name: f for f in self.features}

    def to_dict(self) -> dict:
        return {"features": [f.to_dict() for f in self.features],
                "drift_share": self.drift_share, "dataset_drift": self.dataset_drift,
                "thresholds": self.thresholds.to_dict()}


# -- binning ----------------------------------------------------------------------------------

_GRID = 4096


def bin_column(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts of ``values`` in the bins of ``edges`` (interior edges decide; the outer bins
    are open, as in the baseline profile and the model server). Non-finite values are
    skipped.

    Same result as ``np.searchsorted(edges[1:-1], values, side="right")`` but several times
    faster on large windows: a lookup table over a uniform grid gives each value the number
    of edges below its grid cell, and a few vectorized compares finish the count inside
    cells that hold edges.
    """
    values = np.asarray(values, dtype=float)
    if not np.isfinite(values).all():
        values = values[np.isfinite(values)]
    interior = np.asarray(edges, dtype=float)[1:-1]
    n_bins = len(interior) + 1
    if len(interior) == 0 or len(values) == 0:
        counts = np.zeros(n_bins, dtype=np.int64)
        counts[0] = len(values)
        return counts
    lo, hi = interior[0], interior[-1]
    if hi > lo:
        scale = _GRID / (hi - lo)
        # Cell 0: below lo; cells 1..GRID: the grid; cell GRID+1: hi and above.
        # (In place where possible: fresh large arrays cost page faults, not arithmetic.)
        work = np.subtract(values, lo)
        work *= scale
        np.clip(work, -1, _GRID, out=work)
        np.floor(work, out=work)
        work += 1
        cell = work.astype(np.int32)
        del work
        # Each cell's table entry counts the edges below its start, less a margin so that
        # rounding in the cell computation can only leave edges to add, never to take back.
        margin = 1e-9 * (hi - lo)
        starts = lo + (np.arange(_GRID + 2) - 1) / scale - margin
        table = np.searchsorted(interior, starts, side="right")
        table[0] = 0
        index = np.take(table.astype(np.int32), cell, out=cell)
        # At most this many edges lie between a cell's start and any value in it.
        ends = np.append(starts[1:] + 2 * margin, np.inf)
        extra = int((np.searchsorted(interior, ends, side="right") - table).max())
        padded = np.append(interior, np.inf)
        if extra:
            step = np.empty(len(values), dtype=bool)
            for _ in range(extra):
                np.greater_equal(values, padded.take(index), out=step)
                index += step
    else:  # a single interior edge
        index = (values >= lo).astype(np.int64)
    return np.bincount(index, minlength=n_bins)


def tail_means(values: np.ndarray, edges: np.ndarray) -> tuple[float, float]:
    """Mean of the values in the open outer bins (below the first interior edge, and from
    the last one up); the bin's inner edge when it is empty."""
    values = np.asarray(values, dtype=float)
    interior = np.asarray(edges, dtype=float)[1:-1]
    if len(interior) == 0:
        return float(edges[0]), float(edges[-1])
    low = values[values < interior[0]]
    high = values[values >= interior[-1]]
    high = high[np.isfinite(high)]
    return (float(low.mean()) if len(low) else float(interior[0]),
            float(high.mean()) if len(high) else float(interior[-1]))


def quantile_edges(values: np.ndarray, bins: int, sample: int = 25_000,
                   seed: int = 0) -> np.ndarray:
    """Quantile edges of a column, from a random sample of at most ``sample`` rows (bin
    edges need to be reasonable, not exact: the counts in them are exact), with the
    column's true minimum and maximum as the outer edges."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return np.array([0.0, 1.0])
    low, high = values.min(), values.max()
    if len(values) > sample:
        values = values[np.random.default_rng(seed).integers(0, len(values), sample)]
    ordered = np.sort(values)
    # Linear interpolation between order statistics, as np.quantile's default.
    positions = np.linspace(0, len(ordered) - 1, bins + 1)
    edges = np.interp(positions, np.arange(len(ordered)), ordered)
    edges[0], edges[-1] = low, high
    edges = np.unique(edges)
    if len(edges) == 1:
        edges = np.array([edges[0] - 0.5, edges[0] + 0.5])
    return edges


# -- statistics on counts (rows: features, columns: bins) -------------------------------------


def _shares(counts: np.ndarray) -> np.ndarray:
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1), 0.0)


def psi(reference: np.ndarray, current: np.ndarray, floor: float = PSI_FLOOR) -> np.ndarray:
    """Population stability index per row of two count matrices (same bins)."""
    p = np.maximum(_shares(np.atleast_2d(reference).astype(float)), floor)
    q = np.maximum(_shares(np.atleast_2d(current).astype(float)), floor)
    return ((q - p) * np.log(q / p)).sum(axis=1)


def js_distance(reference: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Jensen–Shannon distance (base 2) per row, as scipy's ``jensenshannon``."""
    p = _shares(np.atleast_2d(reference).astype(float))
    q = _shares(np.atleast_2d(current).astype(float))
    m = (p + q) / 2

    def kl(a, b):
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(a > 0, a * np.log2(np.where(a > 0, a, 1) / np.where(b > 0, b, 1)),
                             0.0)
        return terms.sum(axis=1)

    return np.sqrt(np.maximum((kl(p, m) + kl(q, m)) / 2, 0.0))


def chi_square(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Chi-square test of homogeneity per row: (statistic, p-value); cells empty on both
    sides are left out. NaN where a side is empty or only one cell is used."""
    a = np.atleast_2d(reference).astype(float)
    b = np.atleast_2d(current).astype(float)
    n, m = a.sum(axis=1, keepdims=True), b.sum(axis=1, keepdims=True)
    total = a + b
    with np.errstate(divide="ignore", invalid="ignore"):
        expected_a = total * n / (n + m)
        expected_b = total * m / (n + m)
        terms = np.where(total > 0, (a - expected_a) ** 2 / expected_a
                         + (b - expected_b) ** 2 / expected_b, 0.0)
    statistic = terms.sum(axis=1)
    dof = (total > 0).sum(axis=1) - 1
    valid = (dof > 0) & (n[:, 0] > 0) & (m[:, 0] > 0)
    pvalue = np.where(valid, stats.chi2.sf(statistic, np.maximum(dof, 1)), np.nan)
    return np.where(valid, statistic, np.nan), pvalue


def ks_from_counts(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Kolmogorov–Smirnov D at the bin edges, and its asymptotic p-value, per row."""
    a = np.atleast_2d(reference).astype(float)
    b = np.atleast_2d(current).astype(float)
    d = np.abs(np.cumsum(_shares(a), axis=1) - np.cumsum(_shares(b), axis=1)).max(axis=1)
    return d, ks_pvalue(d, a.sum(axis=1), b.sum(axis=1))


def ks_pvalue(d, n, m) -> np.ndarray:
    """Two-sided asymptotic p-value of D for samples of n and m rows (scipy's formula)."""
    d, n, m = np.asarray(d, float), np.asarray(n, float), np.asarray(m, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        en = np.round(n * m / (n + m))
    valid = (n > 0) & (m > 0) & np.isfinite(d)
    en = np.where(valid, np.maximum(en, 1), 1)
    d = np.where(valid, d, 0.0)
    # kstwo.sf is exact and slow (tens of ms) for large n, where it equals the limiting
    # Kolmogorov distribution to many digits; the limit is used from KS_EXACT_LIMIT on.
    large = en >= KS_EXACT_LIMIT
    p = np.where(large, stats.kstwobign.sf(d * np.sqrt(en)), 0.0)
    if (~large).any():
        p = np.where(large, p, stats.kstwo.sf(d, np.where(large, 1, en)))
    return np.where(valid, np.clip(p, 0, 1), np.nan)


def wasserstein_from_counts(reference: np.ndarray, current: np.ndarray, edges: np.ndarray,
                            reference_std: np.ndarray, reference_means: np.ndarray | None = None,
                            current_means: np.ndarray | None = None) -> np.ndarray:
    """Normalized W1 per row from counts in bins ``edges`` (rows of ``len(bins) + 1``;
    outer bins open: ``edges[:, 0]`` and ``edges[:, -1]`` are the far bounds assumed for
    them unless the bin means are given). See the module docstring."""
    a = _shares(np.atleast_2d(reference).astype(float))
    b = _shares(np.atleast_2d(current).astype(float))
    edges = np.atleast_2d(edges).astype(float)
    fa, fb = np.cumsum(a, axis=1), np.cumsum(b, axis=1)
    # Interior bins 1..k-2 span edges[i]..edges[i+1]; CDFs at those edges are fa[:, i-1].
    d = fa - fb  # difference of the CDFs at the right end of each bin
    left, right = d[:, :-2], d[:, 1:-1]
    width = np.diff(edges[:, 1:-1], axis=1)
    same = left * right >= 0
    with np.errstate(divide="ignore", invalid="ignore"):
        crossing = (left ** 2 + right ** 2) / (2 * (np.abs(left) + np.abs(right)))
    area = width * np.where(same, (np.abs(left) + np.abs(right)) / 2,
                            np.nan_to_num(crossing))
    interior = area.sum(axis=1)

    first_edge, last_edge = edges[:, 1], edges[:, -2]
    if reference_means is None:
        ref_low = (edges[:, 0] + first_edge) / 2
        ref_high = (last_edge + edges[:, -1]) / 2
    else:  # (low, high) outer-bin means per row
        ref_low, ref_high = reference_means[:, 0], reference_means[:, 1]
    if current_means is None:
        cur_low, cur_high = ref_low, ref_high
    else:
        cur_low, cur_high = current_means[:, 0], current_means[:, 1]
    low = np.abs(a[:, 0] * (first_edge - ref_low) - b[:, 0] * (first_edge - cur_low))
    high = np.abs(a[:, -1] * (ref_high - last_edge) - b[:, -1] * (cur_high - last_edge))
    total = interior + np.nan_to_num(low) + np.nan_to_num(high)
    std = np.asarray(reference_std, float)
    return total / np.where(std > 0, std, 1.0)


# -- exact statistics from samples (one feature) -------------------------------------------------


def ks_from_samples(reference: np.ndarray, current: np.ndarray) -> tuple[float, float]:
    """Exact two-sample D and its asymptotic p-value (as ``ks_2samp(method="asymp")``)."""
    a = np.sort(np.asarray(reference, float))
    b = np.sort(np.asarray(current, float))
    both = np.concatenate([a, b])
    d = float(np.abs(np.searchsorted(a, both, side="right") / len(a)
                     - np.searchsorted(b, both, side="right") / len(b)).max())
    return d, float(ks_pvalue(d, len(a), len(b)))


def wasserstein_from_samples(reference: np.ndarray, current: np.ndarray) -> float:
    """Exact W1 between two samples divided by the reference's standard deviation."""
    reference = np.asarray(reference, float)
    w = stats.wasserstein_distance(reference, np.asarray(current, float))
    std = float(np.std(reference))
    return float(w / std) if std > 0 else float(w)


# -- comparisons ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Bins:
    """Counts of the features ``rows`` (indices of their names), on both sides, in bins of one
    number: the share bins of every feature, or the fine bins of the numeric features with
    one number of ``edges`` (one ``_Bins`` per number), with what Wasserstein needs."""

    rows: list[int]
    reference: np.ndarray
    current: np.ndarray
    edges: list | None = None  # each row's edges, all of one length
    reference_std: Callable[[], np.ndarray] | None = None  # computed only when asked for
    reference_means: np.ndarray | None = None  # (low, high) outer-bin means per row
    current_means: np.ndarray | None = None


@dataclass(frozen=True)
class Statistic:
    """One row of ``STATISTICS``: the ``FeatureDrift`` fields ``compute`` fills (one array
    each, over ``_Bins.rows``). ``shape`` statistics read the fine bins of the numeric
    features with at least ``min_edges`` edges, the others the share bins of every feature."""

    fields: tuple[str, ...]
    compute: Callable[[_Bins], tuple[np.ndarray, ...]]
    shape: bool = False
    min_edges: int = 2


def _wasserstein(bins: _Bins) -> tuple[np.ndarray]:
    return (wasserstein_from_counts(bins.reference, bins.current, np.array(bins.edges, float),
                                    bins.reference_std(), bins.reference_means,
                                    bins.current_means),)


#: Every statistic reported per feature: a new one is a function above, a row here and its
#: field in ``FeatureDrift``. Computed in this order.
STATISTICS = (
    Statistic(("psi",), lambda bins: (psi(bins.reference, bins.current),)),
    Statistic(("chi2_pvalue",), lambda bins: chi_square(bins.reference, bins.current)[1:]),
    Statistic(("js_distance",), lambda bins: (js_distance(bins.reference, bins.current),)),
    Statistic(("ks", "ks_pvalue"), lambda bins: ks_from_counts(bins.reference, bins.current),
              shape=True),
    Statistic(("wasserstein",), _wasserstein, shape=True, min_edges=3),
)


def _statistics(shares: _Bins, fine: list[_Bins], f: int) -> dict[str, np.ndarray]:
    """Every statistic of ``STATISTICS`` for ``f`` features: NaN where not computed."""
    values = {}
    for statistic in STATISTICS:
        for name in statistic.fields:
            values[name] = np.full(f, np.nan)
        for bins in (fine if statistic.shape else [shares]):
            if bins.edges is not None and len(bins.edges[0]) < statistic.min_edges:
                continue
            for name, computed in zip(statistic.fields, statistic.compute(bins), strict=True):
                values[name][bins.rows] = computed
    return values


def _pad(rows: Sequence[np.ndarray]) -> np.ndarray:
    width = max((len(r) for r in rows), default=1)
    out = np.zeros((len(rows), width))
    for i, row in enumerate(rows):
        out[i, :len(row)] = row
    return out


def _by_width(edges: Sequence, rows: Sequence[int]) -> list[list[int]]:
    """``rows`` grouped by their number of edges, fewest first."""
    return [[i for i in rows if len(edges[i]) == width]
            for width in sorted({len(edges[i]) for i in rows})]


def _verdicts(count, reference_count, psi_values, chi2_p, thresholds: Thresholds) -> list[str]:
    verdicts = []
    for n, r, value, p in zip(count, reference_count, psi_values, chi2_p, strict=True):
        if n < thresholds.min_count or r == 0 or not np.isfinite(value):
            verdicts.append(INSUFFICIENT)
        elif value >= thresholds.psi_warning and np.isfinite(p) and p < thresholds.significance:
            verdicts.append(CRITICAL if value >= thresholds.psi_critical else WARNING)
        else:
            verdicts.append(NO_DRIFT)
    return verdicts


def _none(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _report(names, kinds, shares: _Bins, fine: list[_Bins],
            thresholds: Thresholds) -> DriftReport:
    """Every statistic and verdict: one FeatureDrift per feature; no statistic at all where
    a side has no rows."""
    values = _statistics(shares, fine, len(names))
    count = shares.current.sum(axis=1).astype(int)
    reference_count = shares.reference.sum(axis=1).astype(int)
    verdicts = _verdicts(count, reference_count, values["psi"], values["chi2_pvalue"],
                         thresholds)
    out = []
    for i, name in enumerate(names):
        empty = not count[i] or not reference_count[i]
        out.append(FeatureDrift(
            name=str(name), kind=kinds[i], count=int(count[i]),
            reference_count=int(reference_count[i]), verdict=verdicts[i],
            **{field: None if empty else _none(column[i]) for field, column in values.items()}))
    return DriftReport(tuple(out), thresholds)


def compare_histograms(baseline: Sequence[Sequence[float]], current: Sequence[Sequence[float]],
                       names: Sequence[str], *, edges: Sequence[Sequence[float] | None],
                       kinds: Sequence[str] | None = None,
                       reference_std: Sequence[float | None] | None = None,
                       thresholds: Thresholds | None = None) -> DriftReport:
    """Drift of each feature from counts in the same bins on both sides.

    ``baseline[i]`` and ``current[i]`` are counts per bin of feature ``names[i]``;
    ``edges[i]`` its bin edges (numeric; ``None`` for categorical), ``reference_std[i]`` the
    baseline's standard deviation (for Wasserstein; estimated from the counts if None).
    """
    thresholds = thresholds or Thresholds()
    f = len(names)
    kinds = list(kinds or [NUMERIC if edges[i] is not None else CATEGORICAL for i in range(f)])
    for i in range(f):
        if len(baseline[i]) != len(current[i]):
            raise ValueError(f"feature {names[i]!r}: baseline has {len(baseline[i])} bins, "
                             f"current {len(current[i])}")
    shares = _Bins(list(range(f)), _pad([np.asarray(x, float) for x in baseline]),
                   _pad([np.asarray(x, float) for x in current]))
    numeric = [i for i in range(f) if kinds[i] == NUMERIC and edges[i] is not None
               and len(edges[i]) >= 2]
    fine = [_Bins(rows, np.array([baseline[i] for i in rows], float),
                  np.array([current[i] for i in rows], float),
                  [edges[i] for i in rows],
                  lambda rows=rows: np.array([_std_of(reference_std, i, edges[i], baseline[i])
                                              for i in rows]))
            for rows in _by_width(edges, numeric)]
    return _report(names, kinds, shares, fine, thresholds)


def _std_of(reference_std, i: int, edges, counts) -> float:
    if reference_std is not None and reference_std[i]:
        return float(reference_std[i])
    edges = np.asarray(edges, float)
    middles = (edges[:-1] + edges[1:]) / 2
    counts = np.asarray(counts, float)
    if counts.sum() <= 0:
        return 1.0
    mean = (middles * counts).sum() / counts.sum()
    return float(math.sqrt(((middles - mean) ** 2 * counts).sum() / counts.sum())) or 1.0


@dataclass
class _Column:
    """One column of ``compare_samples`` binned: fine and coarse (share) counts, and more."""

    fine_a: np.ndarray
    fine_b: np.ndarray
    edges: np.ndarray
    tails_a: tuple[float, float]
    tails_b: tuple[float, float]
    std: float
    coarse_a: np.ndarray
    coarse_b: np.ndarray

    @classmethod
    def binned(cls, ra: np.ndarray, rb: np.ndarray, fine_bins: int,
               coarse_bins: int) -> _Column:
        if not np.isfinite(ra).all():
            ra = ra[np.isfinite(ra)]
        if not np.isfinite(rb).all():
            rb = rb[np.isfinite(rb)]
        edges = quantile_edges(ra, fine_bins)
        ca, cb = bin_column(ra, edges), bin_column(rb, edges)
        # Coarse bins: every step-th fine edge (always including both ends).
        picks = np.unique(np.round(np.linspace(0, len(edges) - 1,
                                               min(coarse_bins, len(edges) - 1) + 1)).astype(int))
        return cls(ca, cb, edges, tail_means(ra, edges), tail_means(rb, edges),
                   float(ra.std()) if len(ra) else 0.0,
                   np.add.reduceat(ca, picks[:-1]), np.add.reduceat(cb, picks[:-1]))


def compare_samples(reference: np.ndarray, current: np.ndarray,
                    names: Sequence[str] | None = None, *, fine_bins: int = 100,
                    coarse_bins: int = 10, thresholds: Thresholds | None = None) -> DriftReport:
    """Drift of every numeric column of ``current`` (rows × features) from ``reference``.

    One binning pass per side: fine quantile bins of the reference feed Kolmogorov–Smirnov
    and Wasserstein; every ``fine_bins // coarse_bins``-th edge makes the coarse bins that
    feed PSI, Jensen–Shannon and chi-square. Column-major arrays (``np.asfortranarray``, or
    a DataFrame's ``to_numpy()`` of one dtype) are read without copies.
    """
    thresholds = thresholds or Thresholds()
    reference = np.asarray(reference, dtype=float)
    current = np.asarray(current, dtype=float)
    if reference.ndim != 2 or current.ndim != 2 or reference.shape[1] != current.shape[1]:
        raise ValueError("reference and current must be 2-D with the same columns, got "
                         f"{reference.shape} and {current.shape}")
    f = reference.shape[1]
    names = list(names) if names is not None else [f"feature_{i}" for i in range(f)]
    if len(names) != f:
        raise ValueError(f"{len(names)} names for {f} columns")
    # Contiguous views for column-major input.
    columns = [_Column.binned(reference[:, j], current[:, j], fine_bins, coarse_bins)
               for j in range(f)]
    shares = _Bins(list(range(f)), _pad([c.coarse_a for c in columns]),
                   _pad([c.coarse_b for c in columns]))
    fine = [_Bins(rows, np.array([columns[j].fine_a for j in rows], float),
                  np.array([columns[j].fine_b for j in rows], float),
                  [columns[j].edges for j in rows],
                  lambda rows=rows: np.array([columns[j].std for j in rows]),
                  np.array([columns[j].tails_a for j in rows]),
                  np.array([columns[j].tails_b for j in rows]))
            for rows in _by_width([c.edges for c in columns], range(f))]
    return _report(names, [NUMERIC] * f, shares, fine, thresholds)
