"""ops.serving.binning: live counts land in the same bins as the baseline profile's."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ops.profile import numeric_profile, profile_frame
from ops.serving.binning import ClassCounter, FeatureBinner, ValueHistogram, bin_index


def counts_by_feature(binner: FeatureBinner) -> dict:
    return {name: (counts, missing) for name, counts, missing in binner.snapshot()}


def test_counting_the_baseline_rows_reproduces_the_profile_counts():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=500), "b": rng.exponential(size=500),
                          "flag": rng.integers(0, 2, 500).astype(float),
                          "rating": rng.integers(1, 6, 500).astype(float)})
    profile = profile_frame(frame)
    binner = FeatureBinner({n: p["edges"] for n, p in profile["features"].items()},
                           {n: i for i, n in enumerate(frame.columns)})
    for start in range(0, 500, 37):  # in uneven batches, as the server sees them
        binner.add(frame.to_numpy()[start:start + 37])
    for name, (counts, missing) in counts_by_feature(binner).items():
        assert counts == profile["features"][name]["counts"], name
        assert missing == 0


def test_values_outside_the_baseline_fall_into_the_open_outer_bins():
    profile = numeric_profile(np.arange(100.0))
    edges = profile["edges"]
    binner = FeatureBinner({"x": edges}, {"x": 0})
    binner.add(np.array([[-1e9], [edges[0]], [edges[-1]], [1e9]]))
    counts, _ = counts_by_feature(binner)["x"]
    assert counts[0] == 2 and counts[-1] == 2 and sum(counts) == 4


def test_values_on_an_edge_go_right_like_the_profile():
    edges = [0.0, 1.0, 2.0, 3.0]
    binner = FeatureBinner({"x": edges}, {"x": 0})
    values = np.array([0.5, 1.0, 2.0, 2.5, 3.0])
    binner.add(values[:, None])
    expected = np.bincount(bin_index(edges, values), minlength=3).tolist()
    assert counts_by_feature(binner)["x"][0] == expected == [1, 1, 3]


def test_missing_values_are_counted_apart_not_binned():
    binner = FeatureBinner({"x": [0.0, 1.0, 2.0]}, {"x": 0})
    binner.add(np.array([[np.nan], [0.5], [np.nan]]))
    counts, missing = counts_by_feature(binner)["x"]
    assert (counts, missing) == ([1, 0], 2)


def test_features_with_different_bin_counts_and_columns():
    binner = FeatureBinner({"b": [0, 1, 2, 3, 4, 5], "a": [0, 10], "ignored": [1]},
                           {"a": 0, "b": 2, "ignored": 1})
    rows = np.array([[5.0, 99.0, 0.5], [50.0, 99.0, 4.5], [-5.0, 99.0, 2.0]])
    binner.add(rows)
    got = counts_by_feature(binner)
    assert set(got) == {"a", "b"}
    assert got["a"][0] == [3]
    assert got["b"][0] == [1, 0, 1, 0, 1]


def test_value_histogram_is_cumulative_with_inclusive_upper_bounds():
    histogram = ValueHistogram([0.0, 1.0, 10.0])
    histogram.add(np.array([-5.0, 0.0, 0.5, 1.0, 20.0, np.nan]))
    buckets, total = histogram.snapshot()
    assert buckets == [("0.0", 2), ("1.0", 4), ("10.0", 4), ("+Inf", 5)]
    assert total == 16.5


def test_class_counter_counts_by_label():
    counter = ClassCounter(["no", "yes"])
    counter.add(np.array([0, 1, 1, 1]))
    assert counter.snapshot() == [("no", 1), ("yes", 3)]
