"""ops.artifacts: format detection, safe loading and checks against task and schema.

Every model here is fitted on a few dozen random rows so the module runs in seconds.
"""

from __future__ import annotations

import io
import pickle
import zipfile

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.svm import LinearSVC

from ops import artifacts
from ops.artifacts import (
    CLASSIFICATION,
    PICKLE,
    REGRESSION,
    SKOPS,
    TRUSTED_SKOPS_TYPES,
    detect_file_format,
    detect_format,
    dump_skops,
    inspect_model,
    load_model,
    read_head,
    validate_artifact,
)
from ops.exceptions import ArtifactError, PermanentError, UnsafeArtifactError
from ops.schema import parse_input_schema

NAMES = ["a", "b", "c"]


def double(x):
    """A custom function: skops cannot trust it by default."""
    return x * 2


class Exploding:
    def __reduce__(self):
        return (int, ("not a number",))  # raises ValueError while unpickling


@pytest.fixture(scope="module")
def frame():
    rng = np.random.default_rng(0)
    return pd.DataFrame(rng.normal(size=(40, 3)), columns=NAMES)


@pytest.fixture(scope="module")
def labels():
    return np.array([0, 1] * 20)


@pytest.fixture(scope="module")
def logistic(frame, labels):
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, labels)


@pytest.fixture(scope="module")
def logistic_skops(logistic) -> bytes:
    return dump_skops(logistic)


@pytest.fixture
def write(tmp_path):
    def write(data: bytes, name: str = "model.bin"):
        path = tmp_path / name
        path.write_bytes(data)
        return path
    return write


def schema(names=NAMES):
    return parse_input_schema(list(names))


def assert_artifact_error(info, code):
    assert info.value.code == code, info.value.detail
    assert isinstance(info.value, PermanentError)


# detect_format --------------------------------------------------------------------------

def test_skops_bytes_are_detected_as_skops(logistic_skops):
    assert detect_format(logistic_skops[:8]) == SKOPS


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_pickle_bytes_are_detected_as_pickle(protocol):
    assert detect_format(pickle.dumps({"x": 1}, protocol=protocol)[:8]) == PICKLE


def test_plain_joblib_file_is_detected_as_pickle(tmp_path, logistic):
    joblib.dump(logistic, tmp_path / "m.joblib")
    assert detect_file_format(tmp_path / "m.joblib") == PICKLE


@pytest.mark.parametrize("level", [1, 3, 6, 9])
def test_zlib_compressed_joblib_file_is_detected_as_pickle(tmp_path, logistic, level):
    joblib.dump(logistic, tmp_path / "m.joblib", compress=level)
    assert detect_file_format(tmp_path / "m.joblib") == PICKLE


@pytest.mark.parametrize("head", [
    b"a,b,c\n1,2,3\n", b'{"model": 1}', b"", b"\x00\x00\x00\x00", b"PAR1\x15\x04",
])
def test_text_and_other_bytes_are_not_a_model(head):
    with pytest.raises(ArtifactError) as info:
        detect_format(head)
    assert_artifact_error(info, "not_a_model")


def test_read_head_returns_first_bytes_and_rewinds():
    handle = io.BytesIO(b"PK\x03\x04rest of the file")
    handle.read(2)
    assert read_head(handle, 4) == b"\x03\x04re"
    assert handle.tell() == 2


# skops loading --------------------------------------------------------------------------

def test_skops_model_loads_and_predicts_like_the_original(write, logistic, logistic_skops,
                                                          frame):
    loaded = load_model(write(logistic_skops, "m.skops"))
    np.testing.assert_allclose(loaded.predict_proba(frame), logistic.predict_proba(frame))


def test_zip_that_is_not_a_skops_file_is_not_a_model(write):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    with pytest.raises(ArtifactError) as info:
        load_model(write(buffer.getvalue(), "m.skops"))
    assert_artifact_error(info, "not_a_model")
    assert "schema.json" in info.value.detail


