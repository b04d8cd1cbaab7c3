"""ops.native: XGBoost, LightGBM and ONNX files told from their bytes, loaded as data, checked
against the schema, served and explained like scikit-learn estimators.

Every model is a handful of trees or a linear model on 40 rows, so the module runs in
seconds.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import lightgbm
import numpy as np
import onnx
import pandas as pd
import pytest
import xgboost
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression, LogisticRegression

from explainability.shap_values import explain
from ops.artifacts import (
    LIGHTGBM,
    ONNX,
    PICKLE,
    XGBOOST,
    detect_file_format,
    detect_format,
    inspect_model,
    load_model,
)
from ops.exceptions import ArtifactError, UnsafeArtifactError
from ops.native import load_native
from ops.plan import Variant
from ops.schema import parse_input_schema
from ops.serving.variants import NUMPY, BatchingOptions, load_variant

NAMES = ["a", "b", "c"]
REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.filterwarnings("ignore:LightGBM binary classifier with TreeExplainer")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(40, 3)), columns=NAMES)
    return frame, (frame["a"] + frame["b"] > 0).astype(int)


@pytest.fixture(scope="module")
def files(data, tmp_path_factory) -> dict:
    """One file per format and task, as each framework saves it."""
    frame, target = data
    folder = tmp_path_factory.mktemp("native")
    xgb = xgboost.XGBClassifier(n_estimators=4, max_depth=2).fit(frame, target)
    xgb.save_model(folder / "clf.json")
    xgb.get_booster().save_model(folder / "clf.ubj")
    xgboost.XGBRegressor(n_estimators=4, max_depth=2).fit(frame.to_numpy(), frame["a"]) \
        .save_model(folder / "reg.json")
    lightgbm.LGBMClassifier(n_estimators=4, num_leaves=4, min_child_samples=5, verbose=-1) \
        .fit(frame, target).booster_.save_model(folder / "clf.txt")
    rows32 = frame.to_numpy(dtype=np.float32)
    matrix = to_onnx(LogisticRegression().fit(rows32, target), rows32[:1],
                     options={"zipmap": False})
    (folder / "matrix.onnx").write_bytes(matrix.SerializeToString())
    (folder / "columns.onnx").write_bytes(columns_graph(
        LinearRegression().fit(frame, frame["a"])).SerializeToString())
    return {"xgb": folder / "clf.json", "ubj": folder / "clf.ubj", "xgb_reg": folder / "reg.json",
            "lgb": folder / "clf.txt", "onnx": folder / "matrix.onnx",
            "onnx_columns": folder / "columns.onnx", "models": {"xgb": xgb}}


def columns_graph(linear) -> onnx.ModelProto:
    """A linear regressor as a graph with one input per feature ([rows, 1], named), as
    converters write models that took a DataFrame."""
    from onnx import TensorProto, helper, numpy_helper

    inputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 1]) for n in NAMES]
    weights = numpy_helper.from_array(linear.coef_.astype(np.float32).reshape(-1, 1), "weights")
    bias = numpy_helper.from_array(np.array([linear.intercept_], dtype=np.float32), "bias")
    graph = helper.make_graph(
        [helper.make_node("Concat", NAMES, ["x"], axis=1),
         helper.make_node("MatMul", ["x", "weights"], ["xw"]),
         helper.make_node("Add", ["xw", "bias"], ["value"])],
        "columns", inputs, [helper.make_tensor_value_info("value", TensorProto.FLOAT,
                                                          [None, 1])], [weights, bias])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def schema(names=NAMES):
    return parse_input_schema([{"name": n, "type": "double"} for n in names])


# -- telling formats apart -------------------------------------------------------------------

@pytest.mark.parametrize("key, fmt", [("xgb", XGBOOST), ("ubj", XGBOOST), ("xgb_reg", XGBOOST),
                                      ("lgb", LIGHTGBM), ("onnx", ONNX),
                                      ("onnx_columns", ONNX)])
def test_each_format_is_told_from_its_first_bytes(files, key, fmt):
    assert detect_file_format(files[key]) == fmt


class Exploding:
    def __reduce__(self):
        return (int, ("not a number",))  # raises ValueError if it is ever unpickled


@pytest.mark.parametrize("name", ["model.json", "model.ubj", "model.txt", "model.onnx"])
def test_a_pickle_named_like_a_native_model_is_a_pickle_and_is_never_loaded(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(pickle.dumps(Exploding(), protocol=4))
    assert detect_file_format(path) == PICKLE
    with pytest.raises(UnsafeArtifactError):
        load_model(path)
    with pytest.raises(ArtifactError) as refused:
        load_native(path)
    assert refused.value.code == "not_a_model"


@pytest.mark.parametrize("head", [b"", b"hello world", b'{"weights": [1, 2, 3]}',
                                  b"tree\nnot a model", b"\x08\xff\xff\xff", b"%PDF-1.7\n"])
def test_garbage_is_not_a_model(head):
    with pytest.raises(ArtifactError) as refused:
        detect_format(head)
    assert refused.value.code == "not_a_model"


@pytest.mark.parametrize("content, code", [
    (b'{"learner": {"this is": "not a booster"}}', "corrupt_artifact"),
    (b"tree\nversion=v4\nnum_class=1\nobjective=binary sigmoid:1\nTree=0\nnum_leaves=x\n",
     "corrupt_artifact"),
    (b"\x08\x08\x12\x04skl2\x3a\xff\xff\xff\xff\x0f", "corrupt_artifact"),
])
def test_a_file_with_the_right_signature_but_broken_inside_is_corrupt(tmp_path, content, code):
    path = tmp_path / "model"
    path.write_bytes(content)
    with pytest.raises(ArtifactError) as refused:
        load_model(path)
    assert refused.value.code == code and refused.value.detail


def test_an_onnx_graph_reading_external_files_is_refused(files):
    model = onnx.load(files["onnx_columns"])
    tensor = model.graph.initializer[0]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../../etc/passwd"
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    with pytest.raises(UnsafeArtifactError) as refused:
        load_native(model.SerializeToString())
    assert "external files" in refused.value.detail


# -- checks against the schema and the task ----------------------------------------------------

def test_feature_names_come_from_each_model_that_carries_them(files):
    assert list(load_model(files["xgb"]).feature_names_in_) == NAMES
    assert list(load_model(files["lgb"]).feature_names_in_) == NAMES
    assert list(load_model(files["onnx_columns"]).feature_names_in_) == NAMES
    # Made up names (f0, Column_0) and a matrix input are no names: the schema decides.
    assert load_model(files["xgb_reg"]).feature_names_in_ is None
    assert load_model(files["onnx"]).feature_names_in_ is None


@pytest.mark.parametrize("key, task, names, code, words", [
    ("xgb", "classification", ["a", "b", "c", "d"], "schema_mismatch", "expects 3 features"),
    ("lgb", "classification", ["a", "b", "x"], "schema_mismatch", "feature names differ"),
    ("onnx", "classification", ["a", "b"], "schema_mismatch", "expects 3 features"),
    ("onnx_columns", "regression", ["b", "a", "c"], "schema_mismatch", "different order"),
    ("xgb_reg", "classification", NAMES, "task_mismatch", "registered for classification"),
    ("onnx", "regression", NAMES, "task_mismatch", "registered for regression"),
])
def test_a_schema_or_task_that_does_not_match_the_model_is_refused_in_words(
        files, key, task, names, code, words):
    with pytest.raises(ArtifactError) as refused:
        inspect_model(load_model(files[key]), task=task, input_schema=schema(names))
    assert refused.value.code == code
    assert words in refused.value.detail


def test_adapters_answer_what_their_libraries_answer(files, data):
    frame, _ = data
    report = inspect_model(load_model(files["xgb"]), task="classification",
                           input_schema=schema(), sample=frame.to_numpy()[:5], fmt=XGBOOST)
    assert report.classes == [0, 1] and report.unsafe is False
    assert report.estimator == "xgboost.Booster (binary:logistic)"
    assert report.framework.startswith("xgboost ")
    expected = files["models"]["xgb"].predict_proba(frame)
    for key in ("xgb", "ubj"):
        np.testing.assert_allclose(load_model(files[key]).predict_proba(frame.to_numpy()),
                                   expected, rtol=1e-6)
    booster = lightgbm.Booster(model_file=str(files["lgb"]))
    np.testing.assert_allclose(load_model(files["lgb"]).predict_proba(frame)[:, 1],
                               booster.predict(frame.to_numpy()), rtol=1e-12)
    onnx_model = load_model(files["onnx_columns"])
    np.testing.assert_allclose(onnx_model.predict(frame), frame["a"], atol=1e-4)


# -- serving and explaining ------------------------------------------------------------------

@pytest.mark.parametrize("key, task", [("xgb", "classification"), ("ubj", "classification"),
                                       ("lgb", "classification"), ("onnx", "classification"),
                                       ("onnx_columns", "regression")])
def test_the_model_server_loads_each_from_numpy_rows(files, data, key, task):
    path = files[key]
    spec = Variant(name="v1", version_id=1, artifact_uri=f"file://{path}",
                   sha256=hashlib.sha256(path.read_bytes()).hexdigest(), weight=1.0,
                   input_schema=[{"name": n, "type": "double"} for n in NAMES], task=task)
    loaded = load_variant(spec, base_dir=path.parent, executor=None,
                          batching=BatchingOptions())
    assert loaded.mode == NUMPY
    rows = data[0].to_numpy()[:7]
    labels, proba = loaded.predict_rows(rows)
    model = load_model(path)
    if task == "classification":
        assert loaded.derive_labels and loaded.class_labels == [0, 1]
        np.testing.assert_allclose(proba, model.predict_proba(rows), rtol=1e-6)
    np.testing.assert_array_equal(labels, model.predict(rows))


def test_a_booster_is_explained_exactly_by_the_tree_explainer(files, data):
    result = explain(load_model(files["lgb"]), data[0], max_rows=20)
    assert result.method == "tree" and result.output == "log-odds of class 1"
    assert result.max_additivity_error < 1e-6


@pytest.mark.xdist_group("shap-permutation")  # numba's compilation, once (test_shap_values)
def test_an_onnx_graph_is_explained_by_the_permutation_explainer(files, data):
    result = explain(load_model(files["onnx"]), data[0], max_rows=10)
    assert result.method == "permutation" and result.output == "probability of class 1"
    assert result.max_additivity_error < 1e-4


def _sparse_external_model(location: str, n: int = 2) -> bytes:
    from onnx import TensorProto, helper

    values = TensorProto(name="W_values", data_type=TensorProto.FLOAT, dims=[n],
                         data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(4 * n))):
        entry = values.external_data.add()
        entry.key, entry.value = key, value
    indices = helper.make_tensor("W_indices", TensorProto.INT64, [n], list(range(n)))
    graph = helper.make_graph(
        [helper.make_node("Add", ["X", "W_values"], ["S"]),
         helper.make_node("ReduceSum", ["S"], ["Y"], keepdims=1)], "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [None, n])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None, 1])])
    graph.sparse_initializer.extend([helper.make_sparse_tensor(values, indices, [n])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)])
    model.ir_version = 8
    return model.SerializeToString()


def test_a_sparse_initializer_reading_a_file_is_refused_too(tmp_path, monkeypatch):
    """onnx's own list of tensors leaves sparse initializers out; onnxruntime would read
    this one's values from the working directory and answer them as predictions."""
    (tmp_path / "secret.bin").write_bytes(np.array([1234.5, 0.5], np.float32).tobytes())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UnsafeArtifactError) as refused:
        load_native(_sparse_external_model("secret.bin"))
    assert "W_values" in str(refused.value.detail)


