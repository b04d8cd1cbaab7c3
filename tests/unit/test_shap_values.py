"""SHAP explanations: the explainer chosen per model, additivity, what is explained."""

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import (
    GradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import PolynomialFeatures, StandardScaler

from explainability.shap_values import ExplanationError, choose_method, explain, plain_summary


@pytest.fixture(scope="module")
def cancer():
    data = load_breast_cancer(as_frame=True)
    return data.data.iloc[:, :8], data.target


@pytest.fixture(scope="module")
def diabetes():
    data = load_diabetes(as_frame=True)
    return data.data, data.target


def additive(result, tol=1e-6):
    values = np.asarray(result.values)
    total = result.base_value + values.sum(axis=1)
    return np.max(np.abs(total - np.asarray(result.outputs))) <= tol * max(
        1, np.max(np.abs(result.outputs)))


def test_forest_uses_the_tree_explainer_on_the_positive_class_probability(cancer):
    X, y = cancer
    model = RandomForestClassifier(n_estimators=30, random_state=0).fit(X, y)
    result = explain(model, X.iloc[:120], X)
    assert result.method == "tree" and choose_method(model) == "tree"
    assert result.output == "probability of class 1" and result.target_class == "1"
    assert additive(result)
    np.testing.assert_allclose(result.outputs, model.predict_proba(X.iloc[:120])[:, 1])
    assert result.sample_size == 120 and len(result.values[0]) == 8


def test_boosting_is_explained_in_log_odds(cancer):
    X, y = cancer
    model = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(X, y)
    result = explain(model, X.iloc[:100])
    assert result.method == "tree" and result.output == "log-odds of class 1"
    np.testing.assert_allclose(result.outputs, model.decision_function(X.iloc[:100]))
    assert additive(result)


def test_a_scaled_logistic_pipeline_is_explained_linearly_under_the_original_names(cancer):
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    result = explain(model, X.iloc[:200], X)
    assert result.method == "linear" and result.output == "log-odds of class 1"
    assert result.feature_names == list(X.columns)
    np.testing.assert_allclose(result.outputs, model.decision_function(X.iloc[:200]))
    assert additive(result)
    assert result.background_size == len(X)


def test_a_pipeline_that_mixes_features_falls_back_to_permutation(cancer):
    X, y = cancer
    model = make_pipeline(StandardScaler(), PolynomialFeatures(2),
                          LogisticRegression(max_iter=5000)).fit(X, y)
    assert choose_method(model) == "permutation"


# SHAP's permutation explainer compiles its numba kernels once per process (~15 s): tests
# using it share a worker (pytest-xdist's loadgroup), so the suite pays it once.
@pytest.mark.xdist_group("shap-permutation")
def test_other_models_use_permutation_with_a_kmeans_background(cancer):
    X, y = cancer
    model = KNeighborsClassifier().fit(X, y)
    result = explain(model, X.iloc[:20], X)
    assert result.method == "permutation" and result.output == "probability of class 1"
    assert result.background_size == 50
    assert additive(result, tol=1e-6)


def test_regressors_are_explained_in_their_prediction(diabetes):
    X, y = diabetes
    forest = RandomForestRegressor(n_estimators=20, random_state=0).fit(X, y)
    ridge = Ridge().fit(X, y)
    for model, method in ((forest, "tree"), (ridge, "linear")):
        result = explain(model, X.iloc[:100], X)
        assert result.method == method and result.output == "predicted value"
        assert result.target_class is None and additive(result)


def test_importance_is_sorted_with_spread_and_direction(diabetes):
    X, y = diabetes
    model = Ridge().fit(X, y)
    result = explain(model, X, X)
    means = [i["mean_abs"] for i in result.importance]
    assert means == sorted(means, reverse=True)
    by_name = {i["feature"]: i for i in result.importance}
    assert by_name["bmi"]["direction"] > 0.9  # higher BMI, higher progression
    assert all(i["std_abs"] >= 0 for i in result.importance)
    summary = plain_summary(result.to_dict(), "regression")
    assert summary.startswith("The 3 inputs that move this model most are")
    assert "higher" in summary


def test_the_sample_is_bounded(cancer):
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    assert explain(model, X, X, max_rows=50).sample_size == 50


def test_a_result_that_does_not_add_up_is_refused(cancer, monkeypatch):
    X, y = cancer
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    # A model whose decision function disagrees with its coefficients: SHAP's numbers would
    # not describe what it predicts.
    monkeypatch.setattr(type(model), "decision_function",
                        lambda self, X: np.zeros(len(X)) + 5.0)
    with pytest.raises(ExplanationError) as caught:
        explain(model, X.iloc[:30], X)
    assert caught.value.code == "not_additive"


def test_a_model_shap_cannot_handle_gets_a_clear_error():
    class Opaque:
        classes_ = np.array([0, 1])

        def predict_proba(self, X):
            raise RuntimeError("the scoring service is down")

    X = pd.DataFrame(np.random.default_rng(0).normal(size=(20, 3)), columns=list("abc"))
    with pytest.raises(ExplanationError, match="SHAP could not explain Opaque"):
        explain(Opaque(), X)


def test_the_summary_names_the_class_as_the_model_does(cancer):
    X, y = cancer
    result = explain(make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y), X, X)
    summary = plain_summary(result.to_dict(), "classification",
                            {"0": "malignant", "1": "benign"})
    assert "the predicted probability of “benign”" in summary
    assert "class 1" not in summary


