"""Bounded work on datasets (issue 18): ops.profile's limits, checked before pandas reads a
file where the format allows, what a profile keeps of long text, and ops.bounded, the
child process with a memory cap and a deadline that profiling runs in."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ops import profile
from ops.bounded import ChildDied, OutOfMemory, TimedOut, run_bounded
from ops.exceptions import DatasetError
from ops.profile import (
    CSV,
    MAX_LABEL_CHARS,
    PARQUET,
    DatasetLimits,
    categorical_profile,
    csv_header_columns,
    csv_longest_run,
    profile_file,
    profile_frame,
    read_dataset,
)


@pytest.fixture
def no_pandas_reading(monkeypatch):
    """Fail the test if pandas or pyarrow is asked to read the data itself."""
    def refuse(*args, **kwargs):
        raise AssertionError("the data was read although the header or footer said no")
    monkeypatch.setattr(pd, "read_csv", refuse)
    monkeypatch.setattr(pq, "read_table", refuse)


def write(path, text: str):
    path.write_text(text)
    return path


# csv_header_columns -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "columns"), [
    ("a,b,c\n1,2,3\n", 3),
    ("a\n1\n", 1),
    ('"a,b",c\n1,2\n', 2),  # a quoted comma is part of a name
    ('"a\nb",c,d\n1,2,3\n', 3),  # so is a quoted line break
    ('"say ""x, y""",b\n1,2\n', 2),  # doubled quotes inside quotes
    ("\n\n  \na,b\r\n1,2\r\n", 2),  # blank lines first, as pandas skips them; CRLF
    ("a,b,c", 3),  # no line break at all
    ("", 0),
])
def test_the_header_is_counted_as_pandas_reads_it(tmp_path, text, columns):
    path = write(tmp_path / "d.csv", text)
    assert csv_header_columns(path) == columns
    if columns and "\n1" in text:
        assert len(pd.read_csv(path).columns) == columns


def test_a_header_longer_than_a_chunk_is_counted_across_chunks(tmp_path):
    path = write(tmp_path / "d.csv", ",".join(f'"c{i},x"' for i in range(5000)) + "\n1\n")
    assert csv_header_columns(path, chunk_bytes=97) == 5000


# the wide CSV ---------------------------------------------------------------------------------

def test_a_million_columns_are_refused_from_the_header_before_pandas(tmp_path,
                                                                    no_pandas_reading):
    path = tmp_path / "wide.csv"
    path.write_text(",".join(f"c{i}" for i in range(1_000_000)) + "\n"
                    + ",".join("1" for _ in range(1_000_000)) + "\n")
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        read_dataset(path, CSV)
    assert time.monotonic() - started < 2
    assert info.value.code == "too_many_columns"
    assert info.value.detail == ("the dataset has 1,000,000 columns; at most 2,000 are allowed "
                                 "(MODELGATE_DATASET_MAX_COLUMNS)")


def test_csv_rows_past_the_limit_are_refused_after_reading_one_more(tmp_path):
    limits = DatasetLimits(max_rows=10)
    write(tmp_path / "ok.csv", "a,b\n" + "1,2\n" * 10)
    assert len(read_dataset(tmp_path / "ok.csv", CSV, limits)) == 10
    write(tmp_path / "long.csv", "a,b\n" + "1,2\n" * 50_000)
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "long.csv", CSV, limits)
    assert info.value.code == "too_many_rows"
    assert "more than 10 rows; at most 10 are allowed (MODELGATE_DATASET_MAX_ROWS)" \
        in info.value.detail


def test_csv_values_past_the_cell_limit_are_refused(tmp_path):
    limits = DatasetLimits(max_cells=100)
    write(tmp_path / "ok.csv", "a,b,c,d\n" + "1,2,3,4\n" * 25)
    assert len(read_dataset(tmp_path / "ok.csv", CSV, limits)) == 25
    write(tmp_path / "many.csv", "a,b,c,d\n" + "1,2,3,4\n" * 26)
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "many.csv", CSV, limits)
    assert info.value.code == "too_many_values"
    assert "MODELGATE_DATASET_MAX_CELLS" in info.value.detail


