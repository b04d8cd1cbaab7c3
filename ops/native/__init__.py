"""Models saved in their frameworks' own safe formats: XGBoost, LightGBM and ONNX.

None of these formats can run code when loaded: an XGBoost JSON or UBJSON file and a
LightGBM text model are parsed as data by their libraries, and an ONNX graph is run by
onnxruntime with no custom-operator library registered and no external data read (a graph
that points at files outside itself is refused: ``onnx_graph``). So they are loaded in the
worker and the model server like skops files, never in the web process, which only tells
the format from the first bytes (``sniff``, no parsing).

Each loaded model is wrapped in an adapter with the scikit-learn surface the rest of the
portal uses (``predict``, ``predict_proba``, ``classes_``, ``n_features_in_``,
``feature_names_in_`` where the model carries names): validation, evaluation, release
diffs, SHAP and the model server treat it as they treat an estimator. ``load_native`` is
the one "check and load this native file" (the MLflow import calls it for MLflow's
xgboost, lightgbm and onnx flavours).
"""

from __future__ import annotations

import re
from pathlib import Path

from ops.exceptions import ArtifactError

XGBOOST = "xgboost"
LIGHTGBM = "lightgbm"
ONNX = "onnx"
NATIVE_FORMATS = (XGBOOST, LIGHTGBM, ONNX)
NAMES = {XGBOOST: "XGBoost", LIGHTGBM: "LightGBM", ONNX: "ONNX"}

# Bytes read to tell a format (the web process reads no more than this).
HEAD_BYTES = 64

# XGBoost's JSON document starts with its "learner" object (or "version", which it also
# writes at the top level); UBJSON writes the same object as "{" and a length-prefixed key.
_XGBOOST_JSON = re.compile(rb'\A\s*\{\s*"(learner|version)"\s*:')
_XGBOOST_UBJSON = re.compile(rb"\A\{(L.{7}|l.{3}|I.|i|U)\x07(learner|version)", re.S)
# An ONNX ModelProto opens with field 1 (ir_version, a small varint), then another field
# of the message (producer_name, ..., graph, opset_import).
_ONNX_NEXT_TAGS = {0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72}
# A file's suffix in the store, by format (the download's too).
SUFFIXES = {XGBOOST: "json", LIGHTGBM: "txt", ONNX: "onnx"}


def sniff(head: bytes) -> str | None:
    """The native format whose signature ``head`` (the file's first bytes) carries, or None.

    Looks only at bytes: nothing is parsed or loaded. A pickle renamed ``model.json`` starts
    with a pickle's bytes and is never taken for XGBoost here.
    """
    if _XGBOOST_JSON.match(head) or _XGBOOST_UBJSON.match(head):
        return XGBOOST
    if head.startswith((b"tree\nversion=v", b"tree\r\nversion=v")):
        return LIGHTGBM
    if len(head) >= 3 and head[0] == 0x08 and 1 <= head[1] <= 30 and head[2] in _ONNX_NEXT_TAGS:
        return ONNX
    return None


def ubjson_suffix(head: bytes) -> str:
    """``ubj`` for XGBoost's binary JSON, ``json`` for its text (what the file is saved as)."""
    return "json" if _XGBOOST_JSON.match(head) else "ubj"


def load_native(source: Path | bytes, fmt: str | None = None):
    """Check and load a native model file (a path or its bytes): the adapter, or
    ``ArtifactError`` saying why not (``not_a_model``, ``corrupt_artifact``,
    ``unsafe_artifact`` for an ONNX graph reading external files).

    ``fmt`` is checked against the bytes when given; the bytes decide otherwise.
    """
    data = Path(source).read_bytes() if isinstance(source, Path | str) else bytes(source)
    found = sniff(data[:HEAD_BYTES])
    if found is None or (fmt is not None and found != fmt):
        expected = f"{_article(NAMES[fmt])} model" if fmt else \
            "an XGBoost, LightGBM or ONNX model"
        raise ArtifactError(f"the file is not {expected}"
                            + (f" (its bytes are {NAMES[found]}'s)" if found else ""),
                            code="not_a_model")
    try:
        if found == XGBOOST:
            from ops.native.boosters import load_xgboost

            return load_xgboost(data)
        if found == LIGHTGBM:
            from ops.native.boosters import load_lightgbm

            return load_lightgbm(data)
        from ops.native.onnx_graph import load_onnx

        return load_onnx(data)
    except ImportError as e:  # an image built without the runtime: say so, not a traceback
        raise ArtifactError(f"{NAMES[found]} models need the {e.name or 'runtime'} package, "
                            "which this process does not have (the portal's and the model "
                            "server's images install it)", code="runtime_missing") from e


def _article(name: str) -> str:
    return f"an {name}" if name[0] in "AEIOUX" else f"a {name}"
