"""Explanations in words (explainability/words.py), rows people paste
(portal/registry/explain_views.parse_rows), class labels and estimator names."""

import math

import pytest

from explainability.words import Output, logistic, num, percent
from ops.artifacts import estimator_name, public_name
from portal.errors import ValidationFailed
from portal.registry.explain_views import parse_rows

LABELS = {"0": "malignant", "1": "benign"}


def test_numbers_and_scores_read_as_people_read_them():
    assert num(1.6958427650512713) == "1.7" and num(1268.23) == "1,270" and num(2.0) == "2"
    assert percent(0.9412) == "94.1%" and percent(0.0012) == "0.12%"
    assert logistic(0) == 0.5 and math.isclose(logistic(-10.5), 2.75e-5, rel_tol=1e-2)
    assert logistic(-1000) == 0.0 and logistic(1000) == 1.0


def test_an_output_speaks_in_probabilities_and_the_models_labels():
    out = Output.parse("log-odds of class 1", LABELS, "1")
    assert out.label == "benign" and out.classifier
    assert out.average([2.0, 3.0], 2.5) == ("On average the model gives “benign” a "
                                            "probability of 91.7%.")
    assert out.verdict(-10.5, LABELS, [0, 1]) == "malignant (probability 100.0%)"
    assert out.verdict(2.0, LABELS, [0, 1]) == "benign (probability 88.1%)"
    assert "log-odds" not in out.how and "logistic" in out.how
    regression = Output.parse("predicted value")
    assert not regression.classifier and regression.verdict(1.23456) == "predicted value 1.23"
    assert Output.parse("probability of class 1").label == "1"  # no names given: the value


def test_pasted_rows_are_read_or_refused_with_what_to_fix():
    names = ["a", "b", "c"]
    assert parse_rows("1,2,3\n4,5,6", names) == [[1, 2, 3], [4, 5, 6]]
    assert parse_rows("c,a,b\n3,1,2", names) == [[1, 2, 3]]  # a header in any order
    assert parse_rows("a\tb\tc\n1\t2\t3", names) == [[1, 2, 3]]
    assert parse_rows('{"a": 1, "b": 2, "c": 3}', names) == [[1, 2, 3]]
    assert parse_rows("[1, 2, 3]", names) == [[1, 2, 3]]
    for text, message in [
        ("", "at least one row"),
        ("1,2", "Line 1 has 2 values; the model takes 3"),
        ("a,b,c\n1,x,3", "Line 2, b: 'x' is not a number"),
        ("a,b,d\n1,2,3", "it lacks c; the model does not take d"),
        ("1,2,nan", "Line 1, c: 'nan' is not a number"),
        ('{"a": 1}', "it lacks b, c"),
        ("[1, 2", "not valid JSON"),
    ]:
        with pytest.raises(ValidationFailed, match=message):
            parse_rows(text, names)


def test_estimators_are_named_as_their_library_documents_them():
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert estimator_name(GradientBoostingClassifier()) == \
        "sklearn.ensemble.GradientBoostingClassifier"
    assert estimator_name(make_pipeline(StandardScaler(), LogisticRegression())) == \
        "sklearn.pipeline.Pipeline(StandardScaler → LogisticRegression)"
    # Versions stored before: their private module paths shown as the public ones.
    assert public_name("sklearn.ensemble._gb.GradientBoostingClassifier") == \
        "sklearn.ensemble.GradientBoostingClassifier"


@pytest.mark.django_db
def test_metadata_classes_name_the_classes_of_a_version(clf):
    from portal.registry.metadata import parse_version_metadata
    from portal.registry.models import ModelVersion
    from tests.portal_fixtures import metadata

    stored = parse_version_metadata(clf, metadata(classes=LABELS))
    assert stored["output_schema"] == {"classes": LABELS}
    version = ModelVersion(output_schema=stored["output_schema"], classes=[0, 1])
    assert version.class_labels == LABELS
    assert ModelVersion(classes=["no", "yes"]).class_labels == {"no": "no", "yes": "yes"}
    with pytest.raises(ValidationFailed, match="classes must map each class value"):
        parse_version_metadata(clf, metadata(classes={"0": ""}))


def test_try_it_says_why_an_endpoint_cannot_answer():
    from types import SimpleNamespace

    from portal.monitoring.try_it import send

    sagemaker = SimpleNamespace(address=None, endpoint="m",
                                environment=SimpleNamespace(backend="sagemaker"))
    with pytest.raises(ValidationFailed, match="cannot send rows to a sagemaker endpoint"):
        send(sagemaker, [1.0])
    gone = SimpleNamespace(address="127.0.0.1:9", endpoint="m",
                           environment=SimpleNamespace(backend="local"))
    with pytest.raises(ValidationFailed, match="The endpoint did not answer"):
        send(gone, [1.0])


def test_with_more_than_two_classes_the_predicted_class_leads_the_verdict():
    labels = {"0": "setosa", "1": "versicolor", "2": "virginica"}
    forest = Output.parse("probability of class 2", labels, "2")
    assert forest.verdict(0.0, labels, [0, 1, 2], predicted=1) == (
        "versicolor (probability of “virginica” 0%)")
    assert forest.verdict(0.9, labels, [0, 1, 2], predicted=2) == (
        "virginica (probability of “virginica” 90.0%)")
    # without the prediction (a row of the explained sample) no class is claimed
    assert forest.verdict(0.0, labels, [0, 1, 2]) == "probability of “virginica” 0%"
    linear = Output.parse("score of class 2", labels, "2")
    assert linear.classifier and linear.probability(-2.37) is None
    assert linear.verdict(-2.37, labels, [0, 1, 2], predicted=1) == (
        "versicolor (score for “virginica” -2.37)")
    assert "probability" not in linear.average([1.0, 2.0], 1.5)
    # two classes read as before
    binary = Output.parse("log-odds of class 1", LABELS, "1")
    assert binary.verdict(-10.5, LABELS, [0, 1], predicted=0) == "malignant (probability 100.0%)"