# -- files that crash their library's parser ---------------------------------------------------

def _ubjson_key(name: bytes) -> bytes:
    return b"L" + struct.pack(">q", len(name)) + name


# 74 bytes whose typed array declares 2**24 float32s: XGBoost's parser reads past its buffer.
CRAFTED_UBJSON = (b"{" + _ubjson_key(b"learner") + b"{" + _ubjson_key(b"gradient_booster")
                  + b"[$d#L" + struct.pack(">q", 1 << 24) + b"\x00" * 16 + b"}}")
# num_leaves=50 with two leaves' arrays: LightGBM throws inside its OpenMP loop (SIGABRT).
SHORT_LIGHTGBM_TREE = """tree
version=v4
num_class=1
num_tree_per_iteration=1
label_index=0
max_feature_idx=1
objective=regression
feature_names=a b
feature_infos=[0:1] [0:1]
tree_sizes=300

Tree=0
num_leaves=50
num_cat=0
split_feature=0
split_gain=1
threshold=0.5
decision_type=2
left_child=-1
right_child=-2
leaf_value=1 2
leaf_weight=1 1
leaf_count=1 1
internal_value=0
internal_weight=1
internal_count=2
is_linear=0
shrinkage=1


end of trees

pandas_categorical:null
"""
VALIDATE = """import sys
from pathlib import Path
from ops.artifacts import load_model, validate_artifact
from ops.exceptions import ArtifactError
from ops.schema import parse_input_schema
if len(sys.argv) > 2:  # the parent ran OpenMP before (libgomp's pool does not survive fork)
    load_model(Path(sys.argv[2]))
try:
    validate_artifact(Path(sys.argv[1]), task=sys.argv[3] if len(sys.argv) > 3 else 'regression',
                      input_schema=parse_input_schema([{'name': 'a', 'type': 'double'},
                                                       {'name': 'b', 'type': 'double'}]))
    print('valid')
except ArtifactError as e:
    print('refused:', e.code, e.detail)
"""


