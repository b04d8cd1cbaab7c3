"""ops.profile: baseline profiles of reference datasets and reading dataset files."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ops.exceptions import DatasetError, PermanentError
from ops.profile import (
    CSV,
    OTHER,
    PARQUET,
    categorical_profile,
    column_schema,
    detect_dataset_format,
    numeric_profile,
    profile_frame,
    read_dataset,
)


def bin_of(profile: dict, values) -> np.ndarray:
    """Assign values to bins the way the profile (and the model server) does."""
    return np.searchsorted(np.asarray(profile["edges"][1:-1]), np.asarray(values, dtype=float),
                           side="right")


@pytest.fixture(scope="module")
def normal_values():
    return np.random.default_rng(0).normal(loc=10, scale=2, size=500)


# numeric_profile ------------------------------------------------------------------------

def test_bin_counts_sum_to_the_number_of_present_values(normal_values):
    values = normal_values.copy()
    values[::10] = np.nan
    profile = numeric_profile(values)
    present = int((~np.isnan(values)).sum())
    assert profile["count"] == present
    assert sum(profile["counts"]) == present
    assert len(profile["counts"]) == len(profile["edges"]) - 1


def test_edges_are_strictly_increasing_and_span_the_data(normal_values):
    profile = numeric_profile(normal_values)
    edges = np.array(profile["edges"])
    assert np.all(np.diff(edges) > 0)
    assert edges[0] == pytest.approx(normal_values.min())
    assert edges[-1] == pytest.approx(normal_values.max())


def test_quantile_bins_hold_about_the_same_share_of_rows(normal_values):
    profile = numeric_profile(normal_values, bins=10)
    assert len(profile["counts"]) == 10
    assert all(40 <= c <= 60 for c in profile["counts"]), profile["counts"]


def test_counts_match_reassigning_the_baseline_with_interior_edges(normal_values):
    profile = numeric_profile(normal_values, bins=7)
    recount = np.bincount(bin_of(profile, normal_values), minlength=len(profile["counts"]))
    assert recount.tolist() == profile["counts"]


def test_repeated_values_give_unique_edges_and_fewer_bins():
    values = np.array([0.0] * 80 + [1.0] * 10 + [2.0] * 10)
    profile = numeric_profile(values, bins=10)
    edges = profile["edges"]
    assert edges == sorted(set(edges))
    assert len(edges) < 11
    assert sum(profile["counts"]) == 100


def test_constant_column_gets_one_bin_around_the_value():
    profile = numeric_profile(np.full(20, 3.0))
    assert profile["edges"] == [2.5, 3.5]
    assert profile["counts"] == [20]
    assert profile["std"] == 0.0
    assert profile["min"] == profile["max"] == 3.0


def test_discrete_column_gets_one_bin_per_value():
    flags = np.array([0, 1, 1, 0, 1, 1, 1, 0], dtype=float)
    result = numeric_profile(flags)
    assert result["edges"] == [-0.5, 0.5, 1.5]
    assert result["counts"] == [3, 5]
    ratings = np.array([1, 2, 2, 3, 5, 5, 5], dtype=float)
    assert numeric_profile(ratings)["counts"] == [1, 2, 1, 3]


def test_infinite_values_count_as_missing_and_keep_the_profile_finite():
    values = np.array([1.0, 2.0, np.inf, -np.inf, 3.0, np.nan] + list(range(20)), dtype=float)
    result = numeric_profile(values)
    assert result["missing_share"] == pytest.approx(3 / len(values))
    assert all(np.isfinite(result["edges"])) and np.isfinite(result["mean"])
    assert sum(result["counts"]) == len(values) - 3


def test_single_value_has_zero_std():
    profile = numeric_profile(np.array([4.0]))
    assert profile["std"] == 0.0
    assert profile["counts"] == [1]


def test_missing_share_counts_nans():
    profile = numeric_profile(np.array([1.0, np.nan, 3.0, np.nan]))
    assert profile["missing_share"] == 0.5
    assert profile["count"] == 2


def test_all_missing_column_has_no_bins_and_no_moments():
    profile = numeric_profile(np.array([np.nan, np.nan]))
    assert profile["missing_share"] == 1.0
    assert profile["count"] == 0
    assert profile["edges"] == [] and profile["counts"] == []
    assert profile["mean"] is None and profile["std"] is None


def test_empty_column_is_not_a_division_by_zero():
    profile = numeric_profile(np.array([]))
    assert profile["missing_share"] == 0.0
    assert profile["count"] == 0


def test_moments_match_numpy(normal_values):
    profile = numeric_profile(normal_values)
    assert profile["mean"] == pytest.approx(normal_values.mean())
    assert profile["std"] == pytest.approx(normal_values.std(ddof=1))


def test_values_beyond_the_baseline_range_fall_in_the_outer_bins(normal_values):
    profile = numeric_profile(normal_values)
    last = len(profile["counts"]) - 1
    far = [normal_values.min() - 100, -1e12, normal_values.max() + 100, 1e12]
    assert bin_of(profile, far).tolist() == [0, 0, last, last]


def test_baseline_extremes_fall_in_the_outer_bins(normal_values):
    profile = numeric_profile(normal_values)
    edges = profile["edges"]
    assert bin_of(profile, [edges[0], edges[-1]]).tolist() == [0, len(edges) - 2]


def test_profile_is_json_ready(normal_values):
    profile = numeric_profile(normal_values)
    assert json.loads(json.dumps(profile)) == profile


# categorical_profile --------------------------------------------------------------------

def test_categorical_frequencies_and_missing_share():
    profile = categorical_profile(["a", "b", "a", None, "a", np.nan])
    assert profile["frequencies"] == {"a": 3, "b": 1}
    assert profile["count"] == 4
    assert profile["missing_share"] == pytest.approx(2 / 6)
    assert profile["distinct"] == 2


def test_rare_categories_beyond_max_categories_are_pooled_as_other():
    values = ["a"] * 5 + ["b"] * 4 + ["c"] * 3 + ["d"] * 2 + ["e"]
    profile = categorical_profile(values, max_categories=2)
    assert profile["frequencies"] == {"a": 5, "b": 4, OTHER: 6}
    assert profile["distinct"] == 5
    assert sum(profile["frequencies"].values()) == profile["count"] == len(values)


def test_no_other_bucket_when_everything_fits():
    profile = categorical_profile(["x", "y", "y"], max_categories=2)
    assert OTHER not in profile["frequencies"]


def test_non_string_categories_are_keyed_by_their_text():
    profile = categorical_profile(pd.Series([True, False, True]))
    assert profile["frequencies"] == {"True": 2, "False": 1}


# column_schema / profile_frame ----------------------------------------------------------

@pytest.fixture
def mixed_frame():
    return pd.DataFrame({
        "age": [30, 40, 50, 60],
        "score": [0.5, np.nan, 0.7, 0.9],
        "city": ["Paris", "Lyon", "Paris", None],
        "active": [True, False, True, True],
    })


def test_column_schema_treats_booleans_and_strings_as_categorical(mixed_frame):
    kinds = {c["name"]: c["kind"] for c in column_schema(mixed_frame)}
    assert kinds == {"age": "numeric", "score": "numeric", "city": "categorical",
                     "active": "categorical"}


def test_profile_frame_profiles_each_column_by_its_kind(mixed_frame):
    profile = profile_frame(mixed_frame, bins=4)
    assert profile["rows"] == 4
    assert profile["bins"] == 4
    features = profile["features"]
    assert list(features) == ["age", "score", "city", "active"]
    assert features["age"]["kind"] == "numeric" and sum(features["age"]["counts"]) == 4
    assert features["score"]["missing_share"] == 0.25
    assert features["score"]["count"] == 3
    assert features["city"]["frequencies"] == {"Paris": 2, "Lyon": 1}
    assert features["city"]["missing_share"] == 0.25
    assert features["active"]["frequencies"] == {"True": 3, "False": 1}
    json.dumps(profile)  # stored as JSON


def test_profile_frame_reads_nullable_integer_columns():
    frame = pd.DataFrame({"n": pd.array([1, None, 3], dtype="Int64")})
    profile = profile_frame(frame)["features"]["n"]
    assert profile["kind"] == "numeric"
    assert profile["count"] == 2
    assert profile["missing_share"] == pytest.approx(1 / 3)


# detect_dataset_format / read_dataset ---------------------------------------------------

def test_parquet_magic_is_detected():
    assert detect_dataset_format(b"PAR1\x15\x04\x15", "data.bin") == PARQUET


def test_csv_text_is_detected():
    assert detect_dataset_format(b"a,b\n1,2\n", "data.csv") == CSV
    assert detect_dataset_format(b"a,b\n1,2\n") == CSV


def test_binary_junk_is_unsupported():
    with pytest.raises(DatasetError) as info:
        detect_dataset_format(b"\x89PNG\r\n\x1a\n\x00\x00", "image.csv")
    assert info.value.code == "unsupported_format"
    assert isinstance(info.value, PermanentError)


@pytest.mark.parametrize("filename", ["data.parquet", "DATA.PARQUET", "data.pq"])
def test_parquet_name_without_parquet_content_is_unsupported(filename):
    with pytest.raises(DatasetError) as info:
        detect_dataset_format(b"a,b\n1,2\n", filename)
    assert info.value.code == "unsupported_format"
    assert ".parquet" in info.value.detail


def test_read_csv_round_trip(tmp_path, mixed_frame):
    path = tmp_path / "d.csv"
    mixed_frame.to_csv(path, index=False)
    frame = read_dataset(path, CSV)
    assert list(frame.columns) == list(mixed_frame.columns)
    assert len(frame) == 4


def test_read_parquet_round_trip(tmp_path, mixed_frame):
    path = tmp_path / "d.parquet"
    mixed_frame.to_parquet(path)
    assert detect_dataset_format(path.read_bytes()[:8], path.name) == PARQUET
    pd.testing.assert_frame_equal(read_dataset(path, PARQUET), mixed_frame)


@pytest.mark.parametrize("content", [b"", b"\n\n", b"a,b,c\n"],
                         ids=["zero_bytes", "blank_lines", "header_only"])
def test_empty_csv_is_an_empty_dataset(tmp_path, content):
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        read_dataset(path, CSV)
    assert info.value.code == "empty_dataset"


def test_parquet_without_rows_is_an_empty_dataset(tmp_path):
    path = tmp_path / "empty.parquet"
    pd.DataFrame({"a": pd.Series([], dtype=float)}).to_parquet(path)
    with pytest.raises(DatasetError) as info:
        read_dataset(path, PARQUET)
    assert info.value.code == "empty_dataset"


@pytest.mark.parametrize("content", [b"PAR1garbagePAR1", b"PAR1" + bytes(range(256)) * 4],
                         ids=["tiny", "junk_body"])
def test_malformed_parquet_is_a_dataset_error(tmp_path, content):
    path = tmp_path / "bad.parquet"
    path.write_bytes(content)
    with pytest.raises(DatasetError) as info:
        read_dataset(path, PARQUET)
    assert info.value.code == "invalid_dataset"
    assert "parquet" in info.value.detail


def test_truncated_parquet_is_a_dataset_error(tmp_path, mixed_frame):
    path = tmp_path / "d.parquet"
    mixed_frame.to_parquet(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DatasetError):
        read_dataset(path, PARQUET)


def test_csv_with_inconsistent_rows_is_a_dataset_error(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    with pytest.raises(DatasetError) as info:
        read_dataset(path, CSV)
    assert info.value.code == "invalid_dataset"
