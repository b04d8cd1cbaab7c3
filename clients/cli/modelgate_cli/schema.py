"""An input schema read from the model itself, when the metadata gives none.

scikit-learn records what an estimator was fitted on: ``feature_names_in_`` (fitted on a
DataFrame) or only ``n_features_in_`` (an array; the features are then ``x0``, ``x1``…,
as scikit-learn names them). Every feature is declared ``double``: the estimator keeps no
types; give a schema in the metadata for others.

scikit-learn and skops are imported here only (``pip install modelgate-cli[train]``);
the rest of the CLI needs neither.

Models in their frameworks' own formats carry their inputs too, read here without the
framework where the file is text: an XGBoost JSON model (``feature_names``, else
``num_feature``) and a LightGBM text model (``feature_names=``; LightGBM's made-up
``Column_0``... become ``x0``...). An XGBoost UBJSON or ONNX file needs xgboost or onnx
installed here; otherwise give ``input_schema`` in the metadata.
"""

from __future__ import annotations

import json
import re
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


def _names_schema(names: list[str], count: int) -> list[dict]:
    if names and not all(re.fullmatch(r"(Column_|f)\d+", n) for n in names):
        return [{"name": n, "type": "double"} for n in names]
    if count > 0:
        return [{"name": f"x{i}", "type": "double"} for i in range(count)]
    raise SchemaInferenceError("the model names no features and does not say how many it "
                               "takes: give input_schema in --metadata")


def native_schema(path: Path) -> list[dict] | None:
    """The input schema of an XGBoost, LightGBM or ONNX file, or None when ``path`` is not
    one (told from its first bytes, as the portal tells them)."""
    with open(path, "rb") as handle:
        head = handle.read(64)
    if re.match(rb'\s*\{\s*"(learner|version)"', head):
        learner = json.loads(path.read_bytes())["learner"]
        return _names_schema(learner.get("feature_names") or [],
                             int(learner["learner_model_param"]["num_feature"]))
    if head.startswith((b"tree\nversion=v", b"tree\r\nversion=v")):
        header = dict(line.split("=", 1) for line in path.read_text().split("Tree=")[0]
                      .splitlines() if "=" in line)
        return _names_schema(header.get("feature_names", "").split(),
                             int(header.get("max_feature_idx", "-1")) + 1)
    if head.startswith(b"{") or (len(head) > 2 and head[0] == 0x08 and head[1] < 31):
        return _framework_schema(path, head)
    return None


def _framework_schema(path: Path, head: bytes) -> list[dict]:
    """UBJSON (XGBoost) or ONNX: their libraries read them."""
    try:
        if head.startswith(b"{"):
            import xgboost

            booster = xgboost.Booster(model_file=str(path))
            return _names_schema(booster.feature_names or [], booster.num_features())
        import onnx

        inputs = onnx.load(str(path), load_external_data=False).graph.input
    except ImportError as e:
        raise SchemaInferenceError(f"reading the input schema of {path.name} needs "
                                   f"{e.name}: give input_schema in --metadata") from e
    if len(inputs) > 1:
        return [{"name": i.name, "type": "double"} for i in inputs]
    dims = inputs[0].type.tensor_type.shape.dim
    return _names_schema([], dims[-1].dim_value if len(dims) == 2 else 0)


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
    native = native_schema(Path(path))
    if native is not None:
        return native
    return schema_of(load_model(Path(path), allow_pickle=allow_pickle))