def test_a_long_value_is_refused_naming_its_column(tmp_path):
    # Under four bytes a character allowed, so pandas reads it and the length is counted
    write(tmp_path / "d.csv", "x,text\n1,short\n2," + "y" * 3_000 + "\n")
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "d.csv", CSV, DatasetLimits(max_cell_chars=1_000))
    assert info.value.code == "value_too_long"
    assert info.value.detail == ("a value in column 'text' is 3,000 characters long; at most "
                                 "1,000 characters are allowed "
                                 "(MODELGATE_DATASET_MAX_CELL_CHARS)")
    assert len(read_dataset(tmp_path / "d.csv", CSV)) == 2  # within the default 100,000


@pytest.mark.parametrize(("text", "longest"), [
    ("a,b\n1,22\n", 2), ("abc", 3), ("a,\n,", 1), ("a,b\nxxxxx\n", 5), ("", 0),
])
def test_the_longest_run_between_delimiters_is_found(tmp_path, text, longest):
    assert csv_longest_run(write(tmp_path / "d.csv", text)) == longest


def test_the_longest_run_spans_chunks(tmp_path):
    path = write(tmp_path / "d.csv", "a,b\n1," + "x" * 1000 + "\n2,3\n")
    assert csv_longest_run(path, chunk_bytes=64) == 1000


def test_a_hundred_megabyte_value_is_refused_before_pandas(tmp_path, no_pandas_reading):
    path = tmp_path / "cell.csv"
    with open(path, "w") as f:
        f.write("x,text\n1,")
        for _ in range(100):
            f.write("y" * (1 << 20))
        f.write("\n")
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        read_dataset(path, CSV)
    assert time.monotonic() - started < 5
    assert info.value.code == "value_too_long"
    assert info.value.detail == ("a value in the file is 104,857,600 bytes long; at most "
                                 "100,000 characters are allowed "
                                 "(MODELGATE_DATASET_MAX_CELL_CHARS)")


def test_a_file_larger_than_the_unpacked_limit_is_refused_unread(tmp_path, no_pandas_reading):
    write(tmp_path / "d.csv", "a\n" + "1\n" * 1000)
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "d.csv", CSV, DatasetLimits(max_unpacked_bytes=100))
    assert info.value.code == "dataset_too_large"


def test_a_column_name_longer_than_a_thousand_characters_is_refused(tmp_path):
    write(tmp_path / "d.csv", "a," + "n" * 2_000 + "\n1,2\n")
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "d.csv", CSV)
    assert info.value.code == "name_too_long"


# Parquet ----------------------------------------------------------------------------------

def parquet(path, table) -> None:
    pq.write_table(table, path, compression="zstd")


def test_a_parquet_bomb_is_refused_from_its_footer(tmp_path, no_pandas_reading):
    path = tmp_path / "bomb.parquet"
    parquet(path, pa.table({"a": np.zeros(50_000_000, dtype=np.int8)}))
    assert path.stat().st_size < 1_000_000  # a few hundred kilobytes
    started = time.monotonic()
    with pytest.raises(DatasetError) as info:
        read_dataset(path, PARQUET)
    assert time.monotonic() - started < 1
    assert info.value.code == "too_many_rows"
    assert info.value.detail == ("the dataset has 50,000,000 rows; at most 1,000,000 are "
                                 "allowed (MODELGATE_DATASET_MAX_ROWS)")


def test_parquet_columns_and_values_are_counted_from_the_footer(tmp_path, no_pandas_reading):
    path = tmp_path / "wide.parquet"
    parquet(path, pa.table({f"c{i}": [1.0, 2.0] for i in range(30)}))
    with pytest.raises(DatasetError) as info:
        read_dataset(path, PARQUET, DatasetLimits(max_columns=20))
    assert info.value.code == "too_many_columns"
    with pytest.raises(DatasetError) as info:
        read_dataset(path, PARQUET, DatasetLimits(max_cells=50))
    assert info.value.code == "too_many_values"


