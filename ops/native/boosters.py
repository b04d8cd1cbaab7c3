"""XGBoost (JSON, UBJSON) and LightGBM (text) models: loaded as data, never as code.

Both are predicted on one thread per call: the model server runs several prediction
threads over micro-batches, and a library's own thread pool on top of them only contends
for the same cores.
"""

from __future__ import annotations

import json
import re

import numpy as np

from ops.exceptions import ArtifactError
from ops.native.base import (
    CLASSIFICATION,
    REGRESSION,
    NativeModel,
    made_up_names,
    package_version,
    softmax,
    two_columns,
)

# XGBoost objectives that classify, and how their probabilities come out of the booster.
XGBOOST_CLASSIFIERS = {
    "binary:logistic": "probability",
    "binary:logitraw": "sigmoid",
    "multi:softprob": "probability",
    "multi:softmax": "softmax",
}
# Objectives that give a class but no probability: nothing to serve probabilities from.
NO_PROBABILITIES = ("binary:hinge",)
LIGHTGBM_CLASSIFIERS = ("binary", "multiclass", "multiclassova", "cross_entropy", "xentropy")


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return (text[0] if text else type(error).__name__)[:300]


class XGBoostModel(NativeModel):
    native_format = "xgboost"
    shap_method = "tree"

    def __init__(self, booster, *, objective: str, num_class: int):
        import xgboost

        names = booster.feature_names
        kind = CLASSIFICATION if objective in XGBOOST_CLASSIFIERS else REGRESSION
        classes = list(range(max(num_class, 2))) if kind == CLASSIFICATION else None
        super().__init__(kind=kind, estimator=f"xgboost.Booster ({objective})",
                         framework=f"xgboost {package_version('xgboost', xgboost)}",
                         n_features=int(booster.num_features()),
                         names=None if made_up_names(names) else list(names), classes=classes)
        booster.set_param({"nthread": 1})
        self.booster = self.shap_model = booster
        self.objective = objective
        best = booster.attr("best_iteration")
        # Early stopping keeps the trees after the best round; scikit-learn's wrapper
        # predicts with the best round only, and so do we.
        self._rounds = (0, int(best) + 1) if best is not None else (0, 0)
        if kind == CLASSIFICATION:
            self.decision_function = self._margin

    def _raw(self, X, predict_type: str) -> np.ndarray:
        return np.asarray(self.booster.inplace_predict(
            self.matrix(X), iteration_range=self._rounds, predict_type=predict_type,
            validate_features=False))

    def _margin(self, X) -> np.ndarray:
        return self._raw(X, "margin").astype(np.float64)

    def _predict_proba(self, X) -> np.ndarray:
        how = XGBOOST_CLASSIFIERS[self.objective]
        if how == "softmax":
            return softmax(self._margin(X))
        raw = self._margin(X) if how == "sigmoid" else self._raw(X, "value")
        if how == "sigmoid":
            raw = 1.0 / (1.0 + np.exp(-raw))
        return two_columns(raw) if raw.ndim == 1 else raw.astype(np.float64)

    def _predict_values(self, X) -> np.ndarray:
        return self._raw(X, "value").astype(np.float64).reshape(-1)


def load_xgboost(data: bytes) -> XGBoostModel:
    """An XGBoost Booster from its JSON or UBJSON bytes (XGBoost tells them apart)."""
    import xgboost

    try:
        booster = xgboost.Booster(model_file=bytearray(data))
        learner = json.loads(booster.save_config())["learner"]
        objective = learner["objective"]["name"]
        params = learner["learner_model_param"]
    except Exception as e:  # XGBoostError, or a config without the keys
        raise ArtifactError(f"the XGBoost model cannot be read: {_first_line(e)}",
                            code="corrupt_artifact") from e
    if objective in NO_PROBABILITIES:
        raise ArtifactError(f"the XGBoost objective {objective} gives classes but no "
                            "probabilities; train with binary:logistic", code="not_a_model")
    if int(params.get("num_target", 1) or 1) > 1:
        raise ArtifactError("the XGBoost model predicts several targets; the portal serves "
                            "one value (or one class) per row", code="not_a_model")
    if any(t == "c" for t in booster.feature_types or []):
        raise ArtifactError("the XGBoost model has categorical features; save it with "
                            "numeric features (codes) to serve it", code="not_a_model")
    return XGBoostModel(booster, objective=objective,
                        num_class=int(params.get("num_class", 0) or 0))


class LightGBMModel(NativeModel):
    native_format = "lightgbm"
    shap_method = "tree"

    def __init__(self, booster, *, objective: str, num_class: int):
        import lightgbm

        names = booster.feature_name()
        kind = CLASSIFICATION if objective in LIGHTGBM_CLASSIFIERS else REGRESSION
        classes = list(range(max(num_class, 2))) if kind == CLASSIFICATION else None
        super().__init__(kind=kind, estimator=f"lightgbm.Booster ({objective})",
                         framework=f"lightgbm {package_version('lightgbm', lightgbm)}",
                         n_features=int(booster.num_feature()),
                         names=None if made_up_names(names) else list(names), classes=classes)
        self.booster = self.shap_model = booster
        self.objective = objective
        if kind == CLASSIFICATION:
            self.decision_function = self._margin

    def feature_name_of(self, name: str) -> str:
        # LightGBM stores "mean radius" as "mean_radius" (it warns when it trains so).
        return re.sub(r"\s", "_", name)

    def _raw(self, X, raw_score: bool = False) -> np.ndarray:
        return np.asarray(self.booster.predict(self.matrix(X), raw_score=raw_score,
                                               num_threads=1), dtype=np.float64)

    def _margin(self, X) -> np.ndarray:
        return self._raw(X, raw_score=True)

    def _predict_proba(self, X) -> np.ndarray:
        raw = self._raw(X)
        return two_columns(raw) if raw.ndim == 1 else raw

    def _predict_values(self, X) -> np.ndarray:
        return self._raw(X).reshape(-1)


def _lightgbm_header(text: str) -> dict[str, str]:
    """The ``key=value`` lines before the first tree (objective, num_class, ...)."""
    header = {}
    for line in text[:65536].splitlines():
        if line.startswith("Tree="):
            break
        key, sep, value = line.partition("=")
        if sep:
            header[key.strip()] = value.strip()
    return header


def load_lightgbm(data: bytes) -> LightGBMModel:
    """A LightGBM Booster from its text model (``Booster.save_model``)."""
    import lightgbm

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArtifactError("the LightGBM model is not UTF-8 text", code="corrupt_artifact") from e
    header = _lightgbm_header(text)
    objective = (header.get("objective") or "").split(" ")[0]
    if not objective or objective == "custom":
        raise ArtifactError("the LightGBM model names no built-in objective, so what its "
                            "output means is unknown", code="not_a_model")
    try:
        booster = lightgbm.Booster(model_str=text)
    except Exception as e:  # LightGBMError on a malformed model
        raise ArtifactError(f"the LightGBM model cannot be read: {_first_line(e)}",
                            code="corrupt_artifact") from e
    pandas_categorical = text.rstrip().rpartition("pandas_categorical:")[2].strip()
    if pandas_categorical not in ("", "null", "[]"):
        raise ArtifactError("the LightGBM model was trained on pandas categories; save it "
                            "with numeric features (codes) to serve it", code="not_a_model")
    return LightGBMModel(booster, objective=objective,
                         num_class=int(header.get("num_class", "1") or 1))
