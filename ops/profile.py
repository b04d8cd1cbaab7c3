"""Baseline profiles of reference datasets, the yardstick drift is measured against.

A numeric feature is summarised by quantile bin edges (so each baseline bin holds about the
same share of rows, which keeps PSI stable) with the counts in each bin, plus moments and
the share of missing values; a categorical feature by its value frequencies.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ops.exceptions import DatasetError
from ops.redact import without_paths

DEFAULT_BINS = 10
MAX_CATEGORIES = 50
# What a profile keeps of text: each label cut at MAX_LABEL_CHARS, and fewer categories per
# column when there are many text columns, so that labels total about PROFILE_LABEL_CHARS
# (a profile is sent with every view of its dataset). Column names are refused past
# MAX_NAME_CHARS: they key the profile and must match the model's inputs, so are not cut.
MAX_LABEL_CHARS = 200
PROFILE_LABEL_CHARS = 2_000_000
MIN_CATEGORIES = 5
MAX_NAME_CHARS = 1_000
OTHER = "__other__"
CSV = "csv"
PARQUET = "parquet"


def detect_dataset_format(head: bytes, filename: str = "") -> str:
    """Parquet files start with ``PAR1``; anything else must look like CSV text."""
    if head.startswith(b"PAR1"):
        return PARQUET
    if b"\x00" in head:
        raise DatasetError("the file is neither CSV text nor Parquet", code="unsupported_format")
    if filename.lower().endswith((".parquet", ".pq")):
        raise DatasetError("the file is named .parquet but is not a Parquet file",
                           code="unsupported_format")
    return CSV


@dataclass(frozen=True)
class DatasetLimits:
    """What a dataset may hold; each is checked as early as the format allows.

    CSV: the header's columns and the longest run between delimiters are counted on the
    bytes before pandas sees the file, and pandas reads at most the rows the row and cell
    limits allow (one more says "too many"); lengths are checked again on what it read. Parquet:
    rows, columns and uncompressed size come from the footer before any data is read;
    string columns are read dictionary-encoded, so their expanded size and longest value
    are known before they are expanded. ``setting`` names say which operator setting
    raises each limit (the portal reads them from the environment)."""

    max_rows: int = 1_000_000
    max_columns: int = 2_000
    max_cells: int = 20_000_000
    max_cell_chars: int = 100_000
    max_unpacked_bytes: int = 512 * 1024 * 1024

    setting = {"max_rows": "MODELGATE_DATASET_MAX_ROWS",
               "max_columns": "MODELGATE_DATASET_MAX_COLUMNS",
               "max_cells": "MODELGATE_DATASET_MAX_CELLS",
               "max_cell_chars": "MODELGATE_DATASET_MAX_CELL_CHARS",
               "max_unpacked_bytes": "MODELGATE_DATASET_MAX_UNPACKED_BYTES"}

    def refuse(self, what: str, limit: str, code: str, unit: str = "") -> DatasetError:
        allowed = f"{getattr(self, limit):,}" + (f" {unit}" if unit else "")
        return DatasetError(f"{what}; at most {allowed} are allowed ({self.setting[limit]})",
                            code=code)

    def check_shape(self, rows: int | None, columns: int) -> None:
        if columns > self.max_columns:
            raise self.refuse(f"the dataset has {columns:,} columns", "max_columns",
                              "too_many_columns")
        if rows is None:
            return
        if rows > self.max_rows:
            raise self.refuse(f"the dataset has {rows:,} rows", "max_rows", "too_many_rows")
        if rows * columns > self.max_cells:
            raise self.refuse(f"the dataset has {rows * columns:,} values ({rows:,} rows of "
                              f"{columns:,} columns)", "max_cells", "too_many_values")

    def check_bytes(self, size: int, what: str) -> None:
        if size > self.max_unpacked_bytes:
            raise self.refuse(f"the dataset {what} {size:,} bytes", "max_unpacked_bytes",
                              "dataset_too_large", "bytes")

    def check_cell(self, column, chars: int) -> None:
        if chars > self.max_cell_chars:
            raise self.refuse(f"a value in column {_short(column)} is {chars:,} characters "
                              "long", "max_cell_chars", "value_too_long", "characters")


DEFAULT_LIMITS = DatasetLimits()


def _short(name, limit: int = 80) -> str:
    text = str(name)
    return repr(text if len(text) <= limit else text[:limit] + "…")


def csv_header_columns(path: Path, chunk_bytes: int = 1 << 20) -> int:
    """Columns in a CSV file's header, counted on the bytes in chunks (constant memory,
    whatever the length of the line): commas outside double quotes, up to the first line
    break outside quotes. Leading blank lines are skipped, as pandas skips them."""
    fields, inside, started = 1, False, False
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            if not started:
                chunk = chunk.lstrip(b" \t\r\n")
                if not chunk:
                    continue
                started = True
            for i, piece in enumerate(chunk.split(b'"')):
                if i:
                    inside = not inside
                if inside:
                    continue
                end = piece.find(b"\n")
                if end >= 0:
                    return fields + piece.count(b",", 0, end)
                fields += piece.count(b",")
    return fields if started else 0


def csv_longest_run(path: Path, chunk_bytes: int = 1 << 20) -> int:
    """The most bytes between two commas or line breaks in the file (numpy over 1 MiB
    chunks: a pass costs a few milliseconds a megabyte). Each value is at most that long,
    unless quoted with commas or line breaks inside, which only shortens the runs."""
    longest = run = 0  # run: bytes since the last comma or line break
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            data = np.frombuffer(chunk, dtype=np.uint8)
            marks = np.flatnonzero((data == ord(",")) | (data == ord("\n")))
            if not len(marks):
                run += len(chunk)
                longest = max(longest, run)
                continue
            longest = max(longest, run + int(marks[0]))
            if len(marks) > 1:
                longest = max(longest, int(np.diff(marks).max()) - 1)
            run = len(chunk) - int(marks[-1]) - 1
            longest = max(longest, run)
    return longest


def _read_csv(path: Path, limits: DatasetLimits):
    import pandas as pd

    limits.check_bytes(Path(path).stat().st_size, "file holds")
    columns = csv_header_columns(path)
    limits.check_shape(None, columns)
    # A value of more than four bytes a character allowed (UTF-8's most, and two quotes)
    # is too long whatever it holds: refused before pandas copies it a few times over.
    longest = csv_longest_run(path)
    if longest > 4 * limits.max_cell_chars + 2:
        raise limits.refuse(f"a value in the file is {longest:,} bytes long",
                            "max_cell_chars", "value_too_long", "characters")
    # Read no more rows than the limits allow, plus one to tell "too many".
    allowed = min(limits.max_rows, limits.max_cells // max(columns, 1))
    frame = pd.read_csv(path, nrows=allowed + 1)
    if len(frame) > allowed:
        what = (f"more than {allowed:,} rows" if allowed == limits.max_rows else
                f"more than {allowed:,} rows of {columns:,} columns")
        limit = "max_rows" if allowed == limits.max_rows else "max_cells"
        raise limits.refuse(f"the dataset has {what}", limit,
                            "too_many_rows" if limit == "max_rows" else "too_many_values")
    return frame


_STRINGS = ("string", "large_string", "string_view", "binary", "large_binary",
            "binary_view")


def _read_parquet(path: Path, limits: DatasetLimits):
    """Parquet, refused from its footer when it is too big, and with its string columns
    read dictionary-encoded: a few kilobytes of Parquet can repeat one long value over a
    million rows, which only the expanded size (computed on the dictionary) reveals."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    meta = pq.read_metadata(path)
    limits.check_shape(meta.num_rows, meta.num_columns)
    limits.check_bytes(sum(meta.row_group(i).total_byte_size
                           for i in range(meta.num_row_groups)), "expands to")
    schema = pq.read_schema(path)
    nested = [f.name for f in schema if pa.types.is_nested(f.type)]
    if nested:
        raise DatasetError(f"column {_short(nested[0])} is nested ({schema.field(nested[0]).type})"
                           "; only flat columns are read", code="nested_column")
    strings = [f.name for f in schema if str(f.type) in _STRINGS]
    table = pq.read_table(path, use_pandas_metadata=True, read_dictionary=strings)
    expanded, decoded = 0, []
    for i, field_ in enumerate(table.schema):
        kind = field_.type
        if not (pa.types.is_dictionary(kind) and str(kind.value_type) in _STRINGS):
            expanded += table.column(i).nbytes
            continue
        # Text held as a dictionary (read so, or stored so, as pandas stores categoricals):
        # its longest value and expanded size, computed on the dictionary and the indices.
        text = pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)
        for chunk in table.column(i).chunks:
            lengths = (pc.utf8_length if text else pc.binary_length)(chunk.dictionary)
            if len(lengths):
                limits.check_cell(field_.name, pc.max(lengths).as_py() or 0)
            sizes = pc.binary_length(chunk.dictionary)
            expanded += (pc.sum(pc.take(sizes, chunk.indices)).as_py() or 0) + 8 * len(chunk)
        limits.check_bytes(expanded, "expands to")
        if field_.name in strings:
            decoded.append(i)
    limits.check_bytes(expanded, "expands to")
    for i in decoded:  # bounded now: back to the plain strings pandas would have read
        column = table.column(i)
        table = table.set_column(i, table.schema.field(i).name,
                                 column.cast(column.type.value_type))
    try:
        from pandas.io._util import arrow_table_to_pandas
    except ImportError:  # another pandas: its plain conversion
        return table.to_pandas()
    return arrow_table_to_pandas(table)


