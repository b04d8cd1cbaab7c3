"""A/B statistics against scipy and textbook cases; SRM; the sequential test's error rate."""

import math

import numpy as np
import pytest
from scipy import stats

from explainability.abtest import (
    Aggregate,
    msprt_pvalue,
    readout,
    srm_pvalue,
    two_proportion_ztest,
    welch_ttest,
    wilson_interval,
)


def aggregate(values) -> Aggregate:
    a = Aggregate()
    for v in values:
        a = a.add(float(v))
    return a


def test_aggregates_give_mean_and_sample_variance():
    values = np.random.default_rng(1).normal(3, 2, size=500)
    a = aggregate(values)
    assert a.mean == pytest.approx(values.mean())
    assert a.variance == pytest.approx(values.var(ddof=1))


def test_wilson_interval_textbook_case():
    # 81 successes in 263 trials: Wilson 95% interval 0.2553 to 0.3662 (Newcombe 1998).
    low, high = wilson_interval(81, 263)
    assert (round(low, 4), round(high, 4)) == (0.2553, 0.3662)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_two_proportion_ztest_matches_the_chi_square_test():
    z, p = two_proportion_ztest(120, 1000, 150, 1000)
    chi = stats.chi2_contingency([[120, 880], [150, 850]], correction=False)
    assert z * z == pytest.approx(chi.statistic) and p == pytest.approx(chi.pvalue)


def test_welch_matches_scipy():
    rng = np.random.default_rng(2)
    x, y = rng.normal(10, 2, 300), rng.normal(10.4, 3, 250)
    t, df, p = welch_ttest(aggregate(x), aggregate(y))
    expected = stats.ttest_ind(y, x, equal_var=False)
    assert t == pytest.approx(expected.statistic) and p == pytest.approx(expected.pvalue)
    assert df == pytest.approx(expected.df)


def test_sample_ratio_mismatch_is_caught_on_a_skewed_split():
    assert srm_pvalue(5000, 5050, 0.5) > 0.1
    assert srm_pvalue(5000, 5600, 0.5) < 1e-6
    assert srm_pvalue(9000, 1000, 0.1) > 0.1  # a 90/10 split as configured
    broken = readout(Aggregate(5000, 500, 500), Aggregate(5600, 700, 700), binary=True)
    assert broken.srm_broken and not broken.significant
    assert broken.verdict.startswith("Assignment looks broken")


def test_a_clear_win_reads_as_one_with_its_interval():
    control = Aggregate(20000, 2000, 2000)  # 10.0 %
    treatment = Aggregate(20000, 2300, 2300)  # 11.5 %
    result = readout(control, treatment, binary=True, names=("v1", "v2"))
    assert result.significant and result.relative_lift == pytest.approx(0.15)
    low, high = result.relative_interval
    assert 0 < low < 0.15 < high
    assert result.verdict.startswith("v2 converts 15.0% better than v1 (95% CI")
    assert "sequential" in result.verdict
    assert result.control["interval"][0] < 0.1 < result.control["interval"][1]


def test_a_rise_in_a_lower_is_better_metric_reads_as_worse():
    control = Aggregate(20000, 2000, 2000)
    treatment = Aggregate(20000, 2300, 2300)
    result = readout(control, treatment, binary=True, names=("A", "B"), metric="churn rate",
                     higher_is_better=False)
    assert result.verdict.startswith("B's churn rate is 15.0% higher than A's, so B does worse")


def test_too_little_data_says_how_much_is_needed():
    early = readout(Aggregate(10, 1, 1), Aggregate(12, 2, 2), binary=True)
    assert early.verdict.startswith("Not enough data yet") and early.units_needed == 20
    unclear = readout(Aggregate(500, 50, 50), Aggregate(500, 55, 55), binary=True)
    assert not unclear.significant and unclear.units_needed > 1000
    assert "more outcomes per group" in unclear.verdict


def test_numeric_outcomes_use_welch():
    rng = np.random.default_rng(3)
    result = readout(aggregate(rng.normal(50, 10, 4000)), aggregate(rng.normal(52, 10, 4000)),
                     binary=False)
    assert result.test == "Welch's t-test" and result.significant
    assert result.difference == pytest.approx(2, abs=0.8)
    assert result.verdict.startswith("B scores")


def test_the_sequential_test_keeps_false_positives_under_alpha_when_peeked_at():
    rng = np.random.default_rng(4)
    experiments, units, looks = 300, 4000, np.linspace(100, 4000, 40).astype(int)
    rate = 0.1
    a = rng.random((experiments, units)) < rate
    b = rng.random((experiments, units)) < rate
    ca, cb = np.cumsum(a, axis=1), np.cumsum(b, axis=1)
    sequential_hits = naive_hits = 0
    for e in range(experiments):
        best, naive = 1.0, False
        for n in looks:
            pa, pb = ca[e, n - 1] / n, cb[e, n - 1] / n
            variance = (pa * (1 - pa) + pb * (1 - pb)) / n
            best = min(best, msprt_pvalue(pb - pa, variance, rate * (1 - rate) / 100))
            naive = naive or two_proportion_ztest(ca[e, n - 1], n, cb[e, n - 1], n)[1] < 0.05
        sequential_hits += best < 0.05
        naive_hits += naive
    assert sequential_hits / experiments <= 0.05
    assert naive_hits / experiments > 0.1  # peeking at a fixed-horizon test would mislead


def test_msprt_grows_with_evidence():
    assert msprt_pvalue(0.0, 1e-4, 1e-3) == 1.0
    assert msprt_pvalue(0.05, 1e-4, 1e-3) < 1e-3
    assert msprt_pvalue(0.05, 0.0, 1e-3) == 1.0
    assert math.isfinite(msprt_pvalue(10.0, 1e-6, 1.0))


def test_rates_of_100_percent_still_have_an_honest_interval():
    """All successes in both groups: the plain Wald interval has zero width and would
    read as certainty; the Agresti–Caffo interval does not."""
    result = readout(Aggregate(262, 262, 262), Aggregate(282, 282, 282), binary=True)
    low, high = result.difference_interval
    assert low < 0 < high and high - low > 0.01
    assert not result.significant and result.mde > 0.005
    assert "no difference is visible so far" in result.verdict


def test_agresti_caffo_interval_covers_at_its_level_on_small_samples():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(2000):
        a, b = rng.binomial(40, 0.05), rng.binomial(40, 0.10)
        result = readout(Aggregate(40, a, a), Aggregate(40, b, b), binary=True)
        low, high = result.difference_interval
        covered += low <= 0.05 <= high
    assert covered / 2000 >= 0.93
