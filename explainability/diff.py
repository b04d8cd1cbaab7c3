"""What changes when a candidate replaces the champion: the release diff an approver reads.

No Django. ``release_diff`` compares two fitted models on the same reference sample:
metric deltas with their direction (better or worse), how often and where their predictions
disagree (for regressors, the distribution of the differences), and how the SHAP
importance ranking moved per feature, summed up as an attribution-drift score
``1 - nDCG`` of the candidate's ranking judged by the champion's importances (0: same
ranking; towards 1: the model now leans on different inputs).
"""

from __future__ import annotations

import math

import numpy as np

HIGHER_IS_BETTER = {"accuracy", "roc_auc", "auc", "f1", "precision", "recall", "r2",
                    "average_precision", "balanced_accuracy", "explained_variance"}
LOWER_IS_BETTER = {"rmse", "mse", "mae", "log_loss", "logloss", "brier", "mape",
                   "median_absolute_error", "error_rate"}
TOP_ROWS = 5
SHOWN_INPUTS = 6


def metric_changes(candidate: dict, champion: dict) -> list[dict]:
    rows = []
    for name in sorted(set(candidate or {}) & set(champion or {})):
        a, b = candidate[name], champion[name]
        if not all(isinstance(v, int | float) and math.isfinite(v) for v in (a, b)):
            continue
        delta = a - b
        key = name.lower()
        if key in HIGHER_IS_BETTER:
            verdict = "better" if delta > 0 else "worse" if delta < 0 else "same"
        elif key in LOWER_IS_BETTER:
            verdict = "better" if delta < 0 else "worse" if delta > 0 else "same"
        else:
            verdict = "unknown"
        rows.append({"metric": name, "candidate": a, "champion": b, "delta": delta,
                     "verdict": verdict})
    return rows


def ndcg(ranking: list[str], relevance: dict[str, float]) -> float:
    """nDCG of ``ranking`` (most important first) with graded ``relevance``
    (scikit-learn's ``ndcg_score``; features missing on one side count as 0)."""
    from sklearn.metrics import ndcg_score

    names = sorted(set(ranking) | set(relevance))
    if len(names) < 2:
        return 1.0
    score = {name: len(ranking) - i for i, name in enumerate(ranking)}
    truth = [[max(relevance.get(n, 0.0), 0.0) for n in names]]
    if not any(truth[0]):
        return 1.0
    return float(ndcg_score(truth, [[score.get(n, 0) for n in names]]))


def importance_changes(candidate: list[dict], champion: list[dict]) -> dict:
    """Rank shift and magnitude change per feature, and the attribution-drift score."""
    if not candidate or not champion:
        return {"features": [], "ndcg": None, "attribution_drift": None}
    old = {row["feature"]: (rank, row["mean_abs"]) for rank, row in enumerate(champion, 1)}
    features = []
    for rank, row in enumerate(candidate, 1):
        before = old.get(row["feature"])
        features.append({
            "feature": row["feature"], "rank": rank, "champion_rank": before[0] if before else None,
            "rank_shift": (before[0] - rank) if before else None,
            "importance": row["mean_abs"], "champion_importance": before[1] if before else None,
            "change": (row["mean_abs"] - before[1]) if before else None})
    score = ndcg([row["feature"] for row in candidate],
                 {row["feature"]: row["mean_abs"] for row in champion})
    return {"features": features, "ndcg": score, "attribution_drift": 1.0 - score}


def _scores(model, X, classifier: bool) -> np.ndarray:
    if classifier:
        return np.asarray(model.predict_proba(X), dtype=float)[:, -1]
    return np.asarray(model.predict(X), dtype=float)


def _label(value):
    """A true label as JSON holds it (numpy scalars are not)."""
    value = value.item() if hasattr(value, "item") else value
    return value if isinstance(value, int | float | str | bool) else str(value)


def release_diff(candidate_model, champion_model, X, *, task: str,
                 candidate_metrics: dict | None = None, champion_metrics: dict | None = None,
                 candidate_importance: list[dict] | None = None,
                 champion_importance: list[dict] | None = None, labels=None,
                 class_labels: dict | None = None) -> dict:
    """The diff of the two models on the rows of ``X`` (a DataFrame in schema order); with
    ``labels`` (the true answers of held-out rows), each row shown says who got it right.
    ``class_labels`` name the classes (``{"0": "malignant", "1": "benign"}``): predicted
    and true labels are shown by those names."""
    from explainability.words import label_of, quoted

    def named(value):  # the value itself where no name is declared for it (JSON: 0, not "0")
        value = _label(value)
        name = label_of(value, class_labels)
        return value if name == str(value) else name

    classifier = task == "classification"
    names = [str(c) for c in X.columns]
    result = {"rows": len(X), "task": task,
              "metrics": metric_changes(candidate_metrics or {}, champion_metrics or {}),
              "importance": importance_changes(candidate_importance or [],
                                               champion_importance or [])}
    if len(X) == 0:
        return {**result, "disagreement_rate": None, "top_disagreements": []}
    new, old = _scores(candidate_model, X, classifier), _scores(champion_model, X, classifier)
    if classifier:
        new_label = np.asarray(candidate_model.predict(X))
        old_label = np.asarray(champion_model.predict(X))
        disagree = new_label != old_label
        result["disagreement_rate"] = float(disagree.mean())
        result["score"] = "probability of " + quoted(
            label_of(_label(candidate_model.classes_[-1]), class_labels))
    else:
        difference = new - old
        scale = float(np.std(old)) or 1.0
        disagree = np.abs(difference) > 0.1 * scale  # "disagree": apart by a tenth of a sd
        result["disagreement_rate"] = float(disagree.mean())
        result["score"] = "predicted value"
        result["differences"] = {
            "mean": float(difference.mean()), "std": float(difference.std()),
            **{f"p{q}": float(np.percentile(difference, q)) for q in (5, 25, 50, 75, 95)},
            "histogram": np.histogram(difference, bins=20)[0].tolist(),
            "edges": np.histogram(difference, bins=20)[1].tolist()}
    gap = np.abs(new - old)
    top = np.argsort(-gap)[:TOP_ROWS]
    # The inputs shown with each row: those the candidate leans on most.
    shown = [row["feature"] for row in (candidate_importance or []) if row["feature"] in names]
    shown = (shown or names)[:SHOWN_INPUTS]
    truth = None if labels is None else np.asarray(labels)
    result["top_disagreements"] = [
        {"row": int(i), "candidate": float(new[i]), "champion": float(old[i]),
         "gap": float(gap[i]), "inputs": {n: float(X.iloc[i][n]) for n in shown},
         **({} if truth is None else {"label": named(truth[i])}),
         **({"candidate_label": named(new_label[i]), "champion_label": named(old_label[i])}
            if classifier else {})}
        for i in top if gap[i] > 0]
    return result