def test_truncated_skops_file_is_corrupt(write, logistic_skops):
    path = write(logistic_skops[: len(logistic_skops) // 2], "m.skops")
    assert detect_file_format(path) == SKOPS
    with pytest.raises(ArtifactError) as info:
        load_model(path)
    assert_artifact_error(info, "corrupt_artifact")


def test_skops_file_with_garbage_schema_is_corrupt(write):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("schema.json", "{this is not json")
    with pytest.raises(ArtifactError) as info:
        load_model(write(buffer.getvalue(), "m.skops"))
    assert_artifact_error(info, "corrupt_artifact")


@pytest.fixture(scope="module")
def custom_function_skops(frame, labels) -> bytes:
    model = make_pipeline(FunctionTransformer(double), LogisticRegression())
    return dump_skops(model.fit(frame, labels))


def test_untrusted_skops_type_is_refused_with_its_name(write, custom_function_skops):
    with pytest.raises(ArtifactError) as info:
        load_model(write(custom_function_skops, "m.skops"))
    assert_artifact_error(info, "untrusted_types")
    assert f"{double.__module__}.double" in info.value.detail


def test_untrusted_skops_type_loads_when_passed_in_extra_trusted(write, custom_function_skops,
                                                                 frame):
    loaded = load_model(write(custom_function_skops, "m.skops"),
                        extra_trusted=(f"{double.__module__}.double",))
    assert loaded.steps[0][1].func is double
    assert loaded.predict(frame).shape == (len(frame),)


def test_extra_trusted_for_a_different_type_does_not_unlock_the_file(write,
                                                                     custom_function_skops):
    with pytest.raises(ArtifactError) as info:
        load_model(write(custom_function_skops, "m.skops"), extra_trusted=("os.system",))
    assert_artifact_error(info, "untrusted_types")


def test_skops_file_is_loaded_even_when_pickles_are_not_allowed(write, logistic_skops):
    assert load_model(write(logistic_skops, "m.skops"), allow_unsafe=False) is not None


@pytest.mark.parametrize("make_model", [
    lambda: RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0),
    lambda: HistGradientBoostingClassifier(max_iter=3, random_state=0),
], ids=["random_forest", "hist_gradient_boosting"])
def test_tree_ensembles_load_from_skops_with_the_trusted_list(write, frame, labels, make_model):
    model = make_model().fit(frame, labels)
    loaded = load_model(write(dump_skops(model), "m.skops"))
    np.testing.assert_allclose(loaded.predict_proba(frame), model.predict_proba(frame))


def test_hist_gradient_boosting_regressor_loads_from_skops(write, frame):
    target = np.random.default_rng(1).normal(size=len(frame))
    model = HistGradientBoostingRegressor(max_iter=3).fit(frame, target)
    loaded = load_model(write(dump_skops(model), "m.skops"))
    np.testing.assert_allclose(loaded.predict(frame), model.predict(frame))


def test_trusted_list_names_the_tree_types_the_ensembles_need():
    assert "sklearn.tree._tree.Tree" in TRUSTED_SKOPS_TYPES
    assert ("sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
            in TRUSTED_SKOPS_TYPES)


# pickle loading -------------------------------------------------------------------------

def test_pickle_is_refused_without_allow_unsafe(write, logistic):
    with pytest.raises(UnsafeArtifactError) as info:
        load_model(write(pickle.dumps(logistic, protocol=4)))
    assert_artifact_error(info, "unsafe_artifact")
    assert "skops" in info.value.detail


def test_pickle_refusal_does_not_unpickle_the_file(write):
    # An exploding pickle would raise ValueError if it were unpickled.
    with pytest.raises(UnsafeArtifactError):
        load_model(write(pickle.dumps(Exploding(), protocol=4)))


def test_pickle_loads_with_allow_unsafe(write, logistic, frame):
    loaded = load_model(write(pickle.dumps(logistic, protocol=4)), allow_unsafe=True)
    np.testing.assert_allclose(loaded.predict_proba(frame), logistic.predict_proba(frame))


def test_compressed_joblib_loads_with_allow_unsafe(tmp_path, logistic, frame):
    path = tmp_path / "m.joblib"
    joblib.dump(logistic, path, compress=3)
    loaded = load_model(path, allow_unsafe=True)
    np.testing.assert_allclose(loaded.predict(frame), logistic.predict(frame))


def test_pickle_that_raises_while_loading_is_corrupt(write):
    with pytest.raises(ArtifactError) as info:
        load_model(write(pickle.dumps(Exploding(), protocol=4)), allow_unsafe=True)
    assert_artifact_error(info, "corrupt_artifact")
    assert "ValueError" in info.value.detail


def test_truncated_pickle_is_corrupt(write, logistic):
    data = pickle.dumps(logistic, protocol=4)
    with pytest.raises(ArtifactError) as info:
        load_model(write(data[: len(data) // 2]), allow_unsafe=True)
    assert_artifact_error(info, "corrupt_artifact")


def test_text_file_is_not_a_model_whatever_is_allowed(write):
    with pytest.raises(ArtifactError) as info:
        load_model(write(b"just some text\n"), allow_unsafe=True)
    assert_artifact_error(info, "not_a_model")


# inspect_model --------------------------------------------------------------------------

def test_report_describes_a_valid_classifier(logistic):
    report = inspect_model(logistic, task=CLASSIFICATION, input_schema=schema())
    assert report.format == SKOPS
    assert report.estimator == "sklearn.pipeline.Pipeline(StandardScaler → LogisticRegression)"
    assert report.framework.startswith("scikit-learn ")
    assert report.n_features == 3
    assert report.feature_names == NAMES
    assert report.classes == [0, 1]
    assert all(type(c) is int for c in report.classes)  # plain values, JSON-ready
    assert report.unsafe is False


def test_report_of_a_pickled_model_is_marked_unsafe(logistic):
    report = inspect_model(logistic, task=CLASSIFICATION, input_schema=schema(), fmt=PICKLE)
    assert report.format == PICKLE
    assert report.unsafe is True


def test_string_classes_are_reported_as_plain_strings(frame):
    model = LogisticRegression().fit(frame, np.array(["no", "yes"] * 20))
    report = inspect_model(model, task=CLASSIFICATION, input_schema=schema())
    assert report.classes == ["no", "yes"]
    assert all(type(c) is str for c in report.classes)


def test_regressor_fitted_on_arrays_has_no_feature_names(frame):
    model = LinearRegression().fit(frame.to_numpy(), np.arange(len(frame)))
    report = inspect_model(model, task=REGRESSION, input_schema=schema(["x", "y", "z"]))
    assert report.feature_names is None
    assert report.n_features == 3
    assert report.classes == []


def test_object_without_predict_is_not_a_model(frame):
    scaler = StandardScaler().fit(frame)
    with pytest.raises(ArtifactError) as info:
        inspect_model(scaler, task=REGRESSION, input_schema=schema())
    assert_artifact_error(info, "not_a_model")
    assert "StandardScaler" in info.value.detail


def test_classifier_without_predict_proba_is_refused_for_classification(frame, labels):
    model = LinearSVC().fit(frame, labels)
    with pytest.raises(ArtifactError) as info:
        inspect_model(model, task=CLASSIFICATION, input_schema=schema())
    assert_artifact_error(info, "schema_mismatch")
    assert "predict_proba" in info.value.detail
    assert "LinearSVC" in info.value.detail


def test_model_without_predict_proba_is_fine_for_regression(frame, labels):
    model = LinearSVC().fit(frame, labels)
    assert inspect_model(model, task=REGRESSION, input_schema=schema()).n_features == 3


def test_feature_count_mismatch_is_reported_with_both_counts(frame, labels):
    model = LogisticRegression().fit(frame.to_numpy(), labels)
    with pytest.raises(ArtifactError) as info:
        inspect_model(model, task=CLASSIFICATION, input_schema=schema(["a", "b"]))
    assert_artifact_error(info, "schema_mismatch")
    assert "expects 3 features" in info.value.detail
    assert "declares 2" in info.value.detail


def test_feature_name_mismatch_names_what_differs(logistic):
    with pytest.raises(ArtifactError) as info:
        inspect_model(logistic, task=CLASSIFICATION, input_schema=schema(["a", "b", "d"]))
    assert_artifact_error(info, "schema_mismatch")
    assert "model has c" in info.value.detail
    assert "schema has d" in info.value.detail


def test_feature_order_mismatch_is_reported_as_such(logistic):
    with pytest.raises(ArtifactError) as info:
        inspect_model(logistic, task=CLASSIFICATION, input_schema=schema(["c", "b", "a"]))
    assert_artifact_error(info, "schema_mismatch")
    assert "different order" in info.value.detail


def test_predict_failure_on_the_sample_is_predict_failed(frame):
    # Categories 1..3 only: the default all-zeros sample row is an unknown category.
    codes = pd.DataFrame({"a": [1, 2, 3] * 10, "b": [3, 2, 1] * 10})
    model = make_pipeline(OneHotEncoder(handle_unknown="error"), LogisticRegression())
    model.fit(codes, [0, 1] * 15)
    with pytest.raises(ArtifactError) as info:
        inspect_model(model, task=CLASSIFICATION, input_schema=schema(["a", "b"]))
    assert_artifact_error(info, "predict_failed")
    assert "1 row(s)" in info.value.detail
    assert "ValueError" in info.value.detail


def test_a_real_sample_lets_a_picky_model_pass():
    codes = pd.DataFrame({"a": [1, 2, 3] * 10, "b": [3, 2, 1] * 10})
    model = make_pipeline(OneHotEncoder(handle_unknown="error"), LogisticRegression())
    model.fit(codes, [0, 1] * 15)
    report = inspect_model(model, task=CLASSIFICATION, input_schema=schema(["a", "b"]),
                           sample=np.array([[1, 3], [2, 2]]))
    assert report.feature_names == ["a", "b"]


# validate_artifact ----------------------------------------------------------------------

def test_validate_artifact_accepts_a_matching_random_forest(write, frame, labels):
    model = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(frame, labels)
    report = validate_artifact(write(dump_skops(model), "m.skops"), task=CLASSIFICATION,
                               input_schema=schema(), sample=frame.to_numpy()[:5])
    assert report.estimator == "sklearn.ensemble.RandomForestClassifier"
    assert report.format == SKOPS and report.unsafe is False


def test_validate_artifact_reports_the_pickle_format_and_unsafe(write, logistic):
    report = validate_artifact(write(pickle.dumps(logistic, protocol=4)), task=CLASSIFICATION,
                               input_schema=schema(), allow_unsafe=True)
    assert report.format == PICKLE
    assert report.unsafe is True


def test_validate_artifact_refuses_pickle_by_default(write, logistic):
    with pytest.raises(UnsafeArtifactError):
        validate_artifact(write(pickle.dumps(logistic, protocol=4)), task=CLASSIFICATION,
                          input_schema=schema())


def test_validate_artifact_refuses_a_schema_mismatch(write, logistic_skops):
    with pytest.raises(ArtifactError) as info:
        validate_artifact(write(logistic_skops, "m.skops"), task=CLASSIFICATION,
                          input_schema=schema(["a", "b"]))
    assert_artifact_error(info, "schema_mismatch")


def test_framework_of_a_non_sklearn_module_is_its_name():
    assert artifacts._framework("no_such_module_xyz") == "no_such_module_xyz"


# hostile archives and the web process -----------------------------------------------------

def _zip(members: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", ["../../etc/cron.d/x", "/etc/passwd", "a/../../b",
                                  "..\\..\\windows\\x", "C:\\x"])
def test_an_archive_with_a_path_outside_itself_is_refused(write, name):
    path = write(_zip({"schema.json": b"{}", name: b"x"}), "m.skops")
    with pytest.raises(ArtifactError) as info:
        load_model(path)
    assert_artifact_error(info, "unsafe_archive")
    assert "outside itself" in info.value.detail


def test_a_decompression_bomb_is_refused_before_anything_is_inflated(write):
    # 50 MB of zeros deflate to about 50 kB: a ratio of about 1,000.
    path = write(_zip({"schema.json": b"{}", "weights.npy": bytes(50 << 20)}), "m.skops")
    assert path.stat().st_size < 1 << 20
    with pytest.raises(ArtifactError) as info:
        load_model(path)
    assert_artifact_error(info, "unsafe_archive")
    assert "decompression bomb" in info.value.detail


def test_an_archive_inflating_past_the_limit_or_holding_too_many_files_is_refused(
        write, monkeypatch):
    rng = np.random.default_rng(0)
    path = write(_zip({"schema.json": b"{}", "a.npy": rng.bytes(300_000)}), "m.skops")
    monkeypatch.setenv("MODELGATE_MAX_UNPACKED_BYTES", "200000")
    with pytest.raises(ArtifactError) as info:
        load_model(path)
    assert_artifact_error(info, "unsafe_archive")
    assert "inflates to 300,002 bytes" in info.value.detail
    monkeypatch.delenv("MODELGATE_MAX_UNPACKED_BYTES")
    many = write(_zip({f"f{i}": b"" for i in range(artifacts.MAX_MEMBERS + 1)},
                      zipfile.ZIP_STORED), "many.skops")
    with pytest.raises(ArtifactError) as info:
        load_model(many)
    assert_artifact_error(info, "unsafe_archive")


def test_a_real_skops_file_passes_the_archive_checks(write, logistic_skops):
    artifacts.check_archive(write(logistic_skops, "m.skops"))


def test_a_process_that_refuses_unsafe_loading_loads_no_pickle_even_when_allowed(
        write, logistic, logistic_skops, monkeypatch):
    monkeypatch.setattr(artifacts, "_unsafe_refused_in", None)
    pickled = write(pickle.dumps(logistic), "m.pkl")
    assert load_model(pickled, allow_unsafe=True) is not None
    artifacts.refuse_unsafe_loading("the web process")
    with pytest.raises(UnsafeArtifactError) as info:
        load_model(pickled, allow_unsafe=True)
    assert "never loaded in the web process" in info.value.detail
    assert load_model(write(logistic_skops, "m.skops")) is not None  # skops still loads


def test_the_web_entry_point_refuses_unsafe_loading(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "MODELGATE_"))}
    env.update({"MODELGATE_DATA_DIR": str(tmp_path), "DATABASE_URL": "sqlite:///:memory:"})
    answer = subprocess.run(
        [sys.executable, "-c", "import portal.wsgi, ops.artifacts as a; "
                               "print(a._unsafe_refused_in)"],
        capture_output=True, text=True, env=env, timeout=120, check=True)
    assert answer.stdout.strip() == "the web process"
