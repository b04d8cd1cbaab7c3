"""ops.evaluation: a model scored on held-out rows against their true labels."""

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression

from ops.evaluation import MEASURABLE, EvaluationError, labels_like, measure
from ops.gates import Evidence, evaluate


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(400, 3)), columns=["a", "b", "c"])
    y = (X["a"] + 0.3 * rng.normal(size=400) > 0).astype(int)
    return X, y


def test_a_classifier_is_measured_with_the_usual_metrics(rows):
    X, y = rows
    model = LogisticRegression().fit(X[:200], y[:200])
    figures = measure(model, X[200:], y[200:], task="classification")
    assert set(figures) == {"accuracy", "balanced_accuracy", "precision", "recall", "f1",
                            "log_loss", "roc_auc"}
    assert figures["accuracy"] > 0.85 and figures["roc_auc"] > 0.9


def test_a_model_trained_on_noise_measures_as_noise(rows):
    X, y = rows
    shuffled = np.random.default_rng(1).permutation(y[:200].to_numpy())
    figures = measure(LogisticRegression().fit(X[:200], shuffled), X[200:], y[200:],
                      task="classification")
    assert figures["roc_auc"] < 0.7


def test_labels_read_as_text_are_compared_with_the_classes_the_model_learned(rows):
    X, y = rows
    model = LogisticRegression().fit(X[:200], y[:200])
    as_text = y[200:].astype(str)
    assert labels_like(as_text, model.classes_).dtype.kind == "i"
    assert measure(model, X[200:], as_text, task="classification")["accuracy"] > 0.85


def test_labels_the_model_never_learned_are_refused_by_name(rows):
    X, y = rows
    model = LogisticRegression().fit(X[:200], y[:200])
    with pytest.raises(EvaluationError, match="classes the model does not know: 7"):
        measure(model, X[200:203], [0, 1, 7], task="classification")


def test_a_regressor_is_measured_with_rmse_mae_and_r2(rows):
    X, _ = rows
    target = 2 * X["a"] - X["b"]
    figures = measure(LinearRegression().fit(X, target), X, target, task="regression")
    assert figures["rmse"] < 1e-9 and figures["r2"] == pytest.approx(1.0)


def test_non_finite_predictions_fail_the_measurement(rows):
    X, _ = rows

    class Broken:
        def predict(self, X):
            return np.full(len(X), np.nan)

    with pytest.raises(EvaluationError, match="non-finite predictions") as caught:
        measure(Broken(), X, X["a"], task="regression")
    assert caught.value.code == "nonfinite_prediction"


def test_no_rows_is_an_error_not_a_perfect_score(rows):
    X, y = rows
    with pytest.raises(EvaluationError, match="no evaluation row"):
        measure(LogisticRegression().fit(X, y), X[:0], y[:0], task="classification")


def test_gates_say_where_each_figure_came_from():
    rules = [{"metric": "roc_auc", "min": 0.9}, {"metric": "owner_kpi", "min": 1},
             {"metric": "roc_auc", "max_drop": 0.01}]
    mine = Evidence({"roc_auc": 0.55, "owner_kpi": 2},
                    {"roc_auc": "measured", "owner_kpi": "declared"},
                    measurable=MEASURABLE["classification"])
    theirs = Evidence({"roc_auc": 0.93}, {"roc_auc": "measured"},
                      measurable=MEASURABLE["classification"])
    results = evaluate(rules, mine, theirs)
    assert [(r.source, r.passed) for r in results] == [
        ("measured", False), ("declared", True), ("measured", False)]
    assert results[2].champion_source == "measured"


def test_while_a_measurement_is_under_way_every_gate_fails_with_the_reason():
    results = evaluate([{"metric": "roc_auc", "min": 0.9}],
                       Evidence({"roc_auc": 0.99}, unmeasured="v3 is being measured"), None)
    assert not results[0].passed and results[0].detail == "v3 is being measured"


def test_a_measurable_metric_the_measurement_lacks_is_not_judged_on_its_declared_figure():
    """One class in the labels gives no ROC AUC: the typed-in 0.99 must not pass."""
    mine = Evidence({"roc_auc": 0.99, "accuracy": 0.05},
                    {"roc_auc": "declared", "accuracy": "measured"},
                    measurable=MEASURABLE["classification"])
    results = evaluate([{"metric": "roc_auc", "min": 0.9}], mine, None)
    assert not results[0].passed and "could not be measured" in results[0].detail


def test_a_comparison_needs_both_sides_measured():
    mine = Evidence({"roc_auc": 0.5}, {"roc_auc": "measured"},
                    measurable=MEASURABLE["classification"])
    declared_low = Evidence({"roc_auc": 0.5}, {"roc_auc": "declared"},
                            measurable=MEASURABLE["classification"])
    result = evaluate([{"metric": "roc_auc", "max_drop": 0.01}], mine, declared_low)[0]
    assert not result.passed and "the version it is compared with" in result.detail
    failed = Evidence({"roc_auc": 0.99}, unmeasured="v1 could not be measured on h: boom")
    result = evaluate([{"metric": "roc_auc", "max_drop": 0.01}], mine, failed)[0]
    assert not result.passed and result.detail == "v1 could not be measured on h: boom"
    # an absolute rule does not need the other side
    assert evaluate([{"metric": "roc_auc", "min": 0.4}], mine, failed)[0].passed
