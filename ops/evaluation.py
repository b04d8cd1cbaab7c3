"""Measured metrics: a fitted model scored on held-out rows whose true labels are known.

No Django. A release gate that judges the metrics an uploader typed in judges nothing (any
number pasted passes). The portal keeps evaluation datasets (held out, with the target
column) and a worker measures every version on them with ``measure``; gates judge the
measured figures wherever they exist. scikit-learn computes every metric.

Classification: accuracy, balanced accuracy, precision, recall and F1 (of the last class
for two classes, macro-averaged above), ROC AUC and log loss from the probabilities.
Regression: RMSE, MAE, MSE and R².
"""

from __future__ import annotations

import math

import numpy as np

from ops.exceptions import DetailedError, PermanentError

# What ``measure`` can give per task: where an evaluation dataset exists, a gate on one of
# these judges the measured figure only (a declared one is no evidence).
MEASURABLE = {
    "classification": frozenset({"accuracy", "balanced_accuracy", "precision", "recall", "f1",
                                 "log_loss", "roc_auc"}),
    "regression": frozenset({"rmse", "mse", "mae", "r2"}),
}


class EvaluationError(DetailedError, PermanentError):
    """The model could not be measured on the rows; ``detail`` says why."""

    code = "evaluation_failed"


def labels_like(y, classes) -> np.ndarray:
    """The true labels in the type of the model's classes: a CSV read "1" where the model
    learned 1 (every answer would count as wrong)."""
    y = np.asarray(y)
    if not len(classes) or y.dtype.kind == np.asarray(classes).dtype.kind:
        return y
    kind = np.asarray(classes).dtype.kind
    try:
        if kind in "iu":
            as_float = y.astype(float)
            if np.all(as_float == np.round(as_float)):
                return as_float.astype(int)
        elif kind == "f":
            return y.astype(float)
        elif kind in "OUS":
            return np.asarray([str(v) for v in y], dtype=object)
    except (TypeError, ValueError):
        pass
    return y


def _finite(values: np.ndarray, what: str) -> np.ndarray:
    bad = int(np.size(values) - np.count_nonzero(np.isfinite(values)))
    if bad:
        raise EvaluationError(f"the model gave {bad} non-finite {what} on the evaluation rows",
                              code="nonfinite_prediction")
    return values


def _classification(model, X, y) -> dict:
    from sklearn import metrics as m

    classes = list(getattr(model, "classes_", []))
    y = labels_like(y, classes)
    predicted = np.asarray(model.predict(X))
    unknown = sorted({str(v) for v in np.unique(y)} - {str(c) for c in classes})
    if unknown:
        raise EvaluationError(
            f"the evaluation labels hold classes the model does not know: {', '.join(unknown[:5])}"
            f" (the model's classes: {', '.join(str(c) for c in classes[:10])})",
            code="unknown_classes")
    binary = len(classes) == 2
    average = {"average": "binary", "pos_label": classes[-1]} if binary else {"average": "macro"}
    result = {
        "accuracy": m.accuracy_score(y, predicted),
        "balanced_accuracy": m.balanced_accuracy_score(y, predicted),
        "precision": m.precision_score(y, predicted, zero_division=0, **average),
        "recall": m.recall_score(y, predicted, zero_division=0, **average),
        "f1": m.f1_score(y, predicted, zero_division=0, **average),
    }
    if hasattr(model, "predict_proba"):
        proba = _finite(np.asarray(model.predict_proba(X), dtype=float), "probabilities")
        result["log_loss"] = m.log_loss(y, proba, labels=classes)
        if len(np.unique(y)) > 1:
            result["roc_auc"] = (m.roc_auc_score(y == classes[-1], proba[:, -1]) if binary
                                 else m.roc_auc_score(y, proba, multi_class="ovr",
                                                      labels=classes))
    return result


def _regression(model, X, y) -> dict:
    from sklearn import metrics as m

    try:
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError) as e:
        raise EvaluationError("the evaluation target is not numeric; a regressor is measured "
                              "on numbers", code="target_not_numeric") from e
    predicted = _finite(np.asarray(model.predict(X), dtype=float).reshape(-1), "predictions")
    mse = m.mean_squared_error(y, predicted)
    return {"rmse": math.sqrt(mse), "mse": mse, "mae": m.mean_absolute_error(y, predicted),
            "r2": m.r2_score(y, predicted) if len(y) > 1 else None}


def measure(model, X, y, *, task: str) -> dict:
    """The model's metrics on ``X`` (a DataFrame in the model's input order) against the true
    labels ``y``; ``EvaluationError`` when it cannot be measured."""
    if len(X) == 0:
        raise EvaluationError("no evaluation row has every input and the label",
                              code="no_rows")
    try:
        figures = (_classification if task == "classification" else _regression)(model, X, y)
    except EvaluationError:
        raise
    except (ValueError, TypeError) as e:  # scikit-learn's own refusal, in its words
        raise EvaluationError(f"the model could not be scored on the evaluation rows: {e}") \
            from e
    return {name: float(value) for name, value in figures.items()
            if value is not None and math.isfinite(float(value))}
