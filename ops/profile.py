"""Baseline profiles of reference datasets, the yardstick drift is measured against.

A numeric feature is summarised by quantile bin edges (so each baseline bin holds about the
same share of rows, which keeps PSI stable) with the counts in each bin, plus moments and
the share of missing values; a categorical feature by its value frequencies.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ops.exceptions import DatasetError

DEFAULT_BINS = 10
MAX_CATEGORIES = 50
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


def read_dataset(path: Path, fmt: str):
    """Read a dataset into a DataFrame, turning reader errors into ``DatasetError``."""
    import pandas as pd

    try:
        if fmt == PARQUET:
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path)
    except pd.errors.EmptyDataError as e:  # an empty (or blank-lines-only) CSV file
        raise DatasetError("the dataset has no rows or no columns", code="empty_dataset") from e
    except Exception as e:
        raise DatasetError(f"the {fmt} file cannot be read: {e}") from e
    if frame.empty or len(frame.columns) == 0:
        raise DatasetError("the dataset has no rows or no columns", code="empty_dataset")
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


def categorical_profile(values, max_categories: int = MAX_CATEGORIES) -> dict:
    """Frequencies of the most common values; the rest are pooled under ``__other__``."""
    import pandas as pd

    series = pd.Series(values)
    total = len(series)
    missing = int(series.isna().sum())
    frequencies = series.dropna().astype(str).value_counts()
    top = frequencies.iloc[:max_categories]
    result = {str(k): int(v) for k, v in top.items()}
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
    """Profile every column of a DataFrame: ``{"rows": n, "features": {name: profile}}``."""
    features = {}
    for column in column_schema(frame):
        series = frame[column["name"]]
        if column["kind"] == "numeric":
            features[column["name"]] = numeric_profile(series.to_numpy(dtype=float, na_value=np.nan),
                                                       bins)
        else:
            features[column["name"]] = categorical_profile(series)
    return {"rows": int(len(frame)), "bins": bins, "features": features}
