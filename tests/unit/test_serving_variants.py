"""ops.serving.variants: verified, safe loading and the fastest correct input path."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.svm import SVC

from ops.artifacts import dump_skops
from ops.plan import Variant
from ops.profile import profile_frame
from ops.serving.exceptions import PredictFailed, VariantLoadError
from ops.serving.variants import (
    FRAME,
    NUMPY,
    PICKLE_ENV,
    BatchingOptions,
    load_variant,
    silence_feature_name_warning,
)

NAMES = ["a", "b", "c"]

# The server silences this warning process-wide once it has checked numpy input is equivalent.
pytestmark = [pytest.mark.filterwarnings("ignore:X does not have valid feature names"),
              pytest.mark.filterwarnings("ignore:The `probability` parameter was deprecated")]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=NAMES)
    target = (frame["a"] + frame["b"] > 0).astype(int)
    return frame, target


def write(tmp_path: Path, model, name="m.skops", pickle=False) -> tuple[str, str]:
    path = tmp_path / name
    if pickle:
        joblib.dump(model, path)
    else:
        path.write_bytes(dump_skops(model))
    return f"file://{path}", hashlib.sha256(path.read_bytes()).hexdigest()


def variant(uri, sha, **extra) -> Variant:
    fields = {"name": "v1", "version_id": 1, "artifact_uri": uri, "sha256": sha, "weight": 1.0,
              "input_schema": [{"name": n, "type": "double"} for n in NAMES]}
    fields.update(extra)
    return Variant(**fields)


def load(spec: Variant, base_dir: Path = Path("/")):
    return load_variant(spec, base_dir=base_dir, executor=None, batching=BatchingOptions())


def test_a_model_fitted_on_a_dataframe_is_served_from_numpy_with_the_same_answers(
        tmp_path, data):
    frame, target = data
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, target)
    loaded = load(variant(*write(tmp_path, model)))
    assert loaded.mode == NUMPY and loaded.derive_labels
    rows = frame.to_numpy()[:20]
    labels, proba = loaded.predict_rows(rows)
    np.testing.assert_allclose(proba, model.predict_proba(frame.iloc[:20]), rtol=1e-12)
    np.testing.assert_array_equal(labels, model.predict(frame.iloc[:20]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as in the server: only the name warning is silenced
        silence_feature_name_warning()
        loaded.predict_rows(rows)


def test_a_model_that_selects_columns_by_name_gets_one_dataframe_per_batch(tmp_path, data):
    frame, target = data
    model = make_pipeline(
        ColumnTransformer([("scale", StandardScaler(), ["b", "a"])], remainder="drop"),
        LogisticRegression()).fit(frame, target)
    loaded = load(variant(*write(tmp_path, model)))
    assert loaded.mode == FRAME
    labels, proba = loaded.predict_rows(frame.to_numpy()[:5])
    np.testing.assert_allclose(proba, model.predict_proba(frame.iloc[:5]))


def test_predict_is_called_when_it_is_not_the_argmax_of_predict_proba(tmp_path, data,
                                                                      monkeypatch):
    monkeypatch.setenv(PICKLE_ENV, "true")
    frame, target = data
    model = SVC(probability=True, random_state=0).fit(frame.to_numpy(), target)
    loaded = load(variant(*write(tmp_path, model, pickle=True), trusted_unsafe=True))
    assert not loaded.derive_labels
    labels, _ = loaded.predict_rows(frame.to_numpy()[:10])
    np.testing.assert_array_equal(labels, model.predict(frame.to_numpy()[:10]))


def test_a_checksum_mismatch_is_refused(tmp_path, data):
    frame, target = data
    uri, _ = write(tmp_path, LogisticRegression().fit(frame, target))
    with pytest.raises(VariantLoadError) as caught:
        load(variant(uri, "0" * 64))
    assert caught.value.code == "sha256_mismatch"


def test_pickles_need_the_plan_and_the_servers_operator_to_allow_them(tmp_path, data,
                                                                       monkeypatch):
    frame, target = data
    uri, sha = write(tmp_path, LogisticRegression().fit(frame, target), "m.joblib", pickle=True)
    monkeypatch.delenv(PICKLE_ENV, raising=False)
    for spec in (variant(uri, sha), variant(uri, sha, trusted_unsafe=True)):
        with pytest.raises(VariantLoadError) as caught:  # a plan alone cannot ask for it
            load(spec)
        assert caught.value.code == "unsafe_artifact"
    monkeypatch.setenv(PICKLE_ENV, "true")
    with pytest.raises(VariantLoadError):
        load(variant(uri, sha))
    assert load(variant(uri, sha, trusted_unsafe=True)).mode == NUMPY


def test_a_corrupt_artifact_and_a_schema_mismatch_are_refused(tmp_path, data):
    frame, target = data
    broken = tmp_path / "broken.skops"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    sha = hashlib.sha256(broken.read_bytes()).hexdigest()
    with pytest.raises(VariantLoadError) as caught:
        load(variant(f"file://{broken}", sha))
    assert caught.value.code in ("corrupt_artifact", "not_a_model")
    uri, sha = write(tmp_path, LogisticRegression().fit(frame, target))
    with pytest.raises(VariantLoadError) as caught:
        load(variant(uri, sha, input_schema=["a", "b"]))
    assert caught.value.code == "schema_mismatch"


def test_unsupported_and_missing_uris_say_so(tmp_path):
    with pytest.raises(VariantLoadError) as caught:
        load(variant("gs://bucket/m.skops", "0" * 64))
    assert caught.value.code == "unsupported_uri" and "gs" in caught.value.detail
    with pytest.raises(VariantLoadError) as caught:
        load(variant(f"file://{tmp_path}/nothing.skops", "0" * 64))
    assert caught.value.code == "artifact_missing"


def test_relative_file_uris_are_read_from_the_plans_folder(tmp_path, data):
    frame, target = data
    _, sha = write(tmp_path, LogisticRegression().fit(frame, target), "model.skops")
    assert load(variant("file://model.skops", sha), base_dir=tmp_path).name == "v1"


def test_without_a_schema_the_models_feature_names_are_used(tmp_path, data):
    frame, target = data
    loaded = load(variant(*write(tmp_path, LogisticRegression().fit(frame, target)),
                          input_schema=[]))
    assert loaded.inputs.names == tuple(NAMES)


def test_a_batch_counts_features_into_baseline_bins_and_classes(tmp_path, data):
    frame, target = data
    model = RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, target)
    profile = profile_frame(frame)
    loaded = load(variant(*write(tmp_path, model), baseline=profile))
    results = loaded.predict_batch([frame.to_numpy()[:70], frame.to_numpy()[70:]])
    assert [len(r.labels) for r in results] == [70, 50]
    bins = {name: counts for name, counts, _ in loaded.binner.snapshot()}
    assert bins == {n: profile["features"][n]["counts"] for n in NAMES}
    classes = dict(loaded.class_counter.snapshot())
    predicted = model.predict(frame)
    assert classes == {"0": int((predicted == 0).sum()), "1": int((predicted == 1).sum())}


def test_a_row_that_breaks_the_model_fails_only_its_own_request(tmp_path, data):
    frame, target = data
    schema = [{"name": "a", "type": "double"}, {"name": "b", "type": "double"},
              {"name": "c", "type": "double", "nullable": True}]
    uri, sha = write(tmp_path, LogisticRegression().fit(frame, target))
    loaded = load(variant(uri, sha, input_schema=schema))
    good = frame.to_numpy()[:2]
    with_nan = np.array([[0.1, 0.2, np.nan]])  # schema allows it, the model does not
    results = loaded.predict_batch([good, with_nan, good])
    assert isinstance(results[1], PredictFailed) and "NaN" in results[1].detail
    # Valid input the model cannot handle is the version's fault: a 5xx canary analysis sees.
    assert (results[1].status, results[1].code) == (500, "predict_failed")
    assert len(results[0].labels) == 2 and len(results[2].labels) == 2


def test_regressors_count_predictions_into_a_value_histogram(tmp_path, data):
    frame, _ = data
    model = LinearRegression().fit(frame, frame["a"] * 3)
    loaded = load(variant(*write(tmp_path, model), task="regression",
                          baseline={"prediction": {"edges": [-1.0, 0.0, 1.0]}}))
    values, proba = loaded.predict_rows(frame.to_numpy()[:10])
    assert proba is None and values.shape == (10,)
    loaded.predict_batch([frame.to_numpy()[:10]])
    buckets, _ = loaded.value_histogram.snapshot()
    assert buckets[-1] == ("+Inf", 10)


def test_categorical_features_are_served_through_a_dataframe(tmp_path):
    frame = pd.DataFrame({"plan": ["free", "gold", "free", "pro"] * 10,
                          "usage": np.arange(40.0)})
    target = (frame["usage"] > 20).astype(int)
    model = make_pipeline(
        ColumnTransformer([("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"]),
                           ("usage", StandardScaler(), ["usage"])]),
        LogisticRegression()).fit(frame, target)
    uri, sha = write(tmp_path, model)
    spec = variant(uri, sha, input_schema=[{"name": "plan", "type": "category"},
                                           {"name": "usage", "type": "double"}])
    loaded = load(spec)
    rows = np.array([["gold", 30.0], ["free", 1.0]], dtype=object)
    labels, proba = loaded.predict_rows(rows)
    np.testing.assert_allclose(proba, model.predict_proba(
        pd.DataFrame({"plan": ["gold", "free"], "usage": [30.0, 1.0]})))
