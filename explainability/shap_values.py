"""SHAP explanations of a fitted scikit-learn model, with the fastest exact method it allows.

No Django. ``explain(model, X, background)`` picks:

- **tree**: ``shap.TreeExplainer`` for tree ensembles (random forests, gradient boosting,
  decision trees, extra trees) — exact, milliseconds per hundred rows;
- **linear**: ``shap.LinearExplainer`` for linear models, also as the last step of a
  ``Pipeline`` whose earlier steps map features one to one (scalers, imputers): the final
  estimator is explained on the transformed features and the values are reported under the
  original feature names;
- **permutation**: ``shap.PermutationExplainer`` on the model's output with a k-means
  summary of the background (at most ``BACKGROUND`` points) for anything else.

Native models (``ops.native``) say which they allow: XGBoost and LightGBM boosters the tree
explainer (on the booster, in log-odds for classifiers), ONNX graphs the permutation one.

What is explained, per task: a classifier's **positive class** (the last class) — in
log-odds for linear and boosted models (``decision_function``), in probability for forests
and the model-agnostic explainer (``predict_proba``); a regressor's prediction. With more
than two classes, linear and boosted models are explained on their score for the last class
(``decision_function[:, -1]``, ``"score of class 2"``): a softmax input, exact but no
log-odds, so never turned into a probability (decision 26). Every result
is checked for additivity (base value + sum of a row's SHAP values = the model output for
that row, within tolerance); a failed check raises ``ExplanationError`` so wrong numbers are
never shown.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np

BACKGROUND = 50
MAX_ROWS = 1000
TREE_TYPES = ("RandomForest", "ExtraTrees", "GradientBoosting", "HistGradientBoosting",
              "DecisionTree", "XGB", "LGBM", "CatBoost")
ONE_TO_ONE = ("StandardScaler", "MinMaxScaler", "MaxAbsScaler", "RobustScaler",
              "SimpleImputer", "FunctionTransformer", "Normalizer", "PowerTransformer",
              "QuantileTransformer")


class ExplanationError(Exception):
    """The model cannot be explained (or the check of the result failed); ``detail`` says
    why in words a person can act on."""

    def __init__(self, detail: str, code: str = "explanation_failed"):
        super().__init__(detail)
        self.detail = detail
        self.code = code


@dataclass
class Explanation:
    method: str  # tree | linear | permutation
    output: str  # what the values add up to, e.g. "log-odds of class 1"
    feature_names: list[str]
    base_value: float
    values: list[list[float]]  # rows x features, for the sample
    rows: list[list[float]]  # the sample's inputs, same order
    outputs: list[float]  # the model output each row's values add up to
    importance: list[dict] = field(default_factory=list)  # sorted, most important first
    sample_size: int = 0
    background_size: int = 0
    seconds: float = 0.0
    max_additivity_error: float = 0.0
    target_class: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def _name(obj) -> str:
    return type(obj).__name__


def _final(model):
    """(preprocessing or None, final estimator)."""
    steps = getattr(model, "steps", None)
    if steps:
        if len(steps) == 1:
            return None, steps[0][1]
        return model[:-1], steps[-1][1]
    return None, model


def choose_method(model) -> str:
    native = getattr(model, "shap_method", None)  # XGBoost/LightGBM: tree; ONNX: permutation
    if isinstance(native, str):
        return native
    pre, final = _final(model)
    name = _name(final)
    if pre is None and any(name.startswith(t) for t in TREE_TYPES):
        return "tree"
    is_linear = hasattr(final, "coef_") and hasattr(final, "intercept_") and \
        np.ndim(final.coef_) <= 2
    if is_linear and (pre is None or all(_name(step) in ONE_TO_ONE
                                         for _, step in pre.steps)):
        return "linear"
    return "permutation"


def _classifier(model) -> bool:
    return hasattr(model, "classes_") and hasattr(model, "predict_proba")


def _positive_column(values: np.ndarray) -> np.ndarray:
    """SHAP returns (rows, features, outputs) for multi-output models: keep the last."""
    values = np.asarray(values, dtype=float)
    return values[..., -1] if values.ndim == 3 else values


def _scalar(base, index: int = -1) -> float:
    base = np.asarray(base, dtype=float).ravel()
    return float(base[index if base.size > 1 else 0])


def explain(model, X, background=None, *, feature_names: list[str] | None = None,
            max_rows: int = MAX_ROWS, tolerance: float = 1e-3,
            seed: int = 0) -> Explanation:
    """SHAP values of ``model`` on (at most ``max_rows`` of) ``X``; ``background`` (default
    ``X``) is what "absent" means for the linear and model-agnostic explainers."""
    import pandas as pd

    started = time.perf_counter()
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(
        np.asarray(X, dtype=float), columns=feature_names)
    names = [str(c) for c in (feature_names or frame.columns)]
    frame.columns = names
    if len(frame) == 0:
        raise ExplanationError("no rows to explain", code="no_rows")
    rng = np.random.default_rng(seed)
    if len(frame) > max_rows:
        frame = frame.iloc[np.sort(rng.choice(len(frame), max_rows, replace=False))]
    back = frame if background is None else (
        background if isinstance(background, pd.DataFrame)
        else pd.DataFrame(np.asarray(background, dtype=float), columns=names))
    back = back[names]
    method = choose_method(model)
    classifier = _classifier(model)
    try:
        import shap

        if method == "tree":
            values, base, outputs, output, bsize = _tree(shap, model, frame, classifier)
        elif method == "linear":
            values, base, outputs, output, bsize = _linear(shap, model, frame, back, classifier,
                                                           rng)
        else:
            values, base, outputs, output, bsize = _permutation(shap, model, frame, back,
                                                                classifier, rng)
    except ExplanationError:
        raise
    except Exception as e:  # SHAP's own errors are many and untyped
        raise ExplanationError(f"SHAP could not explain {_name(_final(model)[1])} with the "
                               f"{method} method: {type(e).__name__}: {e}") from e
    values = np.asarray(values, dtype=float)
    if values.shape != frame.shape:
        raise ExplanationError(f"SHAP returned values of shape {values.shape} for "
                               f"{frame.shape} inputs")
    error = float(np.max(np.abs(base + values.sum(axis=1) - outputs))) if len(values) else 0.0
    scale = max(1.0, float(np.max(np.abs(outputs))) if len(outputs) else 1.0)
    if not np.isfinite(error) or error > tolerance * scale:
        raise ExplanationError(
            f"the SHAP values do not add up to the model's output (off by {error:.3g}); "
            "the explanation is not shown", code="not_additive")
    magnitude = np.abs(values)
    order = np.argsort(-magnitude.mean(axis=0))
    importance = []
    for j in order:
        column = frame.iloc[:, j].to_numpy(dtype=float)
        corr = np.corrcoef(column, values[:, j])[0, 1] if np.std(column) > 0 and \
            np.std(values[:, j]) > 0 else 0.0
        importance.append({"feature": names[j], "mean_abs": float(magnitude[:, j].mean()),
                           "std_abs": float(magnitude[:, j].std()),
                           "direction": float(corr) if np.isfinite(corr) else 0.0})
    return Explanation(
        method=method, output=output, feature_names=names, base_value=float(base),
        values=values.tolist(), rows=frame.to_numpy(dtype=float).tolist(),
        outputs=[float(v) for v in outputs], importance=importance,
        sample_size=len(frame), background_size=bsize,
        seconds=time.perf_counter() - started, max_additivity_error=error,
        target_class=str(model.classes_[-1]) if classifier else None)


def _tree(shap, model, frame, classifier):
    # A native booster is explained itself, on a matrix in its feature order (the adapter
    # around it is what predicts).
    booster = getattr(model, "shap_model", None)
    explainer = shap.TreeExplainer(booster if booster is not None else model)
    raw = explainer.shap_values(frame if booster is None else model.matrix(frame),
                                check_additivity=False)
    if isinstance(raw, list):  # older SHAP: one array per class
        raw = np.stack(raw, axis=-1)
    values = _positive_column(raw)
    base = _scalar(explainer.expected_value)
    # What the tree explainer adds up to: the raw margin for boosting (log-odds), the
    # probability for forests; find out by comparing with both.
    if classifier:
        proba = model.predict_proba(frame)[:, -1]
        margin = np.asarray(model.decision_function(frame), dtype=float) \
            if hasattr(model, "decision_function") else None
        scale = "log-odds" if margin is None or margin.ndim == 1 else "score"
        if margin is not None and margin.ndim == 2:  # multiclass: the last class's score
            margin = margin[:, -1]
        if margin is not None and np.allclose(base + values.sum(axis=1), margin, atol=1e-3):
            return values, base, margin, f"{scale} of class {model.classes_[-1]}", 0
        return values, base, proba, f"probability of class {model.classes_[-1]}", 0
    return values, base, model.predict(frame), "predicted value", 0


def _linear(shap, model, frame, back, classifier, rng):
    pre, final = _final(model)
    transformed = pre.transform(frame) if pre is not None else frame.to_numpy(dtype=float)
    background = pre.transform(back) if pre is not None else back.to_numpy(dtype=float)
    background = np.asarray(background, dtype=float)
    if len(background) > 1000:
        background = background[rng.choice(len(background), 1000, replace=False)]
    explainer = shap.LinearExplainer(final, shap.maskers.Independent(background,
                                                                     max_samples=1000))
    values = _positive_column(explainer.shap_values(np.asarray(transformed, dtype=float)))
    base = _scalar(explainer.expected_value)
    if classifier:
        outputs = np.asarray(model.decision_function(frame), dtype=float)
        scale = "log-odds"
        if outputs.ndim == 2:  # one score per class, through a softmax: no log-odds
            outputs, scale = outputs[:, -1], "score"
        return values, base, outputs, f"{scale} of class {model.classes_[-1]}", len(background)
    return values, base, model.predict(frame), "predicted value", len(background)


def _permutation(shap, model, frame, back, classifier, rng):
    import pandas as pd

    names = list(frame.columns)
    points = min(BACKGROUND, len(back))
    summary = shap.kmeans(back.to_numpy(dtype=float), points) if len(back) > points \
        else back.to_numpy(dtype=float)
    # shap.kmeans gives a DenseData (points in .data); a numpy array's own .data is a buffer
    data = summary if isinstance(summary, np.ndarray) else summary.data
    if classifier:
        def f(x):
            return model.predict_proba(pd.DataFrame(x, columns=names))[:, -1]
        output = f"probability of class {model.classes_[-1]}"
    else:
        def f(x):
            return model.predict(pd.DataFrame(x, columns=names))
        output = "predicted value"
    explainer = shap.PermutationExplainer(f, shap.maskers.Independent(data, max_samples=len(data)),
                                          seed=int(rng.integers(1 << 31)))
    result = explainer(frame.to_numpy(dtype=float), max_evals=max(2 * len(names) + 1, 100),
                       silent=True)
    base = float(np.mean(np.asarray(result.base_values, dtype=float)))
    return result.values, base, f(frame.to_numpy(dtype=float)), output, len(data)


def plain_summary(explanation: dict, task: str, labels: dict | None = None) -> str:
    """A sentence or two for someone who is not a data scientist; ``labels`` name the
    model's classes (``{"0": "malignant", "1": "benign"}``)."""
    from explainability.words import label_of, quoted

    importance = explanation.get("importance") or []
    if not importance:
        return ""
    top = [i["feature"] for i in importance[:3]]
    listed = top[0] if len(top) == 1 else ", ".join(top[:-1]) + f" and {top[-1]}"
    target = quoted(label_of(explanation.get("target_class"), labels))
    what = ("the prediction" if task != "classification" else
            f"the model's score for {target}"
            if str(explanation.get("output", "")).startswith("score") else
            f"the predicted probability of {target}")
    first = importance[0]
    if first["direction"] > 0.3:
        trend = f"higher {first['feature']} raises {what}"
    elif first["direction"] < -0.3:
        trend = f"higher {first['feature']} lowers {what}"
    else:
        trend = f"{first['feature']} moves {what} in both directions"
    share = first["mean_abs"] / (sum(i["mean_abs"] for i in importance) or 1)
    alone = f"{first['feature']} alone accounts for {share:.0%} of the typical effect."
    return (f"The {len(top)} inputs that move this model most are {listed}; {trend}. "
            + alone[:1].upper() + alone[1:])
