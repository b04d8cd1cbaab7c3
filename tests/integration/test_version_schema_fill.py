"""An upload may leave the input schema empty: the portal fills it in from the artifact's
feature names (read by the worker), or from the parent version's schema or the dataset's
columns when the uploader chooses them, and records which (issue 16)."""

import io

import numpy as np
import pytest

from ops.artifacts import dump_skops
from portal.errors import ValidationFailed
from portal.registry import services
from portal.registry.models import ModelVersion
from tests.portal_fixtures import FEATURES, metadata, random_classifier_bytes, schema

pytestmark = pytest.mark.django_db


def _register(users, model, data, schema_from, **meta):
    return services.validate_version(services.register_version(
        users["contributor"], model, io.BytesIO(data), metadata(input_schema=[], **meta),
        schema_from=schema_from).pk)


def _nameless(seed):
    """A classifier fitted on a bare array: no feature_names_in_."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(seed)
    return dump_skops(LogisticRegression().fit(rng.normal(size=(40, 5)), [0, 1] * 20))


def test_the_artifact_names_its_features(users, clf):
    version = _register(users, clf, random_classifier_bytes(1), "auto")
    assert version.status == "ready", version.status_reason
    assert version.schema_source == "artifact"
    assert [(f["name"], f["type"]) for f in version.input_schema] == [
        (f["name"], f["type"]) for f in schema(FEATURES)]
    assert "from the artifact's feature names" in services.schema_words(version)


def test_without_names_the_order_is_unknown_and_the_version_refused(users, clf):
    """A model fitted on a bare array names no inputs: taking the parent's or the dataset's
    order would be a guess that feeds every prediction the wrong features. "auto" refuses
    it; the uploader may choose the parent's schema (next test)."""
    typed = [{"name": n, "type": "integer" if i == 0 else "double"}
             for i, n in enumerate(FEATURES)]
    parent = services.validate_version(services.register_version(
        users["contributor"], clf, io.BytesIO(random_classifier_bytes(2)),
        metadata(input_schema=typed)).pk)
    assert parent.schema_source == "declared"
    child = _register(users, clf, _nameless(3), "auto", parent=parent.number)
    assert child.status == "invalid"
    assert child.status_reason.startswith("no_input_schema: the artifact carries no feature")
    assert "cannot tell which input is which" in child.status_reason
    chosen = _register(users, clf, _nameless(3), "parent", parent=parent.number)
    assert chosen.status == "ready", chosen.status_reason
    assert (chosen.schema_source, chosen.input_schema) == ("parent", parent.input_schema)
    # Named features take their types from the parent's schema.
    named = _register(users, clf, random_classifier_bytes(4), "auto", parent=parent.number)
    assert named.schema_source == "artifact" and named.input_schema[0]["type"] == "integer"


def test_asked_for_the_parent_or_the_dataset(users, clf, project, cancer_frame):
    with pytest.raises(ValidationFailed) as refused:
        _register(users, clf, random_classifier_bytes(6), "parent")
    assert refused.value.field == "parent"
    dataset = services.upload_dataset(users["contributor"], project, name="train",
                                      file=io.BytesIO(cancer_frame.to_csv(index=False).encode()),
                                      filename="train.csv", target="target")
    services.profile_dataset(dataset.pk)
    version = _register(users, clf, random_classifier_bytes(7), "dataset", dataset=dataset.pk)
    assert version.status == "ready", version.status_reason
    assert version.schema_source == "dataset"
    assert [f["name"] for f in version.input_schema] == FEATURES


def test_a_schema_once_set_stays(users, clf):
    from portal.registry.models import ImmutableVersionError

    version = _register(users, clf, random_classifier_bytes(8), "auto")
    version.input_schema = []
    with pytest.raises(ImmutableVersionError):
        version.save(update_fields=["input_schema"])
    assert len(ModelVersion.objects.get(pk=version.pk).input_schema) == len(FEATURES)