def repeated_string(length: int, rows: int) -> pa.DictionaryArray:
    """One value over many rows, built as a dictionary (without expanding it here)."""
    return pa.DictionaryArray.from_arrays(np.zeros(rows, dtype=np.int32),
                                          pa.array(["x" * length]))


@pytest.mark.parametrize("arrow_schema", [False, True],
                         ids=["plain_string_column", "stored_as_dictionary"])
def test_a_string_repeated_over_many_rows_is_refused_by_its_expanded_size(tmp_path,
                                                                          arrow_schema):
    """A kilobyte-long value over a million rows is a few kilobytes of dictionary-encoded
    Parquet and a gigabyte in memory; the size is computed on the dictionary. Without the
    Arrow schema in the file the column reads as plain strings (what any writer makes of
    a repeated value); with it, as a dictionary (how pandas stores a categorical)."""
    path = tmp_path / "strings.parquet"
    pq.write_table(pa.table({"s": repeated_string(1_000, 1_000_000)}), path,
                   compression="zstd", store_schema=arrow_schema)
    assert path.stat().st_size < 1_000_000
    with pytest.raises(DatasetError) as info:
        read_dataset(path, PARQUET, DatasetLimits(max_unpacked_bytes=100 * 1024 * 1024))
    assert info.value.code == "dataset_too_large"
    assert "expands to 1,008,000,000 bytes" in info.value.detail


def test_a_long_parquet_value_is_refused_before_it_is_expanded(tmp_path):
    path = tmp_path / "long.parquet"
    parquet(path, pa.table({"x": [1, 2], "text": ["short", "é" * 3_000]}))
    with pytest.raises(DatasetError) as info:
        read_dataset(path, PARQUET, DatasetLimits(max_cell_chars=2_000))
    assert info.value.code == "value_too_long"
    assert "column 'text' is 3,000 characters long" in info.value.detail  # characters


def test_parquet_within_the_limits_reads_as_pandas_would(tmp_path):
    frame = pd.DataFrame({"x": [1.5, 2.5, None], "s": ["a", None, "c"], "b": [True, False, True],
                          "n": pd.array([1, None, 3], dtype="Int64"),
                          "cat": pd.Categorical(["u", "v", "u"])})
    frame.to_parquet(tmp_path / "d.parquet")
    pd.testing.assert_frame_equal(read_dataset(tmp_path / "d.parquet", PARQUET),
                                  pd.read_parquet(tmp_path / "d.parquet"))


def test_nested_parquet_columns_are_refused(tmp_path):
    parquet(tmp_path / "n.parquet", pa.table({"l": [[1, 2], [3]]}))
    with pytest.raises(DatasetError) as info:
        read_dataset(tmp_path / "n.parquet", PARQUET)
    assert info.value.code == "nested_column"


# what a profile keeps -----------------------------------------------------------------------

def test_long_labels_are_cut_and_those_cut_alike_add_up():
    long_a, long_b = "a" * 10_000 + "1", "a" * 10_000 + "2"
    result = categorical_profile([long_a, long_b, long_b, "short"])
    cut = "a" * MAX_LABEL_CHARS + "…"
    assert result["frequencies"] == {cut: 3, "short": 1}
    assert result["distinct"] == 3


def test_many_text_columns_keep_fewer_categories_each():
    rng = np.random.default_rng(0)
    narrow = pd.DataFrame({"t": [f"v{i}" for i in rng.integers(0, 500, 2_000)]})
    assert len(profile_frame(narrow)["features"]["t"]["frequencies"]) == 51  # 50 + other
    wide = pd.DataFrame({f"t{j}": [f"v{i}" for i in rng.integers(0, 500, 300)]
                         for j in range(1_000)})
    kept = {len(p["frequencies"]) for p in profile_frame(wide)["features"].values()}
    assert kept == {10 + 1}  # 2,000,000 label characters / (200 x 1,000 columns), + other
    labels = sum(len(k) for p in profile_frame(wide)["features"].values()
                 for k in p["frequencies"])
    assert labels < profile.PROFILE_LABEL_CHARS


# ops.bounded ------------------------------------------------------------------------------