def _validate_in_a_process(*args) -> str:
    done = subprocess.run([sys.executable, "-c", VALIDATE, *map(str, args)], cwd=REPO,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, f"the validating process died with {done.returncode}: " \
                                 f"{done.stderr[-300:]}"
    return done.stdout.strip().splitlines()[-1]  # LightGBM prints its warnings there


@pytest.mark.parametrize("name, content, words", [
    ("model.ubj", CRAFTED_UBJSON, "the XGBoost file crashed its parser: stopped by signal SIGSEGV"),
    ("model.txt", SHORT_LIGHTGBM_TREE.encode(),
     "the LightGBM file crashed its parser: stopped by signal SIGABRT"),
])
def test_a_file_that_crashes_its_parser_is_refused_and_the_validating_process_lives(
        tmp_path, name, content, words):
    path = tmp_path / name
    path.write_bytes(content)
    assert _validate_in_a_process(path) == f"refused: corrupt_artifact {words}"


def test_a_native_model_is_validated_in_a_child_of_a_process_that_ran_openmp(files, tmp_path):
    """LightGBM loads with OpenMP threads; a forked child of that process must not wait for
    them (the validation child runs OpenMP on one thread)."""
    lgb = tmp_path / "two.txt"
    frame = pd.DataFrame(np.random.default_rng(1).normal(size=(40, 2)), columns=["a", "b"])
    lightgbm.LGBMRegressor(n_estimators=3, num_leaves=4, min_child_samples=5, verbose=-1) \
        .fit(frame, frame["a"]).booster_.save_model(lgb)
    xgb = tmp_path / "two.json"
    xgboost.XGBRegressor(n_estimators=3, max_depth=2).fit(frame, frame["a"]).save_model(xgb)
    assert _validate_in_a_process(lgb, files["lgb"]) == "valid"
    assert _validate_in_a_process(xgb, files["lgb"]) == "valid"
