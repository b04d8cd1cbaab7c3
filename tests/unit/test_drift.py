"""Drift statistics against scipy's own implementations and hand-computed cases."""

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from ops import drift

RNG = np.random.default_rng(20261122)


# -- binning ------------------------------------------------------------------------------------


@pytest.mark.parametrize("trial", range(40))
def test_binning_equals_searchsorted_on_random_data(trial):
    rng = np.random.default_rng(trial)
    values = rng.normal(size=3000) * rng.uniform(0.01, 1000) + rng.uniform(-50, 50)
    if trial % 3 == 0:
        values = np.round(values)  # ties on the edges
    edges = np.unique(np.quantile(values[:300], np.linspace(0, 1, rng.integers(3, 150))))
    expected = np.bincount(np.searchsorted(edges[1:-1], values, side="right"),
                           minlength=len(edges) - 1)
    assert drift.bin_column(values, edges).tolist() == expected.tolist()


def test_binning_skips_non_finite_values_and_opens_the_outer_bins():
    edges = np.array([0.0, 1.0, 2.0, 3.0])
    values = [-100, 0.5, 1.0, 1.5, 2.0, 99, np.nan, np.inf, -np.inf]
    assert drift.bin_column(values, edges).tolist() == [2, 2, 2]


def test_binning_with_one_or_no_interior_edge():
    assert drift.bin_column([0, 1, 2, 3], [0.0, 1.5, 3.0]).tolist() == [2, 2]
    assert drift.bin_column([0, 1, 2], [0.0, 3.0]).tolist() == [3]
    assert drift.bin_column([], [0.0, 1.0, 2.0]).tolist() == [0, 0]


# -- statistics against scipy --------------------------------------------------------------------


def test_psi_by_hand():
    value = drift.psi(np.array([[50, 50]]), np.array([[25, 75]]))[0]
    assert value == pytest.approx(-0.25 * math.log(0.5) + 0.25 * math.log(1.5))
    assert drift.psi(np.array([[10, 30]]), np.array([[20, 60]]))[0] == pytest.approx(0.0)


def test_psi_floors_empty_bins_instead_of_going_infinite():
    value = drift.psi(np.array([[100, 0]]), np.array([[50, 50]]))[0]
    assert math.isfinite(value) and value > 1


def test_jensen_shannon_matches_scipy():
    a = RNG.integers(0, 100, size=(30, 12)).astype(float)
    b = RNG.integers(0, 100, size=(30, 12)).astype(float)
    a[:, 3] = 0  # empty bins on one side
    expected = [jensenshannon(x, y, base=2) for x, y in zip(a, b, strict=True)]
    assert drift.js_distance(a, b) == pytest.approx(expected, abs=1e-12)
    assert drift.js_distance(a[:1], a[:1])[0] == pytest.approx(0.0, abs=1e-7)


def test_chi_square_matches_scipy_contingency():
    a = RNG.integers(0, 60, size=(25, 8)).astype(float)
    b = RNG.integers(0, 60, size=(25, 8)).astype(float)
    a[:, 2] = b[:, 2] = 0  # a cell empty on both sides is left out
    statistic, pvalue = drift.chi_square(a, b)
    for i in range(len(a)):
        keep = (a[i] + b[i]) > 0
        result = stats.chi2_contingency(np.vstack([a[i, keep], b[i, keep]]), correction=False)
        assert statistic[i] == pytest.approx(result.statistic)
        assert pvalue[i] == pytest.approx(result.pvalue)


def test_chi_square_without_data_is_nan():
    statistic, pvalue = drift.chi_square(np.array([[0, 0, 0]]), np.array([[1, 2, 3]]))
    assert math.isnan(statistic[0]) and math.isnan(pvalue[0])


@pytest.mark.parametrize("n, m, shift", [(500, 800, 0.0), (2000, 1500, 0.2), (5000, 9000, 0.05)])
def test_ks_from_samples_matches_scipy(n, m, shift):
    a, b = RNG.normal(size=n), RNG.normal(shift, 1, size=m)
    d, p = drift.ks_from_samples(a, b)
    expected = stats.ks_2samp(a, b, method="asymp")
    assert d == pytest.approx(expected.statistic)
    assert p == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-12)


def test_ks_from_counts_is_the_exact_d_within_one_fine_bin():
    a, b = RNG.normal(size=20000), RNG.normal(0.1, 1.2, size=30000)
    report = drift.compare_samples(a[:, None], b[:, None])
    exact, _ = drift.ks_from_samples(a, b)
    assert exact - 0.011 <= report.features[0].ks <= exact + 1e-9


