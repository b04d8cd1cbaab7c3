"""An input schema read from the model itself, when the metadata gives none.

scikit-learn records what an estimator was fitted on: ``feature_names_in_`` (fitted on a
DataFrame) or only ``n_features_in_`` (an array; the features are then ``x0``, ``x1``…,
as scikit-learn names them). Every feature is declared ``double``: the estimator keeps no
types; give a schema in the metadata for others.

scikit-learn and skops are imported here only (``pip install modelgate-cli[train]``);
the rest of the CLI needs neither.
"""

from __future__ import annotations

from pathlib import Path

PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


class SchemaInferenceError(Exception):
    """The model could not be read, or says nothing about its inputs."""


def _load_skops(path: Path):
    try:
        import skops.io as sio
    except ImportError as e:
        raise SchemaInferenceError(
            "reading the input schema from the model needs skops and scikit-learn: "
            "pip install 'modelgate-cli[train]', or give input_schema in --metadata") from e
    # The pipeline's own artifact, just trained: its types are trusted to read it here.
    # The portal checks them again, against its own allow-list, when it validates it.
    try:
        return sio.load(path, trusted=sio.get_untrusted_types(file=path))
    except Exception as e:  # skops raises many kinds for a file it cannot read
        raise SchemaInferenceError(f"{path.name} could not be read with skops: {e}") from e


def _load_pickle(path: Path):
    try:
        import joblib
    except ImportError as e:
        raise SchemaInferenceError("reading a pickle needs joblib (pip install "
                                   "'modelgate-cli[train]')") from e
    try:
        return joblib.load(path)
    except Exception as e:  # unpickling raises whatever the pickled objects raise
        raise SchemaInferenceError(f"{path.name} could not be unpickled: {e}") from e


def load_model(path: Path, allow_pickle: bool = False):
    """The estimator in ``path`` (skops; pickle or joblib only with ``allow_pickle``:
    unpickling runs code the file names)."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise SchemaInferenceError(
                f"{path.name} is a pickle: reading it runs any code it holds. Give "
                "input_schema in --metadata, or pass --allow-pickle to read it")
        return _load_pickle(path)
    return _load_skops(path)


def schema_of(model) -> list[dict]:
    """``[{"name", "type"}]`` of what ``model`` was fitted on."""
    names = getattr(model, "feature_names_in_", None)
    if names is not None:
        return [{"name": str(name), "type": "double"} for name in names]
    count = getattr(model, "n_features_in_", None)
    if isinstance(count, int) and count > 0:
        return [{"name": f"x{i}", "type": "double"} for i in range(count)]
    raise SchemaInferenceError(
        f"{type(model).__name__} records neither feature_names_in_ nor n_features_in_ "
        "(not fitted, or not a scikit-learn estimator): give input_schema in --metadata")


def infer_input_schema(path: str | Path, allow_pickle: bool = False) -> list[dict]:
    return schema_of(load_model(Path(path), allow_pickle=allow_pickle))