def test_a_bounded_call_returns_its_value_or_raises_its_error():
    assert run_bounded(sum, [1, 2, 3]) == 6
    with pytest.raises(DatasetError) as info:
        run_bounded(read_dataset, "/nonexistent.csv", CSV)
    assert isinstance(info.value, DatasetError)


def test_memory_past_the_cap_ends_the_child_not_the_caller():
    def allocate():
        return int(np.ones(64 * 1024 * 1024, dtype=np.int64).sum())  # 512 MiB

    with pytest.raises(OutOfMemory) as info:
        run_bounded(allocate, memory_bytes=128 * 1024 * 1024)
    assert "needed more than 128 MiB of memory" in info.value.detail
    assert run_bounded(allocate, memory_bytes=1024 * 1024 * 1024) == 64 * 1024 * 1024


def test_a_child_past_its_deadline_is_killed():
    started = time.monotonic()
    with pytest.raises(TimedOut) as info:
        run_bounded(time.sleep, 30, seconds=0.3)
    assert time.monotonic() - started < 5
    assert info.value.detail == "took longer than 0.3 s"


def test_a_child_that_dies_is_reported():
    with pytest.raises(ChildDied) as info:
        run_bounded(lambda: os.kill(os.getpid(), signal.SIGTERM))
    assert "SIGTERM" in info.value.detail


def test_an_exception_of_the_caller_kills_the_child(tmp_path):
    """A Celery soft time limit arrives as an exception in the waiting parent: the reader
    must not outlive it."""
    marker = tmp_path / "pid"

    def record_and_wait():
        marker.write_text(str(os.getpid()))
        time.sleep(60)

    class Stop(Exception):
        pass

    def alarm(signum, frame):
        raise Stop

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    try:
        with pytest.raises(Stop):
            run_bounded(record_and_wait, seconds=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    child = int(marker.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)


def test_profile_file_profiles_in_a_child_and_names_the_setting_it_passed(tmp_path):
    path = tmp_path / "d.csv"
    pd.DataFrame({"x": np.arange(200_000, dtype=float),
                  "t": ["v"] * 200_000}).to_csv(path, index=False)
    result = profile_file(path, CSV, target="x", memory_bytes=1024 * 1024 * 1024, seconds=60)
    assert result["rows"] == 200_000 and [c["name"] for c in result["columns"]] == ["x", "t"]
    assert set(result["profile"]["features"]) == {"x", "t"}
    with pytest.raises(DatasetError) as info:
        profile_file(path, CSV, target="y")
    assert info.value.detail == "the target column 'y' is not in the file"
    # The cap counts memory the child maps beyond what its parent had mapped: freed heap
    # the parent still holds can be reused uncounted. A long test session holds hundreds
    # of MB of it, so the cap is shown from a fresh interpreter, as a worker child would be.
    code = ("import sys; from pathlib import Path; from ops.profile import CSV, profile_file\n"
            "from ops.exceptions import DatasetError\n"
            "try:\n    profile_file(Path(sys.argv[1]), CSV, memory_bytes=4 * 1024 * 1024)\n"
            "except DatasetError as e:\n    print(e.code); print(e.detail)\n")
    answer = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                            text=True, timeout=120, cwd=Path(__file__).parents[2])
    code_seen, _, detail = answer.stdout.partition("\n")
    assert code_seen == "dataset_too_large", answer.stdout + answer.stderr
    assert "(MODELGATE_DATASET_MEMORY_MB)" in detail
    with pytest.raises(DatasetError) as info:
        profile_file(path, CSV, seconds=0.001)
    assert info.value.code == "dataset_too_slow"
    assert info.value.detail == ("reading and profiling the dataset took longer than 0.001 s "
                                 "(MODELGATE_DATASET_PROFILE_SECONDS)")


def test_parquet_from_bytes_round_trip_is_unchanged_by_the_dictionary_read(tmp_path):
    table = pa.table({"s": ["a", "b", "a"], "x": [1, 2, 3]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    (tmp_path / "d.parquet").write_bytes(buffer.getvalue())
    frame = read_dataset(tmp_path / "d.parquet", PARQUET)
    assert frame["s"].tolist() == ["a", "b", "a"] and str(frame["s"].dtype) != "category"