def test_ks_pvalue_uses_the_limit_for_large_samples():
    p = drift.ks_pvalue(np.array([0.01]), np.array([1e6]), np.array([1e6]))[0]
    assert p == pytest.approx(stats.kstwo.sf(0.01, 500000), rel=1e-3)


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.5, 1.0), (0.0, 2.0), (-1.0, 0.5)])
def test_wasserstein_matches_scipy(shift, scale):
    a, b = RNG.normal(size=50000), RNG.normal(shift, scale, size=40000)
    exact = stats.wasserstein_distance(a, b) / np.std(a)
    assert drift.wasserstein_from_samples(a, b) == pytest.approx(exact)
    binned = drift.compare_samples(a[:, None], b[:, None]).features[0].wasserstein
    assert binned == pytest.approx(exact, rel=0.05, abs=0.005)


def test_wasserstein_from_counts_by_hand():
    # Two bins inside [0, 2] of width 1 (outer bins empty): all mass moves by one bin.
    edges = np.array([[-1.0, 0.0, 1.0, 2.0, 3.0]])
    a = np.array([[0, 10, 0, 0]])
    b = np.array([[0, 0, 10, 0]])
    assert drift.wasserstein_from_counts(a, b, edges, np.array([1.0]))[0] == pytest.approx(1.0)


# -- verdicts -------------------------------------------------------------------------------------


def test_no_drift_on_the_same_distribution_and_drift_on_shifted_features():
    reference = RNG.normal(size=(20000, 6))
    current = RNG.normal(size=(20000, 6))
    current[:, 0] += 1.0
    current[:, 1] = current[:, 1] * 0.2  # same mean, far narrower
    report = drift.compare_samples(reference, current, list("abcdef"))
    verdicts = {f.name: f.verdict for f in report.features}
    assert verdicts == {"a": "critical", "b": "critical", "c": "no_drift", "d": "no_drift",
                        "e": "no_drift", "f": "no_drift"}
    assert report.drift_share == pytest.approx(2 / 6) and report.dataset_drift is False


def test_dataset_drift_when_half_the_features_drift():
    reference = RNG.normal(size=(5000, 4))
    current = RNG.normal(size=(5000, 4))
    current[:, :2] += 0.8
    report = drift.compare_samples(reference, current)
    assert report.drift_share == 0.5 and report.dataset_drift is True


def test_below_the_minimum_count_the_verdict_is_insufficient_data_never_drift():
    reference = RNG.normal(size=(5000, 2))
    current = RNG.normal(5.0, 1, size=(50, 2))  # far away, but only 50 rows
    report = drift.compare_samples(reference, current)
    assert {f.verdict for f in report.features} == {"insufficient_data"}
    assert report.drift_share is None and report.dataset_drift is None


def test_false_alarm_rate_on_small_undrifted_windows_is_at_most_one_percent():
    reference = RNG.normal(size=(20000, 10))
    alarms = 0
    for _ in range(200):
        report = drift.compare_samples(reference, RNG.normal(size=(300, 10)))
        alarms += any(f.drifted for f in report.features)
    assert alarms <= 2


def test_histograms_from_a_profile_and_live_counts():
    edges = [[-3.0, -1.0, 0.0, 1.0, 3.0]] * 2 + [None]
    baseline = [[160, 340, 340, 160], [160, 340, 340, 160], [500, 300, 200]]
    current = [[16, 34, 34, 16], [5, 20, 75, 400], [50, 30, 20]]
    report = drift.compare_histograms(baseline, current, ["same", "moved", "colour"],
                                      edges=edges, reference_std=[1.0, 1.0, None],
                                      thresholds=drift.Thresholds(min_count=50))
    same, moved, colour = report.features
    assert same.verdict == "no_drift" and same.psi == pytest.approx(0.0, abs=1e-12)
    assert moved.verdict == "critical" and moved.ks > 0.4 and moved.wasserstein > 0.5
    assert colour.kind == "categorical" and colour.verdict == "no_drift"
    assert colour.ks is None and colour.wasserstein is None
    nothing = drift.compare_histograms([[10, 10]], [[0, 0]], ["quiet"], edges=[[0, 1, 2]])
    quiet = nothing.features[0]
    assert quiet.verdict == "insufficient_data"
    assert (quiet.psi, quiet.ks, quiet.js_distance, quiet.wasserstein) == (None,) * 4


def test_histograms_with_different_bins_are_refused():
    with pytest.raises(ValueError, match="bins"):
        drift.compare_histograms([[1, 2, 3]], [[1, 2]], ["x"], edges=[[0, 1, 2, 3]])


@pytest.mark.parametrize("bad", [
    {"psi_warning": 0.3, "psi_critical": 0.2}, {"significance": 0}, {"drift_share": 1.5},
    {"min_count": 0}, {"psi_warning": "high"}, {"psi_critical": float("nan")},
    {"unknown": 1},
])
def test_invalid_thresholds_are_refused(bad):
    with pytest.raises(ValueError, match="drift thresholds"):
        drift.Thresholds.from_dict(bad)


def test_thresholds_round_trip():
    thresholds = drift.Thresholds.from_dict({"psi_warning": "0.2", "min_count": "50"})
    assert thresholds.psi_warning == 0.2 and thresholds.min_count == 50
    assert drift.Thresholds.from_dict(thresholds.to_dict()) == thresholds