def _check_values(frame, limits: DatasetLimits) -> None:
    """Columns and rows (again, on what was read) and the longest text value."""
    import pandas as pd

    limits.check_shape(len(frame), len(frame.columns))
    for name in frame.columns:
        if len(str(name)) > MAX_NAME_CHARS:
            raise DatasetError(f"a column name is {len(str(name)):,} characters long; at "
                               f"most {MAX_NAME_CHARS:,} are allowed", code="name_too_long")
        series = frame[name]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            continue
        try:
            longest = series.str.len().max()  # NaN for missing and non-text values
        except (AttributeError, TypeError):  # not text at all (dates, say)
            continue
        if pd.notna(longest):
            limits.check_cell(name, int(longest))


def read_dataset(path: Path, fmt: str, limits: DatasetLimits = DEFAULT_LIMITS):
    """Read a dataset into a DataFrame within ``limits``, turning reader errors into
    ``DatasetError`` (a refused limit is one too, with its own ``code``)."""
    import pandas as pd

    try:
        frame = _read_parquet(path, limits) if fmt == PARQUET else _read_csv(path, limits)
    except DatasetError:
        raise
    except pd.errors.EmptyDataError as e:  # an empty (or blank-lines-only) CSV file
        raise DatasetError("the dataset has no rows or no columns", code="empty_dataset") from e
    except MemoryError:
        raise
    except Exception as e:
        if (isinstance(e, OSError) and e.errno == errno.ENOMEM) \
                or "out of memory" in str(e):  # the C parser's ways of saying MemoryError
            raise MemoryError(str(e)) from e
        raise DatasetError(f"the {fmt} file cannot be read: {without_paths(str(e), path)}") from e
    if frame.empty or len(frame.columns) == 0:
        raise DatasetError("the dataset has no rows or no columns", code="empty_dataset")
    _check_values(frame, limits)
    return frame


