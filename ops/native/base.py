"""The scikit-learn surface every native adapter shows the portal."""

from __future__ import annotations

import re
from importlib.metadata import PackageNotFoundError, version

import numpy as np

from ops.exceptions import ArtifactError

CLASSIFICATION = "classification"
REGRESSION = "regression"

# Names a framework makes up when it was given none (LightGBM's Column_0, XGBoost's f0):
# they are no feature names, and a schema with real names must not be refused for them.
_MADE_UP_NAME = re.compile(r"\A(Column_|f)\d+\Z")


def made_up_names(names) -> bool:
    return not names or all(_MADE_UP_NAME.match(str(n)) for n in names)


def package_version(distribution: str, module) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return getattr(module, "__version__", "")


class NativeModel:
    """A loaded native model as the portal uses an estimator.

    ``predict_proba``, ``classes_`` (and ``decision_function`` where there is a score) exist
    only on classifiers, so code asking ``hasattr(model, "predict_proba")`` gets the same
    answer as for scikit-learn. ``estimator_name`` and ``framework`` are what the version
    page shows; ``shap_method`` is the exact SHAP explainer it allows and ``shap_model``
    what that explainer is given.
    """

    native_format = ""
    shap_method = "permutation"

    def __init__(self, *, kind: str, estimator: str, framework: str, n_features: int | None,
                 names: list[str] | None, classes: list | None):
        self.kind = kind  # CLASSIFICATION or REGRESSION: what the model itself computes
        self.estimator_name = estimator
        self.framework = framework
        self.n_features_in_ = n_features
        self.feature_names_in_ = np.asarray(names, dtype=object) if names else None
        self._names = list(names) if names else None
        self.shap_model = None
        if kind == CLASSIFICATION:
            self.classes_ = np.asarray(classes)
            self.predict_proba = self._predict_proba

    def feature_name_of(self, name: str) -> str:
        """A schema's feature name as the framework stores it (LightGBM: no whitespace)."""
        return name

    def check_task(self, task: str) -> None:
        """Refuse a model registered for the other task (a classifier as a regressor)."""
        if task != self.kind:
            raise ArtifactError(
                f"the model is a {self.kind} model ({self.estimator_name}) but it is "
                f"registered for {task}", code="task_mismatch")

    def matrix(self, X, dtype=np.float64) -> np.ndarray:
        """Rows as a C-ordered matrix in the model's feature order: a DataFrame's columns
        are taken by the model's names when it has them, by position otherwise."""
        if hasattr(X, "columns"):
            columns = [self.feature_name_of(str(c)) for c in X.columns]
            if self._names is not None and columns != self._names:
                X = X.set_axis(columns, axis=1)[self._names]
            X = X.to_numpy(dtype=dtype)
        return np.ascontiguousarray(X, dtype=dtype)

    def predict(self, X) -> np.ndarray:
        if self.kind == CLASSIFICATION:
            return self.classes_[self._predict_proba(X).argmax(axis=1)]
        return self._predict_values(X)

    def _predict_proba(self, X) -> np.ndarray:
        raise NotImplementedError

    def _predict_values(self, X) -> np.ndarray:
        raise NotImplementedError


def two_columns(positive: np.ndarray) -> np.ndarray:
    """A binary classifier's probability of class 1 as (rows, 2) probabilities."""
    positive = np.asarray(positive, dtype=np.float64).reshape(-1)
    return np.column_stack([1.0 - positive, positive])


def softmax(margin: np.ndarray) -> np.ndarray:
    shifted = np.exp(margin - margin.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)