# -- more than two classes ---------------------------------------------------------------------

IRIS_LABELS = {"0": "setosa", "1": "versicolor", "2": "virginica"}


@pytest.fixture(scope="module")
def iris():
    from sklearn.datasets import load_iris

    return load_iris(return_X_y=True, as_frame=True)


@pytest.mark.parametrize("make", [lambda: LogisticRegression(max_iter=1000),
                                  lambda: make_pipeline(StandardScaler(), LogisticRegression())])
def test_a_multiclass_score_is_explained_exactly_and_never_as_log_odds(iris, make):
    """A multinomial model's decision_function[:, -1] is one input of a softmax, not the
    log-odds of the class: the logistic function of it is not predict_proba. The values
    add up to the score, which is what they are said to explain (decision 26)."""
    from explainability.words import Output

    X, y = iris
    model = make().fit(X, y)
    rows = X.iloc[[60, 70, 120, 133]]
    result = explain(model, rows, background=X)
    assert result.output == "score of class 2" and additive(result, 1e-3)
    np.testing.assert_allclose(result.outputs, model.decision_function(rows)[:, -1], atol=1e-6)
    out = Output.parse(result.output, IRIS_LABELS, result.target_class)
    assert out.probability(result.outputs[0]) is None  # never a made-up probability
    words = " ".join([out.how, out.effect_unit, out.average(result.outputs, result.base_value),
                      plain_summary(result.to_dict(), "classification", IRIS_LABELS)])
    assert "log-odds" not in words and "probability of" not in words
    assert "score for “virginica”" in words


def test_a_multiclass_verdict_names_the_predicted_class(iris):
    from sklearn.ensemble import RandomForestClassifier as Forest

    from explainability.words import Output

    X, y = iris
    for model in (LogisticRegression(max_iter=1000).fit(X, y),
                  Forest(n_estimators=20, random_state=0).fit(X, y)):
        rows = X.iloc[[60, 70, 83]]
        result = explain(model, rows, background=X)
        out = Output.parse(result.output, IRIS_LABELS, result.target_class)
        for i, predicted in enumerate(model.predict(rows)):
            verdict = out.verdict(result.outputs[i], IRIS_LABELS, [0, 1, 2], predicted=predicted)
            assert verdict.startswith(f"{IRIS_LABELS[str(predicted)]} ("), (verdict, predicted)
            assert "“virginica”" in verdict  # the explained class, named apart