def column_schema(frame) -> list[dict]:
    """Name, dtype and kind (numeric or categorical) of each column."""
    import pandas as pd

    schema = []
    for name in frame.columns:
        series = frame[name]
        numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
        schema.append({"name": str(name), "dtype": str(series.dtype),
                       "kind": "numeric" if numeric else "categorical"})
    return schema


def numeric_edges(present: np.ndarray, bins: int = DEFAULT_BINS) -> np.ndarray:
    """Bin edges for a column: quantiles, or one bin per value for a discrete column.

    A column with no more distinct values than bins (a flag, a count, a rating) gets an
    edge half-way between neighbouring values, so each value has its own bin; quantile
    edges would otherwise merge them (a 0/1 column would collapse into one bin and drift in
    its share of ones could never be seen).
    """
    distinct = np.unique(present)
    if len(distinct) == 1:  # a constant column: one bin around the value
        return np.array([distinct[0] - 0.5, distinct[0] + 0.5])
    if len(distinct) <= bins:
        middles = (distinct[:-1] + distinct[1:]) / 2
        first = distinct[0] - (middles[0] - distinct[0])
        last = distinct[-1] + (distinct[-1] - middles[-1])
        return np.concatenate([[first], middles, [last]])
    return np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)))


def numeric_profile(values: np.ndarray, bins: int = DEFAULT_BINS) -> dict:
    """Bin edges, counts per bin, moments and missing share of one column.

    NaN and infinite values count as missing: they cannot be binned or averaged.
    """
    values = np.asarray(values, dtype=float)
    total = len(values)
    present = values[np.isfinite(values)]
    missing_share = float(1 - len(present) / total) if total else 0.0
    if len(present) == 0:
        return {"kind": "numeric", "count": 0, "missing_share": missing_share, "edges": [],
                "counts": [], "mean": None, "std": None, "min": None, "max": None}
    edges = numeric_edges(present, bins)
    # Interior edges decide the bins; the outer bins are open so live values beyond the
    # baseline range still land in a bin (the model server uses the same rule).
    counts = np.bincount(np.searchsorted(edges[1:-1], present, side="right"),
                         minlength=len(edges) - 1)
    return {
        "kind": "numeric",
        "count": int(len(present)),
        "missing_share": missing_share,
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "mean": float(present.mean()),
        "std": float(present.std(ddof=1)) if len(present) > 1 else 0.0,
        "min": float(present.min()),
        "max": float(present.max()),
    }


