"""The release diff: metric directions, nDCG by hand, rank shifts, disagreement."""

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.tree import DecisionTreeClassifier

from explainability.diff import importance_changes, metric_changes, ndcg, release_diff


def test_metric_changes_know_which_way_is_better():
    rows = metric_changes({"roc_auc": 0.95, "rmse": 3.0, "custom": 1.0, "note": "x"},
                          {"roc_auc": 0.97, "rmse": 4.0, "custom": 0.5, "note": "y"})
    verdicts = {r["metric"]: r["verdict"] for r in rows}
    assert verdicts == {"custom": "unknown", "rmse": "better", "roc_auc": "worse"}
    assert next(r for r in rows if r["metric"] == "roc_auc")["delta"] == pytest.approx(-0.02)


def test_metric_changes_cover_shared_numeric_metrics_only():
    rows = metric_changes({"auc": 0.95, "f1": 0.9, "new": 1.0}, {"auc": 0.97, "f1": 0.9})
    assert [(r["metric"], round(r["delta"], 4), r["verdict"]) for r in rows] == [
        ("auc", -0.02, "worse"), ("f1", 0.0, "same")]
    assert metric_changes({"auc": 1.0}, {}) == []


def test_ndcg_by_hand():
    relevance = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert ndcg(["a", "b", "c"], relevance) == pytest.approx(1.0)
    reversed_ = (1 / math.log2(2) + 2 / math.log2(3) + 3 / math.log2(4)) / \
        (3 / math.log2(2) + 2 / math.log2(3) + 1 / math.log2(4))
    assert ndcg(["c", "b", "a"], relevance) == pytest.approx(reversed_)


def test_importance_changes_report_rank_shifts_and_drift():
    champion = [{"feature": "a", "mean_abs": 3.0}, {"feature": "b", "mean_abs": 2.0},
                {"feature": "c", "mean_abs": 1.0}]
    candidate = [{"feature": "c", "mean_abs": 2.5}, {"feature": "a", "mean_abs": 2.0},
                 {"feature": "d", "mean_abs": 0.5}]
    changes = importance_changes(candidate, champion)
    by_name = {f["feature"]: f for f in changes["features"]}
    assert by_name["c"]["rank_shift"] == 2 and by_name["c"]["change"] == pytest.approx(1.5)
    assert by_name["a"]["rank_shift"] == -1
    assert by_name["d"]["champion_rank"] is None and by_name["d"]["rank_shift"] is None
    assert 0 < changes["attribution_drift"] < 1
    same = importance_changes(champion, champion)
    assert same["attribution_drift"] == pytest.approx(0.0)


def test_classifiers_disagreement_and_the_rows_that_differ_most():
    data = load_breast_cancer(as_frame=True)
    X, y = data.data.iloc[:, :5], data.target
    a = LogisticRegression(max_iter=5000).fit(X, y)
    b = DecisionTreeClassifier(max_depth=2, random_state=0).fit(X, y)
    diff = release_diff(a, b, X, task="classification")
    expected = float(np.mean(a.predict(X) != b.predict(X)))
    assert diff["disagreement_rate"] == pytest.approx(expected) and expected > 0
    gaps = [r["gap"] for r in diff["top_disagreements"]]
    assert gaps == sorted(gaps, reverse=True) and len(gaps) == 5
    assert list(diff["top_disagreements"][0]["inputs"]) == list(X.columns)[:5]
    assert release_diff(a, a, X, task="classification")["disagreement_rate"] == 0.0
    named = release_diff(a, b, X, task="classification", labels=y,
                         class_labels={"0": "malignant", "1": "benign"})
    assert named["score"] == "probability of “benign”"
    row = named["top_disagreements"][0]
    assert {row["candidate_label"], row["champion_label"], row["label"]} <= {"benign",
                                                                             "malignant"}


def test_regressors_get_the_distribution_of_differences():
    data = load_diabetes(as_frame=True)
    X, y = data.data, data.target
    a, b = Ridge(alpha=0.1).fit(X, y), Ridge(alpha=10).fit(X, y)
    diff = release_diff(a, b, X, task="regression")
    differences = a.predict(X) - b.predict(X)
    assert diff["differences"]["p50"] == pytest.approx(np.median(differences))
    assert sum(diff["differences"]["histogram"]) == len(X)
    assert 0 < diff["disagreement_rate"] <= 1
    empty = release_diff(a, b, pd.DataFrame(columns=X.columns), task="regression")
    assert empty["disagreement_rate"] is None