def label(value, limit: int = MAX_LABEL_CHARS) -> str:
    """A category as a profile keeps it: its text, cut at ``limit`` characters (with …)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def categorical_profile(values, max_categories: int = MAX_CATEGORIES) -> dict:
    """Frequencies of the most common values; the rest are pooled under ``__other__``.
    Labels longer than ``MAX_LABEL_CHARS`` are cut (two cut to the same text add up)."""
    import pandas as pd

    series = pd.Series(values)
    total = len(series)
    missing = int(series.isna().sum())
    frequencies = series.dropna().astype(str).value_counts()
    top = frequencies.iloc[:max_categories]
    result: dict[str, int] = {}
    for k, v in top.items():
        key = label(k)
        result[key] = result.get(key, 0) + int(v)
    rest = int(frequencies.iloc[max_categories:].sum())
    if rest:
        result[OTHER] = rest
    return {
        "kind": "categorical",
        "count": int(total - missing),
        "missing_share": float(missing / total) if total else 0.0,
        "frequencies": result,
        "distinct": int(len(frequencies)),
    }


def profile_frame(frame, bins: int = DEFAULT_BINS) -> dict:
    """Profile every column of a DataFrame: ``{"rows": n, "features": {name: profile}}``.

    Text columns keep at most ``MAX_CATEGORIES`` categories each, fewer (down to
    ``MIN_CATEGORIES``) when there are so many text columns that their labels would pass
    ``PROFILE_LABEL_CHARS`` in all."""
    features = {}
    schema = column_schema(frame)
    text_columns = sum(1 for c in schema if c["kind"] != "numeric")
    categories = max(MIN_CATEGORIES, min(
        MAX_CATEGORIES, PROFILE_LABEL_CHARS // (MAX_LABEL_CHARS * max(text_columns, 1))))
    for column in schema:
        series = frame[column["name"]]
        if column["kind"] == "numeric":
            features[column["name"]] = numeric_profile(series.to_numpy(dtype=float, na_value=np.nan),
                                                       bins)
        else:
            features[column["name"]] = categorical_profile(series, categories)
    return {"rows": int(len(frame)), "bins": bins, "features": features}


def _profile_file(path: Path, fmt: str, target: str, limits: DatasetLimits) -> dict:
    frame = read_dataset(path, fmt, limits)
    if target and target not in frame.columns:
        raise DatasetError(f"the target column {_short(target)} is not in the file")
    return {"rows": int(len(frame)), "columns": column_schema(frame),
            "profile": profile_frame(frame)}


def profile_file(path: Path, fmt: str, *, target: str = "",
                 limits: DatasetLimits = DEFAULT_LIMITS, memory_bytes: int | None = None,
                 seconds: float | None = None) -> dict:
    """Read and profile an uploaded dataset in a child process (``ops.bounded``) that may
    add at most ``memory_bytes`` of memory and must finish within ``seconds``:
    ``{"rows", "columns", "profile"}``, or ``DatasetError`` saying which bound it passed.

    The limits refuse most oversized files before pandas reads them; the child is for
    what no header or footer tells (a file that is costly to parse within its limits),
    so the worker that asked never grows and the dataset always ends ready or failed."""
    from ops.bounded import BoundExceeded, OutOfMemory, TimedOut, run_bounded

    try:
        return run_bounded(_profile_file, Path(path), fmt, target, limits,
                           memory_bytes=memory_bytes, seconds=seconds)
    except OutOfMemory as e:
        raise DatasetError(f"reading the dataset {e.detail} (MODELGATE_DATASET_MEMORY_MB)",
                           code="dataset_too_large") from e
    except TimedOut as e:
        raise DatasetError(f"reading and profiling the dataset {e.detail} "
                           "(MODELGATE_DATASET_PROFILE_SECONDS)", code="dataset_too_slow") from e
    except BoundExceeded as e:
        raise DatasetError(f"the dataset reader {e.detail}", code="dataset_reader_died") from e
